"""SMTP engine: AUTH PLAIN/LOGIN exchanges, submission mode, STARTTLS and its reset."""

from __future__ import annotations

import base64

import pytest

from posthouse.protocols.smtp import engine, events, replies
from tests.protocols.smtp_driver import Driver, greeted, settings


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


PLAIN_OK = b64("\0alice\0secret")
PLAIN_BAD = b64("\0alice\0wrong")


def auth_driver(**overrides: object) -> Driver:
    return greeted(auth_allowed_without_tls=True, **overrides)  # type: ignore[arg-type]


def test_auth_plain_initial_response_success() -> None:
    d = auth_driver()
    d.feed(f"AUTH PLAIN {PLAIN_OK}\r\n")
    assert d.take() == "235 2.7.0 Authentication successful\r\n"
    assert d.events == [events.AuthAttempt("PLAIN", "", "alice", "secret")]
    assert d.engine.authenticated_as == "alice"
    d.feed(f"AUTH PLAIN {PLAIN_OK}\r\n")
    assert d.take() == "503 5.5.1 Already authenticated\r\n"
    d.feed("EHLO again\r\n")
    assert "AUTH" not in d.take()


def test_auth_plain_with_authzid_and_empty_challenge() -> None:
    d = auth_driver()
    d.feed("AUTH plain\r\n")
    assert d.take() == "334 \r\n"
    d.feed(b64("admin\0alice\0secret") + "\r\n")
    assert d.take().startswith("235 ")
    assert d.events == [events.AuthAttempt("PLAIN", "admin", "alice", "secret")]


def test_auth_plain_failure() -> None:
    d = auth_driver()
    d.feed(f"AUTH PLAIN {PLAIN_BAD}\r\n")
    assert d.take() == "535 5.7.8 Authentication credentials invalid\r\n"
    assert d.engine.authenticated_as is None
    d.feed(f"AUTH PLAIN {PLAIN_OK}\r\n")  # may retry
    assert d.take().startswith("235 ")


def test_auth_login_exchange() -> None:
    d = auth_driver()
    d.feed("AUTH LOGIN\r\n")
    assert d.take() == "334 VXNlcm5hbWU6\r\n"
    d.feed(b64("bob") + "\r\n")
    assert d.take() == "334 UGFzc3dvcmQ6\r\n"
    d.feed(b64("secret") + "\r\n")
    assert d.take().startswith("235 ")
    assert d.events == [events.AuthAttempt("LOGIN", "", "bob", "secret")]


def test_auth_login_with_initial_username_pipelined() -> None:
    d = auth_driver()
    d.feed(f"AUTH LOGIN {b64('bob')}\r\n{b64('nope')}\r\nNOOP\r\n")
    assert d.codes() == ["334 ", "535 ", "250 "]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["AUTH PLAIN", "*"], ["334 ", "501 "]),
        (["AUTH LOGIN", b64("bob"), "*"], ["334 ", "334 ", "501 "]),
        (["AUTH PLAIN *"], ["501 "]),
        (["AUTH PLAIN !!!notbase64"], ["501 "]),
        (["AUTH PLAIN", "abc"], ["334 ", "501 "]),
        (["AUTH PLAIN " + b64("no-nuls")], ["501 "]),
        (["AUTH PLAIN " + b64("\0alice\0")], ["501 "]),
        (["AUTH PLAIN " + b64(b"\0\xff\xfe\0pw")], ["501 "]),
        (["AUTH LOGIN", "@@@"], ["334 ", "501 "]),
        (["AUTH LOGIN", "="], ["334 ", "501 "]),
        (["AUTH PLAIN ="], ["501 "]),
        (["AUTH CRAM-MD5"], ["504 "]),
        (["AUTH"], ["501 "]),
        (["AUTH PLAIN a b"], ["501 "]),
    ],
)
def test_auth_errors_and_cancel(lines: list[str], expected: list[str]) -> None:
    d = auth_driver()
    d.feed("".join(line + "\r\n" for line in lines) + "NOOP\r\n")
    assert d.codes() == [*expected, "250 "]
    assert d.events == []


def test_auth_cancel_text() -> None:
    d = auth_driver()
    d.feed("AUTH PLAIN\r\n*\r\n")
    assert d.take() == "334 \r\n501 5.0.0 Authentication cancelled\r\n"


def test_auth_requires_tls_unless_allowed() -> None:
    d = greeted()
    d.feed(f"AUTH PLAIN {PLAIN_OK}\r\n")
    assert d.take() == ("538 5.7.11 Encryption required for requested authentication mechanism\r\n")
    d = greeted(auth_mechanisms=())
    d.feed(f"AUTH PLAIN {PLAIN_OK}\r\n")
    assert d.take().startswith("502 ")


