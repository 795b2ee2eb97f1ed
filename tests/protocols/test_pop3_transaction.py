"""POP3 engine: TRANSACTION commands, deletion marks, RETR/TOP and the UPDATE state."""

from __future__ import annotations

import pytest

from posthouse.protocols.errors import UsageError
from posthouse.protocols.pop3 import engine, events
from posthouse.protocols.pop3.engine import State
from tests.protocols.pop3_driver import HOST, Driver, logged_in, maildrop, settings

RETR_1 = (
    "+OK 65 octets\r\nFrom: a@example.test\r\nSubject: one\r\n\r\nline 1\r\n"
    "..dot line\r\nline 3\r\n.\r\n"
)


def test_stat_list_uidl() -> None:
    d = logged_in()
    d.feed("STAT\r\nLIST\r\nUIDL\r\nLIST 2\r\nUIDL 3\r\n")
    assert d.take() == (
        "+OK 3 137\r\n"
        "+OK 3 messages (137 octets)\r\n1 65\r\n2 44\r\n3 28\r\n.\r\n"
        "+OK\r\n1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n"
        "+OK 2 44\r\n+OK 3 uid-3\r\n"
    )
    assert d.events == []


def test_empty_maildrop() -> None:
    d = logged_in(messages=())
    d.feed("STAT\r\nLIST\r\nUIDL\r\nLIST 1\r\nRETR 1\r\n")
    assert d.take() == (
        "+OK 0 0\r\n+OK 0 messages (0 octets)\r\n.\r\n+OK\r\n.\r\n"
        "-ERR no such message\r\n-ERR no such message\r\n"
    )


def test_deleted_messages_disappear_from_listings() -> None:
    d = logged_in()
    d.feed("DELE 2\r\nSTAT\r\nLIST\r\nUIDL\r\n")
    assert d.take() == (
        "+OK message 2 deleted\r\n+OK 2 93\r\n"
        "+OK 2 messages (93 octets)\r\n1 65\r\n3 28\r\n.\r\n"
        "+OK\r\n1 uid-1\r\n3 uid-3\r\n.\r\n"
    )
    assert d.engine.deleted == (2,)


@pytest.mark.parametrize("verb", ["LIST 2", "UIDL 2", "RETR 2", "TOP 2 1", "DELE 2"])
def test_deleted_message_refused(verb: str) -> None:
    d = logged_in()
    d.feed(f"DELE 2\r\n{verb}\r\n")
    assert d.take() == "+OK message 2 deleted\r\n-ERR message 2 already deleted\r\n"
    assert d.events == []


@pytest.mark.parametrize("number", ["0", "4", "9999999999"])
@pytest.mark.parametrize("verb", ["LIST", "UIDL", "RETR", "DELE"])
def test_no_such_message(verb: str, number: str) -> None:
    d = logged_in()
    d.feed(f"{verb} {number}\r\n")
    assert d.take() == "-ERR no such message\r\n"


@pytest.mark.parametrize(
    ("line", "usage"),
    [
        ("LIST x", "LIST [msg]"),
        ("LIST 1 2", "LIST [msg]"),
        ("LIST -1", "LIST [msg]"),
        ("UIDL +1", "UIDL [msg]"),
        ("RETR", "RETR msg"),
        ("RETR 1 2", "RETR msg"),
        ("RETR 12345678901", "RETR msg"),
        ("DELE", "DELE msg"),
        ("DELE one", "DELE msg"),
        ("TOP 1", "TOP msg n"),
        ("TOP 1 -1", "TOP msg n"),
        ("TOP x 1", "TOP msg n"),
        ("TOP 1 2 3", "TOP msg n"),
        ("STAT 1", "STAT"),
        ("NOOP x", "NOOP"),
        ("RSET x", "RSET"),
    ],
)
def test_argument_syntax(line: str, usage: str) -> None:
    d = logged_in()
    d.feed(line + "\r\n")
    assert d.take() == f"-ERR Syntax: {usage}\r\n"
    assert d.events == []


