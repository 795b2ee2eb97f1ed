"""Reply value object: wire format, validation, helpers."""

from __future__ import annotations

import pytest

from posthouse.protocols.smtp import replies
from posthouse.protocols.smtp.replies import Reply


def test_single_and_multiline() -> None:
    assert Reply(250, "2.1.0", ("Ok",)).to_bytes() == b"250 2.1.0 Ok\r\n"
    assert Reply(250, None, ("a", "b")).to_bytes() == b"250-a\r\n250 b\r\n"
    assert Reply.of(214, "2.0.0", "x", "y").to_bytes() == b"214-2.0.0 x\r\n214 2.0.0 y\r\n"
    assert Reply(334, None, ("",)).to_bytes() == b"334 \r\n"


def test_classification() -> None:
    assert Reply.of(451, "4.3.0", "x").temporary
    assert not Reply.of(550, "5.1.1", "x").temporary
    assert Reply.of(550, "5.1.1", "x").permanent
    assert replies.OK.positive and Reply.of(354, None, "go").intermediate


@pytest.mark.parametrize(
    ("code", "enhanced", "lines"),
    [
        (199, None, ("x",)),
        (600, None, ("x",)),
        (250, None, ()),
        (250, None, ("a\r\nb",)),
        (250, "5.0.0", ("x",)),
        (250, "2.0", ("x",)),
        (250, "2.0.0 ", ("x",)),
    ],
)
def test_validation(code: int, enhanced: str | None, lines: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        Reply(code, enhanced, lines)


def test_lines_are_coerced_to_tuple_and_frozen() -> None:
    reply = Reply(250, None, ["a"])  # type: ignore[arg-type]
    assert reply.lines == ("a",)
    with pytest.raises(AttributeError):
        reply.code = 1  # type: ignore[misc]


def test_helpers() -> None:
    assert replies.queued("ABC").to_bytes() == b"250 2.0.0 Ok: queued as ABC\r\n"
    assert replies.auth_ok().code == 235 and replies.auth_failed().enhanced == "5.7.8"
    assert replies.starttls_ready().code == 220 and replies.starttls_unavailable().temporary
    assert replies.rcpt_ok().enhanced == "2.1.5" and replies.mail_ok().enhanced == "2.1.0"
    assert replies.relay_denied().code == 554 and replies.temp_failure().code == 451
