"""SMTP engine: greeting, every command in every state, limits, misuse of the API."""

from __future__ import annotations

import pytest

from posthouse.protocols.errors import UsageError
from posthouse.protocols.smtp import engine, events, replies
from tests.protocols.smtp_driver import HOST, Driver, greeted, in_transaction, settings


def test_greeting() -> None:
    d = Driver()
    assert d.take() == f"220 {HOST} ESMTP posthouse\r\n"
    assert not d.engine.closed
    assert d.engine.next_event() is engine.NEED_DATA


def test_lmtp_greeting_is_220() -> None:
    assert Driver(settings(mode="lmtp")).take().startswith("220 ")


def test_ehlo_lists_extensions() -> None:
    d = Driver(settings(starttls_available=True))
    d.take()
    d.feed("EHLO client.test\r\n")
    assert d.take() == (
        f"250-{HOST}\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250-STARTTLS\r\n"
        "250 HELP\r\n"
    )
    assert d.events == [events.Hello("EHLO", "client.test")]
    assert d.engine.esmtp and d.engine.helo_name == "client.test"


def test_ehlo_advertises_auth_only_when_allowed() -> None:
    d = greeted(auth_allowed_without_tls=True)
    d.feed("EHLO again\r\n")
    assert "250-AUTH PLAIN LOGIN\r\n" in d.take()
    d = greeted(tls_active=True)
    d.feed("EHLO again\r\n")
    text = d.take()
    assert "AUTH PLAIN LOGIN" in text and "STARTTLS" not in text
    d = greeted(auth_mechanisms=(), tls_active=True)
    d.feed("EHLO again\r\n")
    assert "AUTH" not in d.take()


def test_helo_is_not_esmtp() -> None:
    d = Driver()
    d.take()
    d.feed("HELO client.test\r\n")
    assert d.take() == f"250 {HOST}\r\n"
    assert not d.engine.esmtp
    d.feed("MAIL FROM:<a@b.test> SIZE=10\r\n")
    assert d.take().startswith("555 5.5.4")
    d.feed("MAIL FROM:<a@b.test>\r\n")
    assert d.take() == "250 2.1.0 Ok\r\n"


@pytest.mark.parametrize("line", ["EHLO", "HELO", "EHLO a b", "HELO    "])
def test_hello_needs_one_argument(line: str) -> None:
    d = Driver()
    d.take()
    d.feed(line + "\r\n")
    assert d.take().startswith("501 5.5.4 Syntax:")
    assert d.events == []


def test_lmtp_uses_lhlo_only() -> None:
    d = Driver(settings(mode="lmtp"))
    d.take()
    d.feed("EHLO x\r\nHELO x\r\n")
    assert d.codes() == ["500 ", "500 "]
    d.feed("LHLO x\r\n")
    assert d.take().startswith(f"250-{HOST}\r\n")
    assert d.events == [events.Hello("LHLO", "x")]
    s = Driver()
    s.take()
    s.feed("LHLO x\r\n")
    assert s.take().startswith("500 5.5.1")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("NOOP", "250 2.0.0 Ok\r\n"),
        ("noop anything at all", "250 2.0.0 Ok\r\n"),
        ("VRFY postmaster", "252 2.5.0 Cannot VRFY user, but will accept message\r\n"),
        ("EXPN list", "502 5.5.1 EXPN not available\r\n"),
        ("FOO bar", "500 5.5.1 Unrecognized command\r\n"),
        ("", "500 5.5.2 Empty command\r\n"),
        ("   ", "500 5.5.2 Empty command\r\n"),
        ("MAIL1 FROM:<a@b>", "500 5.5.1 Unrecognized command\r\n"),
        ("VRFY", "501 5.5.4 Syntax: VRFY address\r\n"),
    ],
)
def test_simple_commands_before_greeting(line: str, expected: str) -> None:
    d = Driver()
    d.take()
    d.feed(line + "\r\n")
    assert d.take() == expected


def test_help() -> None:
    d = Driver()
    d.take()
    d.feed("HELP\r\n")
    text = d.take()
    assert text.startswith("214-2.0.0 Commands: AUTH BDAT DATA EHLO")
    assert text.endswith("214 2.0.0 See RFC 5321\r\n")


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("MAIL FROM:<a@b.test>", "503 5.5.1 Send HELO/EHLO first"),
        ("RCPT TO:<a@b.test>", "503 5.5.1 Need MAIL command"),
        ("DATA", "503 5.5.1 Need MAIL command"),
        ("AUTH PLAIN", "503 5.5.1 Send EHLO first"),
        ("STARTTLS", "503 5.5.1 Send EHLO first"),
    ],
)
def test_commands_out_of_order_before_greeting(line: str, code: str) -> None:
    d = Driver()
    d.take()
    d.feed(line + "\r\n")
    assert d.take() == code + "\r\n"
    assert d.events == []


