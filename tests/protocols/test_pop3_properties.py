"""Property tests: arbitrary input never crashes the POP3 engine, and chunking never matters."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthouse.protocols.pop3 import events
from tests.protocols.pop3_driver import STAMP, Driver, apop_digest
from tests.protocols.pop3_driver import settings as engine_settings

TOKENS = [
    b"USER alice\r\n",
    b"USER locked\r\n",
    b"PASS secret\r\n",
    b"PASS wrong\r\n",
    f"APOP alice {apop_digest()}\r\n".encode(),
    b"AUTH PLAIN\r\n",
    b"AUTH\r\n",
    b"AUTH PLAIN " + base64.b64encode(b"\0alice\0secret") + b"\r\n",
    base64.b64encode(b"\0alice\0secret") + b"\r\n",
    b"*\r\n",
    b"STLS\r\n",
    b"CAPA\r\n",
    b"STAT\r\n",
    b"LIST\r\n",
    b"LIST 2\r\n",
    b"UIDL\r\n",
    b"UIDL 1\r\n",
    b"RETR 1\r\n",
    b"RETR 3\r\n",
    b"TOP 2 1\r\n",
    b"TOP 1 0\r\n",
    b"DELE 1\r\n",
    b"DELE 2\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"\r\n",
    b"\r",
    b"\n",
    b".",
    b" ",
    b"x" * 40,
    b"\x00\xff",
]

PROFILES: list[dict[str, Any]] = [
    {},
    {"plaintext_login_allowed": True},
    {"plaintext_login_allowed": True, "apop_timestamp": STAMP, "max_line": 300},
    {"stls_available": True, "apop_timestamp": STAMP, "expire": "NEVER", "login_delay": 5},
]

session_input = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=6)), max_size=40).map(b"".join),
)


def drive(data: bytes, profile: int, sizes: list[int] | None, chunk: int | None = None) -> Driver:
    config = engine_settings(max_errors=12, max_commands=40, **PROFILES[profile])
    # No auto_tls: octets after an accepted STLS are discarded, whatever their chunking.
    driver = Driver(config, chunk_size=chunk)
    driver.feed(data, chunks=sizes)
    driver.eof()
    return driver


def check_session_invariant(evs: list[events.Event]) -> None:
    """A session that logged in ends with exactly one UpdateRequested or ConnectionLost."""
    kinds = [type(e).__name__ for e in evs]
    ends = [k for k in kinds if k in ("UpdateRequested", "ConnectionLost", "Quit")]
    assert len(ends) <= 1
    if "Retrieve" in kinds or "UpdateRequested" in kinds or "ConnectionLost" in kinds:
        assert ends and ends[0] != "Quit" and kinds[-1] == ends[0]
    if ends:
        assert kinds[-1] == ends[0]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(session_input, st.integers(0, len(PROFILES) - 1), st.lists(st.integers(1, 13), max_size=80))
def test_chunking_never_changes_behaviour(data: bytes, profile: int, sizes: list[int]) -> None:
    whole = drive(data, profile, None)
    split = drive(data, profile, sizes, chunk=3)
    assert whole.output == split.output
    assert whole.events == split.events
    assert whole.engine.closed and split.engine.closed
    check_session_invariant(whole.events)


@settings(max_examples=150, deadline=None)
@given(session_input, st.integers(0, len(PROFILES) - 1))
def test_bytewise_equals_whole(data: bytes, profile: int) -> None:
    whole = drive(data, profile, None)
    bytewise = drive(data, profile, [1] * len(data))
    assert whole.output == bytewise.output
    assert whole.events == bytewise.events


@settings(max_examples=200, deadline=None)
@given(session_input)
def test_output_is_utf8_lines(data: bytes) -> None:
    out = drive(data, 1, None).output.decode("utf-8")
    assert out.endswith("\r\n")
    assert out.startswith("+OK POP3 server ready\r\n")
    for line in out.split("\r\n")[:-1]:
        assert "\r" not in line and "\n" not in line
