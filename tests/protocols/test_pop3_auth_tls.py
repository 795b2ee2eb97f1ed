"""POP3 engine: USER/PASS, APOP, AUTH PLAIN (RFC 5034), STLS (RFC 2595) and its reset."""

from __future__ import annotations

import base64

import pytest

from posthouse.protocols.pop3 import engine, events
from posthouse.protocols.pop3.engine import State
from tests.protocols.pop3_driver import STAMP, Driver, apop_digest, fresh, settings


def b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


PLAIN_OK = b64("\0alice\0secret")
PLAIN_BAD = b64("\0alice\0wrong")
LOGGED_IN = "+OK maildrop has 3 messages (137 octets)\r\n"

# ---------------------------------------------------------------- USER / PASS


def test_user_pass_success() -> None:
    d = fresh()
    d.feed("USER alice\r\nPASS secret\r\n")
    assert d.take() == "+OK send PASS\r\n" + LOGGED_IN
    assert d.events == [events.LoginAttempt("USER", "alice", "secret")]
    assert d.engine.state is State.TRANSACTION and d.engine.user == "alice"


def test_pass_keeps_spaces() -> None:
    d = fresh()
    d.feed("USER alice\r\nPASS  two words \r\n")
    assert d.events == [events.LoginAttempt("USER", "alice", " two words ")]


def test_password_is_not_in_repr() -> None:
    assert "secret" not in repr(events.LoginAttempt("USER", "alice", "secret"))


def test_failed_pass_goes_back_to_start() -> None:
    d = fresh()
    d.feed("USER alice\r\nPASS wrong\r\nPASS secret\r\n")
    assert d.take() == (
        "+OK send PASS\r\n-ERR [AUTH] authentication failed\r\n"
        "-ERR command not valid in this state\r\n"
    )
    assert d.engine.state is State.AUTHORIZATION and d.engine.user is None


def test_pass_without_user() -> None:
    d = fresh()
    d.feed("PASS secret\r\n")
    assert d.take() == "-ERR command not valid in this state\r\n"
    assert d.events == []


def test_pass_must_follow_user_immediately() -> None:
    d = fresh()
    d.feed("USER alice\r\nCAPA\r\nPASS secret\r\n")
    assert d.take().endswith(".\r\n-ERR command not valid in this state\r\n")
    assert d.events == []


def test_second_user_replaces_first() -> None:
    d = fresh()
    d.feed("USER alice\r\nUSER bob\r\nPASS secret\r\n")
    assert d.events == [events.LoginAttempt("USER", "bob", "secret")]


def test_user_and_pass_need_arguments() -> None:
    d = fresh()
    d.feed("USER\r\nUSER   \r\nUSER a\r\nPASS\r\n")
    assert d.take() == (
        "-ERR Syntax: USER name\r\n-ERR Syntax: USER name\r\n+OK send PASS\r\n"
        "-ERR Syntax: PASS password\r\n"
    )
    assert d.engine.state is State.AUTHORIZATION


def test_in_use_response_code() -> None:
    d = fresh()
    d.feed("USER locked\r\nPASS secret\r\n")
    assert d.take().endswith("-ERR [IN-USE] maildrop locked\r\n")


def test_reject_login_without_code() -> None:
    e = engine.POP3Engine(settings(plaintext_login_allowed=True))
    e.receive_data(b"USER a\r\nPASS b\r\n")
    e.next_event()
    e.reject_login("nope", None)
    assert e.data_to_send().endswith(b"\r\n-ERR nope\r\n")


def test_user_refused_without_tls() -> None:
    d = Driver(settings(stls_available=True))
    d.take()
    d.feed("USER alice\r\nPASS secret\r\n")
    assert d.take() == (
        "-ERR [AUTH] plaintext authentication requires TLS\r\n"
        "-ERR command not valid in this state\r\n"
    )
    assert d.events == []


# ----------------------------------------------------------------------- APOP