def test_out_of_order_in_transaction() -> None:
    d = in_transaction()
    d.feed("MAIL FROM:<x@y.test>\r\n")
    assert d.take() == "503 5.5.1 Nested MAIL command\r\n"
    d.feed("AUTH PLAIN\r\n")
    assert d.take() == "503 5.5.1 AUTH not allowed during a mail transaction\r\n"
    d.feed("STARTTLS\r\n")
    assert d.take().startswith("503 5.5.1")
    d = greeted()
    d.feed("RCPT TO:<a@b.test>\r\nDATA\r\n")
    assert d.codes() == ["503 ", "503 "]


def test_mail_rcpt_data_happy_path() -> None:
    d = greeted()
    d.feed("MAIL FROM:<sender@example.test> SIZE=100 BODY=8bitmime\r\n")
    assert d.take() == "250 2.1.0 Ok\r\n"
    mail = d.events[-1]
    assert isinstance(mail, events.MailFrom)
    assert mail.address == "sender@example.test"
    assert dict(mail.params) == {"SIZE": "100", "BODY": "8bitmime"}
    assert (mail.size, mail.body, mail.smtputf8) == (100, "8BITMIME", False)
    d.feed("RCPT TO:<a@example.test>\r\nRCPT TO:<unknown@example.test>\r\n")
    assert d.take() == "250 2.1.5 Ok\r\n550 5.1.1 No such user here\r\n"
    d.feed("DATA\r\n")
    assert d.take() == "354 End data with <CR><LF>.<CR><LF>\r\n"
    d.feed("Subject: hi\r\n\r\nbody\r\n.\r\n")
    assert d.take() == "250 2.0.0 Ok: queued as Q1\r\n"
    assert d.content() == b"Subject: hi\r\n\r\nbody\r\n"
    assert d.kinds() == ["MailFrom", "RcptTo", "RcptTo", "DataStart", "MessageData", "MessageEnd"]
    # The transaction is over: a new MAIL is fine, RCPT is not.
    d.feed("RCPT TO:<a@example.test>\r\n")
    assert d.take().startswith("503")


def test_null_sender_postmaster_and_source_route() -> None:
    d = greeted()
    d.feed("MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<@relay.test,@r2.test:u@d.test>\r\n")
    assert d.codes() == ["250 ", "250 ", "250 "]
    assert [getattr(e, "address", None) for e in d.events] == ["", "Postmaster", "u@d.test"]


def test_lenient_mail_syntax() -> None:
    d = greeted()
    d.feed("mail from: <a@b.test>\r\n")
    assert d.take() == "250 2.1.0 Ok\r\n"
    d.feed("RSET\r\nMAIL FROM:a@b.test\r\n")
    assert d.codes() == ["250 ", "250 "]
    assert isinstance(d.events[-1], events.MailFrom) and d.events[-1].address == "a@b.test"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("MAIL <a@b.test>", "501 5.5.4"),
        ("MAIL FROM:<a@b.test", "501 5.5.4"),
        ("MAIL FROM:<a@b.test>junk", "501 5.5.4"),
        ("MAIL FROM:<a b@c.test>", "553 5.1.7"),
        ("MAIL FROM:<a@@b.test>", "553 5.1.7"),
        ("MAIL FROM:<a..b@c.test>", "553 5.1.7"),
        ("MAIL FROM:<a@-b.test>", "553 5.1.7"),
        ("MAIL FROM:<@x:a@b.test", "501 5.5.4"),
        ("MAIL FROM:<postmaster>", "553 5.1.7"),
        ("MAIL FROM:<" + "a" * 65 + "@b.test>", "553 5.1.7"),
        ("MAIL FROM:<a@b.test> SIZE=999999999999", "552 5.3.4"),
        ("MAIL FROM:<a@b.test> SIZE=abc", "501 5.5.4"),
        ("MAIL FROM:<a@b.test> SIZE", "501 5.5.4"),
        ("MAIL FROM:<a@b.test> BODY=BINARYMIME", "501 5.5.4"),
        ("MAIL FROM:<a@b.test> RET=HDRS", "555 5.5.4"),
        ("MAIL FROM:<a@b.test> SIZE=1 SIZE=2", "501 5.5.4"),
        ("MAIL FROM:<a@b.test> SMTPUTF8=yes", "501 5.5.4"),
        ("MAIL FROM:<a@b.test> =x", "501 5.5.4"),
        ("MAIL FROM:<jörg@b.test>", "553 5.6.7"),
    ],
)
def test_mail_rejections(line: str, expected: str) -> None:
    d = greeted()
    d.feed(line + "\r\n")
    assert d.take().startswith(expected + " ")
    assert d.events == []


