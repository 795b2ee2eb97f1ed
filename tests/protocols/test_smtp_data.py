"""SMTP engine: DATA framing, dot-stuffing, smuggling, size limits, BDAT, pipelining."""

from __future__ import annotations

import pytest

from posthouse.protocols.smtp import events
from tests.protocols.smtp_driver import Driver, greeted, in_transaction, normalized, settings

TRANSACTION = (
    b"EHLO client.test\r\n"
    b"MAIL FROM:<s@example.test>\r\n"
    b"RCPT TO:<a@example.test>\r\n"
    b"RCPT TO:<unknown@example.test>\r\n"
    b"RCPT TO:<b@example.test>\r\n"
    b"DATA\r\n"
    b"Subject: pipelined\r\n"
    b"\r\n"
    b"..leading dot\r\n"
    b".\r\n"
    b"MAIL FROM:<>\r\n"
    b"RCPT TO:<c@example.test>\r\n"
    b"BDAT 5\r\n"
    b"hello"
    b"BDAT 7 LAST\r\n"
    b" world!"
    b"QUIT\r\n"
)


def test_whole_transaction_pipelined_in_one_call() -> None:
    d = Driver()
    d.feed(TRANSACTION)
    assert d.codes() == [
        "220 ",
        *["250-"] * 7,
        "250 ",  # EHLO
        "250 ",  # MAIL
        "250 ",
        "550 ",
        "250 ",  # RCPTs
        "354 ",
        "250 ",  # queued
        "250 ",
        "250 ",  # MAIL, RCPT
        "250 ",  # BDAT 5
        "250 ",  # BDAT LAST -> queued
        "221 ",
    ]
    assert d.kinds() == [
        "Hello",
        "MailFrom",
        "RcptTo",
        "RcptTo",
        "RcptTo",
        "DataStart",
        "MessageData",
        "MessageEnd",
        "MailFrom",
        "RcptTo",
        "DataStart",
        "MessageData",
        "MessageEnd",
        "Quit",
    ]
    assert d.content() == b"Subject: pipelined\r\n\r\n.leading dot\r\nhello world!"
    assert d.engine.closed


@pytest.mark.parametrize("seed", range(5))
def test_pipelining_is_independent_of_chunking(seed: int) -> None:
    whole = Driver().feed(TRANSACTION)
    bytewise = Driver().feed_bytewise(TRANSACTION)
    randomly = Driver().feed_random(TRANSACTION, seed)
    assert whole.output == bytewise.output == randomly.output
    assert normalized(whole.events) == normalized(bytewise.events) == normalized(randomly.events)


def data_session(body: bytes, **overrides: object) -> Driver:
    d = in_transaction(**overrides)  # type: ignore[arg-type]
    d.feed(b"DATA\r\n" + body)
    return d