def test_apop_success_carries_digest() -> None:
    d = fresh(apop_timestamp=STAMP, plaintext_login_allowed=False)
    digest = apop_digest()
    d.feed(f"APOP alice {digest.upper()}\r\n")
    assert d.take() == LOGGED_IN
    assert d.events == [events.LoginAttempt("APOP", "alice", None, digest)]


def test_apop_failure() -> None:
    d = fresh(apop_timestamp=STAMP)
    d.feed("APOP alice " + "0" * 32 + "\r\n")
    assert d.take() == "-ERR [AUTH] authentication failed\r\n"
    assert d.engine.state is State.AUTHORIZATION


def test_apop_name_with_space() -> None:
    d = fresh(apop_timestamp=STAMP)
    d.feed(f"APOP alice smith {apop_digest()}\r\n")
    assert d.events == [events.LoginAttempt("APOP", "alice smith", None, apop_digest())]


@pytest.mark.parametrize("arg", ["", "alice", "alice 1234", "alice " + "g" * 32, "0" * 32])
def test_apop_syntax(arg: str) -> None:
    d = fresh(apop_timestamp=STAMP)
    d.feed(f"APOP {arg}\r\n")
    assert d.take() == "-ERR Syntax: APOP name digest\r\n"
    assert d.events == []


def test_apop_not_available_without_timestamp() -> None:
    d = fresh()
    d.feed(f"APOP alice {apop_digest()}\r\n")
    assert d.take() == "-ERR APOP not available\r\n"


# ----------------------------------------------------------------- AUTH PLAIN


def test_auth_plain_initial_response() -> None:
    d = fresh()
    d.feed(f"AUTH PLAIN {PLAIN_OK}\r\n")
    assert d.take() == LOGGED_IN
    assert d.events == [events.LoginAttempt("PLAIN", "alice", "secret")]


def test_auth_plain_continuation() -> None:
    d = fresh()
    d.feed("auth plain\r\n")
    assert d.take() == "+ \r\n"
    d.feed(f"{PLAIN_OK}\r\n")
    assert d.take() == LOGGED_IN


def test_auth_plain_authzid() -> None:
    d = fresh()
    d.feed(f"AUTH PLAIN {b64('admin' + chr(0) + 'alice' + chr(0) + 'secret')}\r\n")
    assert d.events == [events.LoginAttempt("PLAIN", "alice", "secret", None, "admin")]


def test_auth_plain_wrong_password() -> None:
    d = fresh()
    d.feed(f"AUTH PLAIN {PLAIN_BAD}\r\n")
    assert d.take() == "-ERR [AUTH] authentication failed\r\n"
    assert d.engine.state is State.AUTHORIZATION


def test_auth_cancel_in_continuation() -> None:
    d = fresh()
    d.feed("AUTH PLAIN\r\n*\r\nNOOP\r\n")
    assert d.take() == (
        "+ \r\n-ERR authentication cancelled\r\n-ERR command not valid in this state\r\n"
    )
    assert d.events == []


def test_auth_cancel_as_initial_response() -> None:
    d = fresh()
    d.feed("AUTH PLAIN *\r\n")
    assert d.take() == "-ERR authentication cancelled\r\n"


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("!!notbase64", "Invalid base64 data"),
        (b64("no-nuls"), "Malformed PLAIN response"),
        (b64("\0\0secret"), "Empty PLAIN user name or password"),
    ],
)
def test_auth_bad_responses(sent: str, reason: str) -> None:
    d = fresh()
    d.feed(f"AUTH PLAIN\r\n{sent}\r\n")
    assert d.take() == f"+ \r\n-ERR {reason}\r\n"
    d.feed(f"AUTH PLAIN {sent}\r\n")
    assert d.take() == f"-ERR {reason}\r\n"
    assert d.events == []


def test_auth_empty_initial_response() -> None:
    d = fresh()
    d.feed("AUTH PLAIN =\r\n")
    assert d.take() == "-ERR Malformed PLAIN response\r\n"


def test_auth_without_argument_lists_mechanisms() -> None:
    d = fresh()
    d.feed("AUTH\r\n")
    assert d.take() == "+OK\r\nPLAIN\r\n.\r\n"
    d = fresh(plaintext_login_allowed=False)
    d.feed("AUTH\r\n")
    assert d.take() == "+OK\r\n.\r\n"


