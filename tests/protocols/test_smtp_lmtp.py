"""LMTP mode (RFC 2033): LHLO and one reply per accepted recipient after the data."""

from __future__ import annotations

import pytest

from posthouse.protocols.errors import UsageError
from posthouse.protocols.smtp import engine, events, replies
from tests.protocols.smtp_driver import greeted, in_transaction, settings

RCPTS = ["a@x.test", "unknown@x.test", "full@x.test", "b@x.test"]


def test_lmtp_per_recipient_replies_after_data() -> None:
    d = in_transaction(rcpts=RCPTS, mode="lmtp")
    d.feed("DATA\r\nhello\r\n.\r\n")
    assert d.take() == (
        "354 End data with <CR><LF>.<CR><LF>\r\n"
        "250 2.0.0 <a@x.test> delivered\r\n"
        "452 4.2.2 <full@x.test> mailbox full\r\n"
        "250 2.0.0 <b@x.test> delivered\r\n"
    )


def test_lmtp_bdat_last_gets_per_recipient_replies() -> None:
    d = in_transaction(rcpts=["a@x.test", "b@x.test"], mode="lmtp")
    d.feed("BDAT 2\r\nhiBDAT 0 LAST\r\n")
    assert d.codes() == ["250 ", "250 ", "250 "]


def test_lmtp_size_failure_is_repeated_per_recipient() -> None:
    d = in_transaction(rcpts=["a@x.test", "b@x.test"], mode="lmtp", max_message_size=5)
    d.feed("DATA\r\n0123456789\r\n.\r\n")
    assert d.codes() == ["354 ", "552 ", "552 "]
    assert d.kinds()[-1] == "MessageAborted"


def test_lmtp_respond_api_checks() -> None:
    e = engine.SMTPEngine(settings(mode="lmtp"))
    e.receive_data(b"LHLO x\r\nMAIL FROM:<a@b.test>\r\n")
    for _ in range(2):
        e.next_event()
    e.respond(replies.mail_ok())
    e.receive_data(b"RCPT TO:<c@d.test>\r\nDATA\r\n.\r\n")
    assert isinstance(e.next_event(), events.RcptTo)
    e.respond(replies.rcpt_ok())
    assert isinstance(e.next_event(), events.DataStart)
    assert isinstance(e.next_event(), events.MessageEnd)
    with pytest.raises(UsageError):
        e.respond(replies.OK)
    with pytest.raises(UsageError):
        e.respond_per_recipient([replies.OK, replies.OK])
    e.respond_per_recipient([replies.OK])
    assert e.data_to_send().endswith(b"250 2.0.0 Ok\r\n")
    assert e.next_event() is engine.NEED_DATA


@pytest.mark.parametrize("path", ["alice", "alice+work", '"a b"', "Postmaster"])
def test_lmtp_takes_a_bare_local_part_as_cyrus_lmtpd(path: str) -> None:
    d = greeted(mode="lmtp")
    d.feed(f"MAIL FROM:<s@x.test>\r\nRCPT TO:<{path}>\r\n")
    assert d.codes() == ["250 ", "250 "]
    rcpt = [e for e in d.events if isinstance(e, events.RcptTo)]
    assert [e.address for e in rcpt] == [path]


@pytest.mark.parametrize("path", ["alice@", "al ice", "a..b", "x" * 65, "a\\b"])
def test_lmtp_still_refuses_what_is_no_local_part(path: str) -> None:
    d = greeted(mode="lmtp")
    d.feed(f"MAIL FROM:<s@x.test>\r\nRCPT TO:<{path}>\r\n")
    assert d.codes()[-1] == "501 "


def test_smtp_still_wants_a_domain() -> None:
    d = greeted()
    d.feed("EHLO c\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<alice>\r\n")
    assert d.codes()[-1] == "501 "