@pytest.mark.parametrize(
    ("body", "content"),
    [
        (b".\r\n", b""),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...x\r\n.\r\n", b"..x\r\n"),
        (b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n"),
        (b"a\r\n.b\r\n.\r\n", b"a\r\nb\r\n"),  # RFC 5321 §4.5.2: leading dot removed
        (b"no final newline\r\n.\r\n", b"no final newline\r\n"),
    ],
)
def test_dot_stuffing(body: bytes, content: bytes) -> None:
    d = data_session(body + b"NOOP\r\n")
    assert d.content() == content
    assert d.codes() == ["354 ", "250 ", "250 "]
    assert d.kinds()[-1] == "MessageEnd"


@pytest.mark.parametrize(
    "smuggle",
    [
        b"\n.\n",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r",
        b"\r\n.\r",
        b"\n.\r",
        b"\r.\r\n",
    ],
)
def test_smuggling_sequences_do_not_end_data(smuggle: bytes) -> None:
    injected = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@x.test>\r\nDATA\r\n"
    body = b"Subject: a" + smuggle + injected + b"spoofed\r\n.\r\n"
    d = data_session(body)
    # Exactly one message, ended by the real CRLF.CRLF; nothing was a command.
    assert d.kinds() == ["DataStart", "MessageData", "MessageEnd"]
    assert d.codes() == ["354 ", "250 "]
    content = d.content()
    assert injected in content
    expected = b"Subject: a" + smuggle + injected + b"spoofed\r\n"
    if smuggle.endswith(b"\r\n.") or smuggle.startswith(b"\r\n."):
        # A dot at the start of a CRLF-delimited line is a transparency dot.
        expected = expected.replace(b"\r\n.", b"\r\n", 1)
    assert content == expected


def test_bare_lf_dot_lf_is_content_even_bytewise() -> None:
    body = b"line\n.\nmore\r\n.\r\n"
    whole = data_session(body)
    split = in_transaction()
    split.feed_bytewise(b"DATA\r\n" + body)
    assert whole.content() == split.content() == b"line\n.\nmore\r\n"


def test_data_keeps_own_line_endings_and_binary() -> None:
    body = b"bin\x00\xff\r\nlf only\nlone cr\r end\r\n.\r\n"
    d = data_session(body)
    assert d.content() == b"bin\x00\xff\r\nlf only\nlone cr\r end\r\n"


def test_data_streams_without_waiting_for_the_end() -> None:
    d = in_transaction()
    d.feed("DATA\r\nfirst line\r\nsecond")
    assert d.kinds() == ["DataStart", "MessageData"]
    assert d.content() == b"first line\r\nsecond"
    d.feed("\r\n.\r\n")
    assert d.content() == b"first line\r\nsecond\r\n"


def test_size_exceeded_while_streaming() -> None:
    d = in_transaction(max_message_size=100)
    d.feed(b"DATA\r\n" + b"x" * 98 + b"\r\n")  # exactly 100 octets: fine so far
    assert d.kinds() == ["DataStart", "MessageData"]
    d.feed(b"y" * 50 + b"\r\n" + b"z" * 500 + b"\r\n")
    assert d.kinds() == ["DataStart", "MessageData", "MessageAborted"]
    assert d.content() == b"x" * 98 + b"\r\n"
    assert d.codes() == ["354 "]  # no reply before the end of DATA
    d.feed(b".\r\nNOOP\r\n")
    assert d.codes() == ["552 ", "250 "]
    assert d.kinds()[-1] == "MessageAborted"
    d.feed("RCPT TO:<a@b.test>\r\n")  # transaction is over
    assert d.codes() == ["503 "]


def test_size_limit_cut_is_deterministic() -> None:
    body = b"0123456789\r\n" * 20 + b".\r\n"
    whole = data_session(body, max_message_size=50)
    split = in_transaction(max_message_size=50)
    split.feed_bytewise(b"DATA\r\n" + body)
    assert whole.content() == split.content() == (b"0123456789\r\n" * 5)[:50]
    aborted = [e for e in whole.events if isinstance(e, events.MessageAborted)]
    assert len(aborted) == 1 and "size" in aborted[0].reason


def test_long_data_line() -> None:
    d = in_transaction(max_data_line=100)
    d.feed(b"DATA\r\n" + b"a" * 98 + b"\r\n")  # 100 octets with CRLF: allowed
    assert d.kinds() == ["DataStart", "MessageData"]
    d.feed(b"b" * 150 + b"\r\n")
    assert d.kinds() == ["DataStart", "MessageData", "MessageAborted"]
    assert d.content() == b"a" * 98 + b"\r\n" + b"b" * 99
    d.feed(b"more\r\n.\r\nNOOP\r\n")
    assert d.codes() == ["354 ", "500 ", "250 "]


def test_long_data_line_bytewise_same_as_whole() -> None:
    body = b"ok\r\n" + b"c" * 300 + b"\r\n.\r\n"
    whole = data_session(body, max_data_line=64)
    split = in_transaction(max_data_line=64)
    split.feed_bytewise(b"DATA\r\n" + body)
    assert whole.output == split.output
    assert normalized(whole.events) == normalized(split.events)


def test_eof_mid_data_aborts_without_reply() -> None:
    d = in_transaction()
    d.feed("DATA\r\npartial\r\n.")
    d.take()
    d.eof()
    assert d.kinds()[-1] == "MessageAborted"
    assert d.take() == "" and d.engine.closed


def test_bdat_chunks() -> None:
    d = in_transaction()
    d.feed(b"BDAT 3\r\nabcBDAT 4\r\n\r\n.\r")
    assert d.take() == "250 2.0.0 3 octets received\r\n250 2.0.0 4 octets received\r\n"
    d.feed(b"BDAT 0 LAST\r\n")
    assert d.take().startswith("250 2.0.0 Ok: queued")
    assert d.content() == b"abc\r\n.\r"  # raw: no dot handling
    assert d.kinds() == ["DataStart", "MessageData", "MessageEnd"]


def test_bdat_zero_last_only() -> None:
    d = in_transaction()
    d.feed("BDAT 0 LAST\r\n")
    assert d.kinds() == ["DataStart", "MessageEnd"]
    assert d.codes() == ["250 "]


def test_bdat_chunk_split_across_reads() -> None:
    d = in_transaction()
    d.feed("BDAT 10 last\r\n01234")
    assert d.codes() == []
    d.feed("56789NOOP\r\n")
    assert d.codes() == ["250 ", "250 "]
    assert d.content() == b"0123456789"


def test_bdat_and_data_cannot_mix() -> None:
    d = in_transaction()
    d.feed("BDAT 1\r\nxDATA\r\n")
    assert d.codes() == ["250 ", "503 "]
    d.feed("RSET\r\n")
    assert d.kinds() == ["DataStart", "MessageData", "MessageAborted", "Reset"]
    assert d.codes() == ["250 "]


def test_bdat_out_of_sequence_consumes_chunk() -> None:
    d = greeted()
    d.feed("BDAT 10\r\nQUIT\r\nQUITNOOP\r\n")
    assert d.take() == "503 5.5.1 Need MAIL command\r\n250 2.0.0 Ok\r\n"
    assert not d.engine.closed and d.events == []


def test_bdat_without_valid_recipients_consumes_chunk() -> None:
    d = in_transaction(rcpts=["unknown@x.test"])
    d.feed("BDAT 6 LAST\r\nRSET\r\nNOOP\r\n")
    assert d.codes() == ["554 ", "250 "]
    assert d.events == []


@pytest.mark.parametrize("arg", ["", "x", "-1", "5 FIRST", "5 LAST extra", "1" * 21])
def test_bdat_syntax(arg: str) -> None:
    d = in_transaction()
    d.feed(f"BDAT {arg}\r\n")
    assert d.take().startswith("501 5.5.4")


def test_bdat_size_exceeded() -> None:
    d = in_transaction(max_message_size=10)
    d.feed(b"BDAT 8\r\n12345678BDAT 8\r\nabcdefghBDAT 2 LAST\r\nzz")
    assert d.codes() == ["250 ", "552 ", "503 "]
    assert d.content() == b"12345678ab"
    assert d.kinds() == ["DataStart", "MessageData", "MessageAborted"]


def test_bdat_eof_mid_chunk() -> None:
    d = in_transaction()
    d.feed("BDAT 100\r\nabc")
    d.eof()
    assert d.kinds() == ["DataStart", "MessageData", "MessageAborted"]
    assert d.engine.closed


def test_bdat_inside_pipeline_with_rejected_sender() -> None:
    d = greeted()
    d.feed("MAIL FROM:<blocked@x.test>\r\nRCPT TO:<a@b.test>\r\nBDAT 4 LAST\r\nNOOPNOOP\r\n")
    # The chunk content "NOOP" is consumed, never executed.
    assert d.codes() == ["550 ", "503 ", "503 ", "250 "]


def test_quit_mid_bdat_aborts() -> None:
    d = in_transaction()
    d.feed("BDAT 2\r\nhiQUIT\r\n")
    assert d.kinds() == ["DataStart", "MessageData", "MessageAborted", "Quit"]


def test_message_size_setting_is_advertised() -> None:
    d = Driver(settings(max_message_size=12345))
    d.feed("EHLO x\r\n")
    assert "250-SIZE 12345\r\n" in d.take()