def test_auth_errors() -> None:
    d = fresh()
    d.feed("AUTH CRAM-MD5\r\nAUTH PLAIN a b\r\n")
    assert d.take() == (
        "-ERR unsupported authentication mechanism\r\n"
        "-ERR Syntax: AUTH mechanism [initial-response]\r\n"
    )
    d = fresh(plaintext_login_allowed=False)
    d.feed(f"AUTH PLAIN {PLAIN_OK}\r\n")
    assert d.take() == "-ERR [AUTH] plaintext authentication requires TLS\r\n"


def test_auth_line_may_exceed_max_line() -> None:
    d = fresh()
    long_pw = "p" * 900
    d.feed(f"AUTH PLAIN {b64(chr(0) + 'alice' + chr(0) + long_pw)}\r\n")
    assert d.events == [events.LoginAttempt("PLAIN", "alice", long_pw)]
    d = fresh()
    d.feed("AUTH PLAIN\r\n" + "A" * 13000 + "\r\nNOOP\r\n")
    assert d.take() == ("+ \r\n-ERR line too long\r\n-ERR command not valid in this state\r\n")


def test_eof_during_sasl() -> None:
    d = fresh()
    d.feed("AUTH PLAIN\r\n")
    d.eof()
    assert d.engine.closed and d.events == []


# ----------------------------------------------------------------------- STLS


def test_stls_accept_discards_pipelined_plaintext() -> None:
    d = fresh(stls_available=True, plaintext_login_allowed=False)
    d.feed("STLS\r\nUSER evil\r\nPASS evil\r\n")
    assert d.take() == "+OK Begin TLS negotiation\r\n"
    assert d.events == [events.StartTLS()]
    d.feed("CAPA\r\n")  # plaintext during the handshake: ignored
    assert d.take() == ""
    d.engine.tls_started()
    assert d.engine.tls_active
    d.feed("CAPA\r\n")
    out = d.take()
    assert "STLS" not in out and "USER\r\n" in out and "SASL PLAIN\r\n" in out
    d.feed("USER alice\r\nPASS secret\r\n")
    assert d.take() == "+OK send PASS\r\n" + LOGGED_IN
    assert [e for e in d.events if isinstance(e, events.LoginAttempt)] == [
        events.LoginAttempt("USER", "alice", "secret")
    ]


def test_stls_forgets_user() -> None:
    d = fresh(stls_available=True)
    d.auto_tls = True
    d.feed("USER alice\r\nSTLS\r\n")
    d.feed("PASS secret\r\n")
    assert d.take().endswith("-ERR command not valid in this state\r\n")


def test_stls_reject() -> None:
    d = fresh(stls_available=True)
    d.stls_ok = False
    d.feed("STLS\r\nNOOP\r\n")
    assert d.take() == (
        "-ERR [SYS/TEMP] TLS temporarily unavailable\r\n-ERR command not valid in this state\r\n"
    )
    assert not d.engine.tls_active


def test_stls_refusals() -> None:
    d = fresh()
    d.feed("STLS\r\n")
    assert d.take() == "-ERR STLS not available\r\n"
    d = fresh(stls_available=True, tls_active=True)
    d.feed("STLS\r\n")
    assert d.take() == "-ERR TLS already active\r\n"
    d = fresh(stls_available=True)
    d.feed("STLS now\r\n")
    assert d.take() == "-ERR Syntax: STLS\r\n"
    d = fresh(stls_available=True)
    d.auto_tls = True
    d.feed("STLS\r\nSTLS\r\n")  # the pipelined second STLS is discarded
    assert d.take() == "+OK Begin TLS negotiation\r\n"
    d.feed("STLS\r\n")
    assert d.take() == "-ERR TLS already active\r\n"


def test_eof_while_waiting_for_tls() -> None:
    d = fresh(stls_available=True)
    d.feed("STLS\r\n")
    d.eof()
    assert d.engine.closed