def test_rset_undeletes() -> None:
    d = logged_in()
    d.feed("DELE 1\r\nDELE 3\r\nRSET\r\nLIST 1\r\nQUIT\r\n")
    assert d.take() == (
        "+OK message 1 deleted\r\n+OK message 3 deleted\r\n"
        "+OK maildrop has 3 messages (137 octets)\r\n+OK 1 65\r\n"
        f"+OK {HOST} POP3 server signing off\r\n"
    )
    assert d.removed == [()]


def test_noop() -> None:
    d = logged_in()
    d.feed("NOOP\r\n")
    assert d.take() == "+OK\r\n"


def test_quit_enters_update() -> None:
    d = logged_in()
    d.feed("DELE 3\r\nDELE 1\r\nQUIT\r\nNOOP\r\n")
    assert d.take() == (
        f"+OK message 3 deleted\r\n+OK message 1 deleted\r\n+OK {HOST} POP3 server signing off\r\n"
    )
    assert d.events == [events.UpdateRequested((1, 3))]
    assert d.removed == [(1, 3)]
    assert d.engine.closed


def test_update_failure() -> None:
    d = logged_in()
    d.update_ok = False
    d.feed("DELE 1\r\nQUIT\r\n")
    assert d.take().endswith("-ERR [SYS/TEMP] some deleted messages not removed\r\n")
    assert d.engine.closed


def test_update_waits_for_answer() -> None:
    e = engine.POP3Engine(settings(plaintext_login_allowed=True))
    e.receive_data(b"USER a\r\nPASS secret\r\n")
    e.next_event()
    e.accept_login(maildrop())
    e.receive_data(b"DELE 2\r\nQUIT\r\n")
    e.receive_eof()
    assert e.next_event() == events.UpdateRequested((2,))
    assert e.next_event() is engine.PAUSED
    assert e.state is State.UPDATE and not e.closed
    e.quit_done(True, "bye")
    assert e.data_to_send().endswith(b"+OK bye\r\n")
    assert e.closed
    assert e.next_event() is engine.NEED_DATA  # EOF after UPDATE: no ConnectionLost


def test_retr() -> None:
    d = logged_in()
    d.feed("RETR 1\r\n")
    assert d.events == [events.Retrieve(1)]
    assert d.take() == RETR_1


def test_retr_normalises_lf_and_adds_final_crlf() -> None:
    d = logged_in()
    d.feed("RETR 2\r\nRETR 3\r\n")
    assert d.take() == (
        "+OK 44 octets\r\nFrom: b@example.test\r\nSubject: two\r\n\r\nbody\r\n.\r\n"
        "+OK 28 octets\r\nSubject: three\r\n\r\n..\r\n...\r\nend\r\n.\r\n"
    )


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7])
def test_retr_any_chunking_gives_same_output(chunk_size: int) -> None:
    d = logged_in()
    d.chunk_size = chunk_size
    d.feed("RETR 1\r\nRETR 2\r\nRETR 3\r\n")
    whole = logged_in()
    whole.feed("RETR 1\r\nRETR 2\r\nRETR 3\r\n")
    assert d.take() == whole.take()


def test_top() -> None:
    d = logged_in()
    d.feed("TOP 1 0\r\nTOP 1 1\r\nTOP 1 2\r\nTOP 1 99\r\n")
    head = "From: a@example.test\r\nSubject: one\r\n\r\n"
    assert d.take() == (
        f"+OK top of message follows\r\n{head}.\r\n"
        f"+OK top of message follows\r\n{head}line 1\r\n.\r\n"
        f"+OK top of message follows\r\n{head}line 1\r\n..dot line\r\n.\r\n"
        f"+OK top of message follows\r\n{head}line 1\r\n..dot line\r\nline 3\r\n.\r\n"
    )
    assert d.events == [events.Retrieve(1, n) for n in (0, 1, 2, 99)]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 11])
