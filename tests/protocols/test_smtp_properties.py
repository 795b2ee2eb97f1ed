"""Property tests: arbitrary input never crashes the engine, and chunking never matters."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthouse.protocols.smtp import events
from tests.protocols.smtp_driver import Driver, normalized
from tests.protocols.smtp_driver import settings as engine_settings

TOKENS = [
    b"EHLO x\r\n",
    b"HELO x\r\n",
    b"LHLO x\r\n",
    b"MAIL FROM:<a@b.test>\r\n",
    b"MAIL FROM:<blocked@b.test>\r\n",
    b"MAIL FROM:<> SIZE=40\r\n",
    b"RCPT TO:<c@d.test>\r\n",
    b"RCPT TO:<unknown@d.test>\r\n",
    b"DATA\r\n",
    b"BDAT 3\r\n",
    b"BDAT 2 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    b"c2VjcmV0\r\n",
    b"*\r\n",
    b".\r\n",
    b"..\r\n",
    b"\r\n",
    b"\r",
    b"\n",
    b".",
    b"x" * 40,
    b"\x00\xff",
]

PROFILES: list[dict[str, Any]] = [
    {},
    {"mode": "lmtp"},
    {"mode": "submission", "auth_allowed_without_tls": True},
    {"starttls_available": True, "auth_allowed_without_tls": True},
]

session_input = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=6)), max_size=40).map(b"".join),
)


def drive(data: bytes, profile: dict[str, Any], sizes: list[int] | None) -> Driver:
    config = engine_settings(
        max_message_size=48,
        max_data_line=24,
        max_command_line=512,
        max_errors=30,
        max_commands=60,
        max_recipients=3,
        **profile,
    )
    driver = Driver(config)
    driver.feed(data, chunks=sizes)
    driver.eof()
    return driver


def check_message_invariant(evs: list[events.Event]) -> None:
    """DataStart is always closed by exactly one MessageEnd or MessageAborted."""
    open_message = False
    for event in evs:
        if isinstance(event, events.DataStart):
            assert not open_message
            open_message = True
        elif isinstance(event, events.MessageData):
            assert open_message and event.data
        elif isinstance(event, events.MessageEnd | events.MessageAborted):
            assert open_message
            open_message = False
    assert not open_message


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    session_input,
    st.sampled_from(range(len(PROFILES))),
    st.lists(st.integers(1, 13), max_size=80),
)
def test_chunking_never_changes_behaviour(data: bytes, profile: int, sizes: list[int]) -> None:
    whole = drive(data, PROFILES[profile], None)
    split = drive(data, PROFILES[profile], sizes)
    assert whole.output == split.output
    assert normalized(whole.events) == normalized(split.events)
    assert whole.engine.closed and split.engine.closed
    check_message_invariant(whole.events)


@settings(max_examples=150, deadline=None)
@given(session_input, st.sampled_from(range(len(PROFILES))))
def test_bytewise_equals_whole(data: bytes, profile: int) -> None:
    whole = drive(data, PROFILES[profile], None)
    bytewise = drive(data, PROFILES[profile], [1] * len(data))
    assert whole.output == bytewise.output
    assert normalized(whole.events) == normalized(bytewise.events)


@settings(max_examples=200, deadline=None)
@given(session_input)
def test_output_is_well_formed_replies(data: bytes) -> None:
    out = drive(data, {}, None).output.decode("utf-8")
    assert out.endswith("\r\n")
    for line in out.split("\r\n")[:-1]:
        assert line[:3].isdigit() and line[3] in " -", line
