"""Typed SMTP replies: the `Reply` value object, its wire encoding and common replies.

Reply format is RFC 5321 §4.2 (multi-line replies use ``code-text`` on every
line but the last); enhanced status codes are RFC 3463, carried per RFC 2034 §3
at the start of every line's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: three-digit code, optional enhanced code, text lines."""

    code: int
    enhanced: str | None
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.lines, tuple):
            object.__setattr__(self, "lines", tuple(self.lines))
        # RFC 5321 §4.2.1: first digit 2-5; 1yz is never used by SMTP servers.
        if not 200 <= self.code <= 599:
            raise ValueError(f"invalid SMTP reply code {self.code!r}")
        if not self.lines:
            raise ValueError("a reply needs at least one line")
        for line in self.lines:
            if "\r" in line or "\n" in line:
                raise ValueError("reply text must not contain CR or LF")
        if self.enhanced is not None:
            # RFC 3463 §2: class.subject.detail, class matching the reply code.
            if not _ENHANCED.fullmatch(self.enhanced):
                raise ValueError(f"invalid enhanced status code {self.enhanced!r}")
            if self.enhanced[0] != str(self.code)[0]:
                raise ValueError(f"enhanced code {self.enhanced} does not match {self.code}")

    @classmethod
    def of(cls, code: int, enhanced: str | None, *lines: str) -> Reply:
        """Build a reply from loose text lines: ``Reply.of(250, "2.0.0", "Ok")``."""
        return cls(code, enhanced, lines)

    @property
    def positive(self) -> bool:
        """2xx: the command was accepted."""
        return 200 <= self.code < 300

    @property
    def intermediate(self) -> bool:
        """3xx: more input expected (354, 334)."""
        return 300 <= self.code < 400

    @property
    def temporary(self) -> bool:
        """4xx: transient failure."""
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        """5xx: permanent failure."""
        return self.code >= 500

    def to_bytes(self) -> bytes:
        """Wire form, e.g. ``b"250-a\\r\\n250 2.0.0 b\\r\\n"``."""
        out: list[str] = []
        last = len(self.lines) - 1
        for index, line in enumerate(self.lines):
            sep = " " if index == last else "-"
            text = f"{self.enhanced} {line}" if self.enhanced else line
            out.append(f"{self.code}{sep}{text}\r\n")
        return "".join(out).encode("utf-8")


# Convenience replies for the decision events (RFC 3463 / RFC 5248 codes).


def mail_ok(text: str = "Ok") -> Reply:
    """Positive answer to `MailFrom`."""
    return Reply(250, "2.1.0", (text,))


def rcpt_ok(text: str = "Ok") -> Reply:
    """Positive answer to `RcptTo`."""
    return Reply(250, "2.1.5", (text,))


def queued(queue_id: str) -> Reply:
    """Positive answer to `MessageEnd`."""
    return Reply(250, "2.0.0", (f"Ok: queued as {queue_id}",))


def no_such_user(text: str = "No such user here") -> Reply:
    """RFC 5321 §3.3 unknown recipient (550 5.1.1)."""
    return Reply(550, "5.1.1", (text,))


def relay_denied(text: str = "Relay access denied") -> Reply:
    """Recipient not local and relaying not permitted (554 5.7.1)."""
    return Reply(554, "5.7.1", (text,))


def temp_failure(text: str = "Temporary failure, try again later") -> Reply:
    """Generic transient failure (451 4.3.0)."""
    return Reply(451, "4.3.0", (text,))


def auth_ok() -> Reply:
    """RFC 4954 §6: authentication succeeded (235 2.7.0)."""
    return Reply(235, "2.7.0", ("Authentication successful",))


def auth_failed() -> Reply:
    """RFC 4954 §6: invalid credentials (535 5.7.8)."""
    return Reply(535, "5.7.8", ("Authentication credentials invalid",))


def starttls_ready() -> Reply:
    """RFC 3207 §4: go ahead with the TLS handshake (220 2.0.0)."""
    return Reply(220, "2.0.0", ("Ready to start TLS",))


def starttls_unavailable() -> Reply:
    """RFC 3207 §4: TLS temporarily unavailable (454 4.7.0)."""
    return Reply(454, "4.7.0", ("TLS not available due to temporary reason",))


OK: Final = Reply(250, "2.0.0", ("Ok",))
