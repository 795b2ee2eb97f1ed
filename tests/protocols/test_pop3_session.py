"""POP3 engine: greeting, CAPA, the state table, limits, QUIT/EOF and API misuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.protocols.errors import UsageError
from posthouse.protocols.pop3 import engine, events
from posthouse.protocols.pop3.engine import State
from posthouse.protocols.pop3.maildrop import valid_uid
from tests.protocols.pop3_driver import (
    HOST,
    STAMP,
    Driver,
    fresh,
    logged_in,
    maildrop,
    settings,
)

# One sample line per command (valid in the state where the command is legal).
SAMPLES = {
    "CAPA": "CAPA",
    "QUIT": "QUIT",
    "USER": "USER bob",
    "PASS": "PASS secret",
    "APOP": "APOP bob " + "0" * 32,
    "AUTH": "AUTH PLAIN",
    "STLS": "STLS",
    "STAT": "STAT",
    "LIST": "LIST",
    "UIDL": "UIDL",
    "RETR": "RETR 1",
    "TOP": "TOP 1 0",
    "DELE": "DELE 1",
    "RSET": "RSET",
    "NOOP": "NOOP",
}


def test_greeting_without_apop() -> None:
    d = Driver()
    assert d.take() == "+OK POP3 server ready\r\n"
    assert not d.engine.closed
    assert d.engine.state is State.AUTHORIZATION
    assert d.engine.next_event() is engine.NEED_DATA


def test_greeting_with_apop_timestamp() -> None:
    d = Driver(settings(apop_timestamp=STAMP))
    assert d.take() == f"+OK POP3 server ready {STAMP}\r\n"


def test_table_covers_every_handler() -> None:
    from posthouse.protocols.pop3.engine import _HANDLERS

    assert set(_HANDLERS) == engine.TABLE.known == set(SAMPLES)


@pytest.mark.parametrize("verb", sorted(SAMPLES))
def test_every_command_in_authorization(verb: str) -> None:
    d = fresh(stls_available=True, apop_timestamp=STAMP)
    d.feed(SAMPLES[verb] + "\r\n")
    out = d.take()
    if verb in engine.TABLE.legal[State.AUTHORIZATION]:
        assert out != "-ERR command not valid in this state\r\n"
    else:
        assert out == "-ERR command not valid in this state\r\n"
        assert d.events == []


@pytest.mark.parametrize("verb", sorted(SAMPLES))
def test_every_command_in_transaction(verb: str) -> None:
    d = logged_in(stls_available=True, apop_timestamp=STAMP)
    d.feed(SAMPLES[verb] + "\r\n")
    out = d.take()
    if verb in engine.TABLE.legal[State.TRANSACTION]:
        assert out.startswith("+OK"), out
    else:
        assert out == "-ERR command not valid in this state\r\n"
        assert d.events == []
        assert d.engine.state is State.TRANSACTION


@pytest.mark.parametrize("verb", sorted(SAMPLES))
def test_every_command_after_user(verb: str) -> None:
    d = fresh(stls_available=True, apop_timestamp=STAMP)
    d.feed("USER alice\r\n")
    assert d.take() == "+OK send PASS\r\n"
    assert d.engine.state is State.USER_GIVEN
    d.feed(SAMPLES[verb] + "\r\n")
    out = d.take()
    assert (out == "-ERR command not valid in this state\r\n") == (
        verb not in engine.TABLE.legal[State.USER_GIVEN]
    )
    if verb == "PASS":
        assert d.events == [events.LoginAttempt("USER", "alice", "secret")]
    elif verb != "USER":
        assert d.engine.state is not State.USER_GIVEN  # PASS must follow USER directly


def test_state_table_shape() -> None:
    assert engine.TABLE.legal[State.UPDATE] == frozenset()
    assert "PASS" not in engine.TABLE.legal[State.AUTHORIZATION]
    assert "PASS" in engine.TABLE.legal[State.USER_GIVEN]
    for state in (State.AUTHORIZATION, State.USER_GIVEN, State.TRANSACTION):
        assert {"CAPA", "QUIT"} <= engine.TABLE.legal[state]


@pytest.mark.parametrize("line", ["FOO", "XTND XMIT", "LAST", "", "   ", "RETR1", "12 34"])
def test_unknown_command(line: str) -> None:
    d = fresh()
    d.feed(line + "\r\n")
    assert d.take() == "-ERR unknown command\r\n"


def test_commands_are_case_insensitive_and_bare_lf_ok() -> None:
    d = logged_in()
    d.feed("stat\nNoOp\r\n")
    assert d.take() == "+OK 3 137\r\n+OK\r\n"


@pytest.mark.parametrize("raw", [b"USER \xff\r\n", b"US\x00ER x\r\n", b"USER a\x01b\r\n"])
def test_bad_characters(raw: bytes) -> None:
    d = fresh()
    d.feed(raw)
    assert d.take() == "-ERR invalid characters in command\r\n"


def test_line_too_long() -> None:
    d = fresh()
    d.feed("USER " + "a" * 506 + "\r\n")  # 513 octets
    assert d.take() == "-ERR line too long\r\n"
    d.feed("USER " + "a" * 505 + "\r\n")  # exactly 512
    assert d.take() == "+OK send PASS\r\n"


def test_very_long_line_is_reported_once_and_skipped() -> None:
    d = fresh()
    d.feed(b"NOOP " + b"x" * 20000)
    assert d.take() == "-ERR line too long\r\n"
    d.feed(b"y" * 20000 + b"\r\nCAPA\r\n")
    assert d.take().startswith("+OK Capability list follows\r\n")


def test_capa_authorization_plaintext_allowed() -> None:
    d = fresh(stls_available=True)
    d.feed("CAPA\r\n")
    assert d.take() == (
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
        "PIPELINING\r\nUSER\r\nSASL PLAIN\r\nSTLS\r\nIMPLEMENTATION posthouse\r\n.\r\n"
    )


def test_capa_hides_plaintext_login_without_tls() -> None:
    d = fresh(plaintext_login_allowed=False, stls_available=True)
    d.feed("CAPA\r\n")
    out = d.take()
    assert "STLS\r\n" in out
    assert "USER\r\n" not in out and "SASL" not in out


def test_capa_under_implicit_tls() -> None:
    d = fresh(plaintext_login_allowed=False, stls_available=True, tls_active=True)
    d.feed("CAPA\r\n")
    out = d.take()
    assert "USER\r\n" in out and "SASL PLAIN\r\n" in out
    assert "STLS" not in out


def test_capa_expire_login_delay_implementation() -> None:
    d = fresh(expire="30 USER", login_delay=900, implementation="posthouse 0.1")
    d.feed("CAPA\r\n")
    out = d.take()
    assert "EXPIRE 30 USER\r\nLOGIN-DELAY 900\r\nIMPLEMENTATION posthouse 0.1\r\n.\r\n" in out


def test_capa_in_transaction_drops_stls_only() -> None:
    d = logged_in(stls_available=True, expire="NEVER")
    d.feed("CAPA\r\n")
    out = d.take()
    assert "STLS" not in out
    assert "USER\r\n" in out and "SASL PLAIN\r\n" in out and "EXPIRE NEVER\r\n" in out


def test_capa_takes_no_argument() -> None:
    d = fresh()
    d.feed("CAPA x\r\n")
    assert d.take() == "-ERR Syntax: CAPA\r\n"


def test_quit_in_authorization() -> None:
    d = fresh()
    d.feed("QUIT\r\nNOOP\r\n")
    assert d.take() == f"+OK {HOST} POP3 server signing off\r\n"
    assert d.events == [events.Quit()]
    assert d.engine.closed
    d.feed("CAPA\r\n")
    assert d.take() == ""


def test_quit_with_argument_is_refused() -> None:
    d = fresh()
    d.feed("QUIT now\r\n")
    assert d.take() == "-ERR Syntax: QUIT\r\n"
    assert not d.engine.closed


def test_eof_in_authorization_closes_silently() -> None:
    d = fresh()
    d.eof()
    assert d.engine.closed and d.events == [] and d.take() == ""


def test_eof_in_transaction_is_connection_lost_without_update() -> None:
    d = logged_in()
    d.feed("DELE 1\r\nDELE 2\r\n")
    d.eof()
    assert d.events == [events.ConnectionLost("connection closed by client")]
    assert d.removed == []
    assert d.engine.closed


def test_eof_processes_pipelined_commands_first() -> None:
    d = logged_in()
    d.feed("DELE 1\r\nQUIT\r\n")
    d.eof()
    assert d.kinds() == ["UpdateRequested"]
    assert d.removed == [(1,)]


def test_max_errors_closes() -> None:
    d = fresh(max_errors=3)
    d.feed("FOO\r\nBAR\r\nBAZ\r\nCAPA\r\n")
    assert d.take() == ("-ERR unknown command\r\n" * 3 + "-ERR too many errors\r\n")
    assert d.engine.closed


def test_max_errors_in_transaction_is_connection_lost() -> None:
    d = logged_in(max_errors=2)
    d.feed("DELE 1\r\nDELE 1\r\nDELE 9\r\nQUIT\r\n")
    assert d.take() == (
        "+OK message 1 deleted\r\n-ERR message 1 already deleted\r\n"
        "-ERR no such message\r\n-ERR too many errors\r\n"
    )
    assert d.events == [events.ConnectionLost("too many errors")]
    assert d.removed == []


def test_failed_logins_count_as_errors() -> None:
    d = fresh(max_errors=2)
    d.feed("USER a\r\nPASS x\r\nUSER a\r\nPASS y\r\nUSER a\r\n")
    assert d.statuses() == ["+OK", "-ERR", "+OK", "-ERR", "-ERR"]
    assert d.engine.closed


def test_max_commands() -> None:
    d = logged_in(max_commands=4)  # USER and PASS were two
    d.feed("NOOP\r\nNOOP\r\nNOOP\r\n")
    assert d.take() == "+OK\r\n+OK\r\n-ERR too many commands\r\n"
    assert d.events == [events.ConnectionLost("too many commands")]


def test_pipelining_in_order() -> None:
    d = logged_in()
    d.feed("STAT\r\nDELE 2\r\nSTAT\r\nLIST 2\r\nRSET\r\nSTAT\r\n")
    assert d.take() == (
        "+OK 3 137\r\n+OK message 2 deleted\r\n+OK 2 93\r\n"
        "-ERR message 2 already deleted\r\n+OK maildrop has 3 messages (137 octets)\r\n"
        "+OK 3 137\r\n"
    )


def test_paused_until_answered() -> None:
    e = engine.POP3Engine(settings(plaintext_login_allowed=True))
    e.data_to_send()
    e.receive_data(b"USER a\r\nPASS b\r\nCAPA\r\n")
    event = e.next_event()
    assert event == events.LoginAttempt("USER", "a", "b")
    assert e.next_event() is engine.PAUSED
    assert e.data_to_send() == b"+OK send PASS\r\n"
    e.accept_login(maildrop())
    assert e.data_to_send() == b"+OK maildrop has 3 messages (137 octets)\r\n"
    assert e.user == "a" and e.state is State.TRANSACTION
    assert e.next_event() is engine.NEED_DATA
    assert e.data_to_send().startswith(b"+OK Capability list follows\r\n")


def test_answer_before_event_taken_is_usage_error() -> None:
    e = engine.POP3Engine(settings(plaintext_login_allowed=True))
    with pytest.raises(UsageError):
        e.accept_login(maildrop())
    e.receive_data(b"USER a\r\nPASS b\r\n")
    # The event is still queued: answering now would be out of order.
    e._step()
    e._step()
    with pytest.raises(UsageError):
        e.reject_login()


@pytest.mark.parametrize(
    "call",
    [
        lambda e: e.accept_stls(),
        lambda e: e.reject_stls("x"),
        lambda e: e.quit_done(True),
        lambda e: e.send_message(1, [b"x"]),
        lambda e: e.begin_message(1),
        lambda e: e.message_chunk(b"x"),
        lambda e: e.end_message(),
        lambda e: e.abort_message(),
        lambda e: e.tls_started(),
        lambda e: e.accept_login("not a maildrop"),
    ],
)
def test_wrong_answer_is_usage_error(call: object) -> None:
    e = engine.POP3Engine(settings(plaintext_login_allowed=True))
    e.receive_data(b"USER a\r\nPASS b\r\n")
    assert isinstance(e.next_event(), events.LoginAttempt)
    with pytest.raises(UsageError):
        call(e)  # type: ignore[operator]
    e.reject_login("no")  # still pending, and still answerable


def test_bad_answer_text_is_usage_error() -> None:
    e = engine.POP3Engine(settings(plaintext_login_allowed=True))
    e.receive_data(b"USER a\r\nPASS b\r\n")
    e.next_event()
    with pytest.raises(UsageError):
        e.reject_login("bad\r\nreason")
    with pytest.raises(UsageError):
        e.reject_login("reason", "BAD CODE")
    e.reject_login("fine", "SYS/PERM")
    assert e.data_to_send().endswith(b"-ERR [SYS/PERM] fine\r\n")


@pytest.mark.parametrize(
    "overrides",
    [
        {"hostname": ""},
        {"hostname": "a b"},
        {"apop_timestamp": "no-brackets@host"},
        {"apop_timestamp": "<x y@host>"},
        {"max_line": 100},
        {"max_errors": 0},
        {"max_commands": 0},
        {"implementation": "a\r\nb"},
        {"expire": "sometimes"},
        {"login_delay": -1},
    ],
)
def test_settings_validation(overrides: dict[str, object]) -> None:
    base: dict[str, object] = {"hostname": HOST}
    base.update(overrides)
    with pytest.raises(ValueError):
        engine.POP3Settings(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        (2, 10, [5, 5], ["a"]),
        (1, 10, [5], ["a"]),
        (1, 5, [5], ["has space"]),
        (2, 10, [5, 5], ["a", "a"]),
        (1, -1, [-1], ["a"]),
        (1, 5, [5], ["x" * 71]),
    ],
)
def test_maildrop_info_validation(args: tuple[int, int, list[int], list[str]]) -> None:
    with pytest.raises(ValueError):
        engine.MaildropInfo(*args)


@given(st.lists(st.text(st.characters(max_codepoint=0x90), max_size=72), max_size=5))
def test_maildrop_info_accepts_exactly_valid_unique_ids(uids: list[str]) -> None:
    valid = all(map(valid_uid, uids)) and len(set(uids)) == len(uids)
    try:
        engine.MaildropInfo(len(uids), len(uids), [1] * len(uids), uids)
    except ValueError:
        assert not valid
    else:
        assert valid


SCRIPT = (
    b"CAPA\r\nUSER alice\r\nPASS wrong\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n"
    b"STAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nTOP 3 0\r\nDELE 2\r\nDELE 2\r\nRSET\r\n"
    b"DELE 3\nNOOP\r\nQUIT\r\n"
)


def test_pipelined_script_whole_bytewise_random_agree() -> None:
    whole = Driver(settings(plaintext_login_allowed=True)).feed(SCRIPT)
    bytewise = Driver(settings(plaintext_login_allowed=True)).feed_bytewise(SCRIPT)
    assert whole.output == bytewise.output
    assert whole.events == bytewise.events
    for seed in range(5):
        shuffled = Driver(settings(plaintext_login_allowed=True), chunk_size=2)
        shuffled.feed_random(SCRIPT, seed)
        assert shuffled.output == whole.output
    assert whole.kinds() == [
        "LoginAttempt",
        "LoginAttempt",
        "Retrieve",
        "Retrieve",
        "UpdateRequested",
    ]
    assert whole.removed == [(3,)]
    assert whole.engine.closed


def test_long_unknown_line_is_too_long() -> None:
    d = fresh()
    d.feed("XYZZ " + "a" * 600 + "\r\nAUTH " + "A" * 600 + "\r\n")
    assert d.take() == "-ERR line too long\r\n-ERR unsupported authentication mechanism\r\n"