def test_auth_after_helo_is_refused() -> None:
    d = Driver(settings(auth_allowed_without_tls=True))
    d.feed(f"HELO x\r\nAUTH PLAIN {PLAIN_OK}\r\n")
    assert d.codes()[-1] == "503 "


def test_auth_long_line_limits() -> None:
    d = auth_driver()
    long_pw = "p" * 5000
    token = b64("\0alice\0" + long_pw)
    d.feed(f"AUTH PLAIN {token}\r\n")  # > 2048 octets but < 12288 (RFC 4954 §4)
    assert d.codes() == ["535 "]
    d.feed("AUTH PLAIN\r\n" + "A" * 13000 + "\r\nNOOP\r\n")
    assert d.codes() == ["334 ", "501 ", "250 "]


def test_failed_auth_counts_toward_max_errors() -> None:
    d = auth_driver(max_errors=2)
    d.feed(f"AUTH PLAIN {PLAIN_BAD}\r\nAUTH PLAIN {PLAIN_BAD}\r\nAUTH PLAIN {PLAIN_OK}\r\n")
    assert d.codes() == ["535 ", "535 ", "421 "]
    assert d.engine.closed


def test_submission_requires_auth() -> None:
    d = greeted(mode="submission", tls_active=True)
    d.feed("MAIL FROM:<a@b.test>\r\n")
    assert d.take() == "530 5.7.0 Authentication required\r\n"
    d.feed(f"AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@b.test>\r\n")
    assert d.codes() == ["235 ", "250 "]


def test_eof_during_sasl() -> None:
    d = auth_driver()
    d.feed("AUTH LOGIN\r\n")
    d.eof()
    assert d.engine.closed


# ------------------------------------------------------------------ STARTTLS


def test_starttls_accept_and_reset() -> None:
    d = Driver(settings(starttls_available=True, auth_allowed_without_tls=False), auto_tls=True)
    d.feed("EHLO c\r\nMAIL FROM:<a@b.test>\r\nRSET\r\nSTARTTLS\r\n")
    out = d.take()
    assert out.endswith("220 2.0.0 Ready to start TLS\r\n")
    assert d.engine.tls_active and d.engine.helo_name is None and not d.engine.esmtp
    d.feed("MAIL FROM:<a@b.test>\r\n")  # must EHLO again (RFC 3207 §4.2)
    assert d.take().startswith("503 ")
    d.feed("EHLO c\r\n")
    text = d.take()
    assert "STARTTLS" not in text and "AUTH PLAIN LOGIN" in text
    d.feed("STARTTLS\r\n")
    assert d.take() == "503 5.5.1 TLS already active\r\n"


def test_starttls_discards_pipelined_plaintext() -> None:
    d = Driver(settings(starttls_available=True))
    injected = "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@x.test>\r\n"
    d.feed(injected)
    assert d.kinds() == ["Hello", "StartTLS"]
    assert d.take().endswith("220 2.0.0 Ready to start TLS\r\n")
    d.feed("NOOP\r\n")  # still plaintext before the handshake: ignored
    assert d.take() == "" and d.kinds() == ["Hello", "StartTLS"]
    d.engine.tls_started()
    d.feed("EHLO c\r\n")
    d.pump()
    assert d.take().startswith("250-")
    assert not any(isinstance(e, events.MailFrom) for e in d.events)


def test_starttls_refused_by_application_continues_in_plaintext() -> None:
    d = Driver(settings(starttls_available=True), tls_reply=replies.starttls_unavailable())
    d.feed("EHLO c\r\nSTARTTLS\r\nNOOP\r\n")
    assert d.codes()[-2:] == ["454 ", "250 "]
    assert not d.engine.tls_active


@pytest.mark.parametrize(
    ("overrides", "line", "code"),
    [
        ({}, "STARTTLS", "502 "),
        ({"starttls_available": True}, "STARTTLS now", "501 "),
        ({"tls_active": True, "starttls_available": True}, "STARTTLS", "503 "),
    ],
)
def test_starttls_rejections(overrides: dict[str, bool], line: str, code: str) -> None:
    d = greeted(**overrides)
    d.feed(line + "\r\n")
    assert d.codes() == [code]


def test_eof_while_waiting_for_handshake() -> None:
    d = Driver(settings(starttls_available=True))
    d.feed("EHLO c\r\nSTARTTLS\r\n")
    d.eof()
    assert d.engine.closed
    assert d.engine.next_event() is engine.NEED_DATA