def test_smtputf8_addresses() -> None:
    d = greeted()
    d.feed("MAIL FROM:<jörg@bücher.test> SMTPUTF8\r\nRCPT TO:<用户@例子.test>\r\n")
    assert d.codes() == ["250 ", "250 "]
    mail = d.events[0]
    assert isinstance(mail, events.MailFrom) and mail.smtputf8
    d = in_transaction()
    d.feed("RCPT TO:<用户@例子.test>\r\n")
    assert d.take().startswith("553 5.6.7")


def test_mail_auth_parameter_and_quoted_local_part() -> None:
    d = greeted()
    d.feed('MAIL FROM:<"john > doe"@b.test> AUTH=<>\r\n')
    assert d.take() == "250 2.1.0 Ok\r\n"
    assert isinstance(d.events[0], events.MailFrom)
    assert d.events[0].address == '"john > doe"@b.test'
    assert d.events[0].params["AUTH"] == "<>"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("RCPT <a@b.test>", "501 5.5.4"),
        ("RCPT TO:<>", "501 5.1.3"),
        ("RCPT TO:<a@b>c>", "501 5.5.4"),
        ("RCPT TO:<" + "a" * 60 + "@" + ("d" * 60 + ".") * 4 + "test>", "501 5.1.3"),
        ("RCPT TO:<a@b.test> NOTIFY=NEVER", "555 5.5.4"),
        ("RCPT TO:<a@[300.1.1.1]>", "501 5.1.3"),
    ],
)
def test_rcpt_rejections(line: str, expected: str) -> None:
    d = in_transaction()
    d.feed(line + "\r\n")
    assert d.take().startswith(expected + " ")
    assert d.events == []


def test_rcpt_address_literals() -> None:
    d = in_transaction()
    d.feed("RCPT TO:<a@[192.0.2.1]>\r\nRCPT TO:<a@[IPv6:2001:db8::1]>\r\n")
    assert d.codes() == ["250 ", "250 "]


def test_sender_refused_by_application_keeps_session_ready() -> None:
    d = greeted()
    d.feed("MAIL FROM:<blocked@x.test>\r\nRCPT TO:<a@b.test>\r\nMAIL FROM:<ok@x.test>\r\n")
    assert d.codes() == ["550 ", "503 ", "250 "]


def test_data_without_valid_recipients() -> None:
    d = in_transaction(rcpts=["unknown@b.test", "later@b.test"])
    d.feed("DATA\r\n")
    assert d.take() == "554 5.5.1 No valid recipients\r\n"
    assert d.events == []
    d.feed("DATA extra\r\n")
    assert d.take().startswith("501 5.5.4")


def test_max_recipients_with_ten_thousand_rcpts() -> None:
    d = greeted(max_recipients=100, max_commands=20_000)
    lines = "".join(f"RCPT TO:<user{i}@example.test>\r\n" for i in range(10_000))
    d.feed("MAIL FROM:<s@example.test>\r\n" + lines + "DATA\r\nhi\r\n.\r\nQUIT\r\n")
    out = d.take().split("\r\n")
    assert out[0] == "250 2.1.0 Ok"
    assert out[1:101] == ["250 2.1.5 Ok"] * 100
    # RFC 5321 §4.5.3.1.10: 452, which does not count toward max_errors.
    assert out[101:10_001] == ["452 4.5.3 Too many recipients"] * 9_900
    assert out[10_001].startswith("354")
    assert out[10_002].startswith("250 2.0.0 Ok: queued")
    assert out[10_003].startswith("221")
    assert sum(isinstance(e, events.RcptTo) for e in d.events) == 100


def test_rset_and_quit() -> None:
    d = in_transaction()
    d.feed("RSET\r\n")
    assert d.take() == "250 2.0.0 Ok\r\n"
    assert d.events == [events.Reset()]
    d.feed("RSET now\r\nQUIT now\r\n")
    assert d.codes() == ["501 ", "501 "]
    d.feed("QUIT\r\nNOOP\r\n")
    assert d.take() == f"221 2.0.0 {HOST} closing connection\r\n"
    assert d.events[-1] == events.Quit()
    assert d.engine.closed
    d.feed("NOOP\r\n")
    assert d.take() == ""