def test_top_any_chunking(chunk_size: int) -> None:
    messages = (b"A: 1\nB: 2\r\n\r\none\ntwo\r\n.three\n",)
    want = logged_in(messages=messages)
    want.feed("TOP 1 0\r\nTOP 1 2\r\nTOP 1 5\r\n")
    d = logged_in(messages=messages)
    d.chunk_size = chunk_size
    d.feed("TOP 1 0\r\nTOP 1 2\r\nTOP 1 5\r\n")
    out = d.take()
    assert out == want.take()
    assert out == (
        "+OK top of message follows\r\nA: 1\r\nB: 2\r\n\r\n.\r\n"
        "+OK top of message follows\r\nA: 1\r\nB: 2\r\n\r\none\r\ntwo\r\n.\r\n"
        "+OK top of message follows\r\nA: 1\r\nB: 2\r\n\r\none\r\ntwo\r\n..three\r\n.\r\n"
    )


def test_top_of_headers_only_message() -> None:
    d = logged_in(messages=(b"Subject: x\r\nTo: y",))
    d.feed("TOP 1 0\r\n")
    assert d.take() == "+OK top of message follows\r\nSubject: x\r\nTo: y\r\n.\r\n"


def _retrieving(command: bytes) -> engine.POP3Engine:
    e = engine.POP3Engine(settings(plaintext_login_allowed=True))
    e.receive_data(b"USER a\r\nPASS secret\r\n")
    e.next_event()
    e.accept_login(maildrop())
    e.data_to_send()
    e.receive_data(command + b"NOOP\r\n")
    assert isinstance(e.next_event(), events.Retrieve)
    return e


def test_streaming_api() -> None:
    e = _retrieving(b"RETR 2\r\n")
    with pytest.raises(UsageError):
        e.begin_message(1)  # wrong number
    e.begin_message(2)
    assert e.data_to_send() == b"+OK 44 octets\r\n"
    with pytest.raises(UsageError):
        e.begin_message(2)
    assert e.next_event() is engine.PAUSED
    assert e.message_chunk(b".x\r")
    assert e.data_to_send() == b"..x\r"
    assert e.message_chunk(b"\n.y\n")
    assert e.data_to_send() == b"\n..y\r\n"
    e.end_message()
    assert e.data_to_send() == b".\r\n"
    assert e.next_event() is engine.NEED_DATA
    assert e.data_to_send() == b"+OK\r\n"


def test_wire_ready_content_is_sent_as_it_is() -> None:
    e = _retrieving(b"RETR 2\r\n")
    e.begin_message(2, wire_ready=True)
    assert e.message_chunk(b"a\r\nb")
    e.end_message()
    assert e.data_to_send() == b"+OK 44 octets\r\na\r\nb\r\n.\r\n"


def test_streaming_top_reports_when_done() -> None:
    e = _retrieving(b"TOP 1 1\r\n")
    e.begin_message(1)
    assert e.message_chunk(b"H: v\n\nbody 1")
    assert not e.message_chunk(b"\nbody 2\n")
    assert not e.message_chunk(b"more\n")
    e.end_message()
    assert e.next_event() is engine.NEED_DATA
    assert e.data_to_send() == (b"+OK top of message follows\r\nH: v\r\n\r\nbody 1\r\n.\r\n+OK\r\n")


def test_message_unavailable() -> None:
    e = _retrieving(b"RETR 1\r\n")
    e.send_message(1, None)
    assert e.next_event() is engine.NEED_DATA
    assert e.data_to_send() == b"-ERR [SYS/TEMP] message not available\r\n+OK\r\n"


def test_abort_message_closes_without_update() -> None:
    e = _retrieving(b"RETR 1\r\n")
    e.begin_message(1)
    e.message_chunk(b"partial")
    e.abort_message()
    assert e.next_event() == events.ConnectionLost("message could not be read")
    assert e.closed
    assert not e.data_to_send().endswith(b".\r\n")


def test_retrieve_then_pipelined_commands() -> None:
    d = logged_in()
    d.feed("RETR 1\r\nDELE 1\r\nSTAT\r\n")
    assert d.take() == RETR_1 + "+OK message 1 deleted\r\n+OK 2 72\r\n"


def test_event_order_for_a_session() -> None:
    d = Driver(settings(plaintext_login_allowed=True))
    d.feed("CAPA\r\nUSER u\r\nPASS secret\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nQUIT\r\n")
    assert d.kinds() == [
        "LoginAttempt",
        "Retrieve",
        "Retrieve",
        "UpdateRequested",
    ]