def test_ehlo_mid_transaction_resets_it() -> None:
    d = in_transaction()
    d.feed("EHLO again\r\nRCPT TO:<a@b.test>\r\n")
    assert d.codes()[-1] == "503 "
    assert d.events == [events.Hello("EHLO", "again")]


def test_over_long_command_line() -> None:
    d = greeted()
    d.feed("NOOP " + "x" * 3000 + "\r\nNOOP\r\n")
    assert d.take() == "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n"
    d.feed("NOOP " + "x" * 20000 + "\r\nNOOP\r\n")
    assert d.take() == "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n"
    d.feed("NOOP " + "x" * 2041 + "\r\n")  # exactly 2048 octets with CRLF: fine
    assert d.take() == "250 2.0.0 Ok\r\n"


def test_over_long_line_bytewise_matches_whole() -> None:
    data = "NOOP " + "y" * 14000 + "\r\nNOOP\r\n"
    whole, split = greeted(), greeted()
    whole.feed(data)
    split.feed_bytewise(data)
    assert whole.take() == split.take() == "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n"


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x01\x02\r\n", b"\xff\xfe\r\n", b"NOOP\x00\r\n", b"MAIL FROM:<a@b>\rRCPT\r\n"],
)
def test_binary_garbage_is_refused(garbage: bytes) -> None:
    d = greeted()
    d.feed(garbage + b"NOOP\r\n")
    assert d.take() == "500 5.5.2 Invalid characters in command\r\n250 2.0.0 Ok\r\n"


def test_bare_lf_terminates_commands() -> None:
    d = Driver()
    d.take()
    d.feed("EHLO nc\nMAIL FROM:<a@b.test>\nRCPT TO:<c@d.test>\n")
    assert d.codes()[-2:] == ["250 ", "250 "]


def test_max_errors_closes_with_421() -> None:
    d = greeted(max_errors=3)
    d.feed("BAD\r\nBAD\r\nBAD\r\nNOOP\r\n")
    assert d.take() == (
        "500 5.5.1 Unrecognized command\r\n" * 3
        + f"421 4.7.0 {HOST} Too many errors, closing connection\r\n"
    )
    assert d.engine.closed


def test_rejected_recipients_count_as_errors() -> None:
    d = in_transaction(rcpts=[], max_errors=2)
    d.feed("RCPT TO:<unknown@x.test>\r\nRCPT TO:<unknown@y.test>\r\n")
    assert d.codes() == ["550 ", "550 ", "421 "]


def test_max_commands_closes_with_421() -> None:
    d = Driver(settings(max_commands=5))
    d.take()
    d.feed("NOOP\r\n" * 10)
    assert d.codes() == ["250 "] * 5 + ["421 "]
    assert d.engine.closed


def test_421_mid_bdat_aborts_message() -> None:
    d = in_transaction(max_commands=5)  # EHLO, MAIL, RCPT used 3
    d.feed("BDAT 2\r\nabNOOP\r\nNOOP\r\n")
    assert d.kinds() == ["DataStart", "MessageData", "MessageAborted"]
    assert d.codes() == ["250 ", "250 ", "421 "]


def test_eof_closes() -> None:
    d = greeted()
    d.feed("NOOP")  # incomplete line is dropped
    d.eof()
    assert d.engine.closed and d.take() == ""


def test_usage_errors() -> None:
    e = engine.SMTPEngine(settings())
    with pytest.raises(UsageError):
        e.respond(replies.OK)
    with pytest.raises(UsageError):
        e.respond_per_recipient([])
    with pytest.raises(UsageError):
        e.tls_started()
    e.receive_data(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\n")
    assert isinstance(e.next_event(), events.Hello)
    with pytest.raises(UsageError):  # MailFrom not yet handed out
        e.respond(replies.OK)
    assert isinstance(e.next_event(), events.MailFrom)
    assert e.next_event() is engine.PAUSED
    with pytest.raises(UsageError):
        e.respond(replies.Reply.of(354, None, "go ahead"))
    e.respond(replies.mail_ok())
    assert e.next_event() is engine.NEED_DATA


def test_settings_validation() -> None:
    with pytest.raises(ValueError):
        engine.SMTPSettings(hostname="")
    with pytest.raises(ValueError):
        engine.SMTPSettings(hostname="a b")
    with pytest.raises(ValueError):
        engine.SMTPSettings(hostname="h", auth_mechanisms=("CRAM-MD5",))
    with pytest.raises(ValueError):
        engine.SMTPSettings(hostname="h", max_command_line=100)
    with pytest.raises(ValueError):
        engine.SMTPSettings(hostname="h", mode="pop3")  # type: ignore[arg-type]
