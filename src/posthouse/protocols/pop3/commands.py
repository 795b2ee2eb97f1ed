"""Command-line splitting and argument checks for the POP3 engine.

Holds command-line splitting, message-number and digest parsing and the CAPA response
(RFC 2449 §5-§6).  Which commands are legal in which state is the state machine's, in
engine.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from posthouse.protocols.pop3.replies import Reply, err
from posthouse.protocols.pop3.settings import POP3Settings

# Verbs are at most four letters (RFC 1939 §3; RFC 2449 §4 allows extensions up to 40).
_VERB: Final = re.compile(r"[A-Za-z]{1,40}")
_DIGITS: Final = re.compile(r"[0-9]{1,10}")
_DIGEST: Final = re.compile(r"[0-9A-Fa-f]{32}")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters but HT

LINE_TOO_LONG: Final = err("line too long")
NO_SUCH_MESSAGE: Final = err("no such message")


@dataclass(frozen=True)
class Command:
    """A split command line: upper-cased verb, raw argument text after one SP."""

    verb: str
    arg: str

    @property
    def args(self) -> list[str]:
        """The argument split on white space."""
        return self.arg.split()


def split_command(text: str) -> Command | None:
    """Split a decoded line into verb and argument; None if there is no plausible verb.

    The argument keeps its spaces (RFC 1939 §7: a PASS argument may contain
    spaces); only the single separating SP is removed.
    """
    verb, _, arg = text.partition(" ")
    if not _VERB.fullmatch(verb):
        return None
    return Command(verb.upper(), arg)


def has_control_chars(text: str) -> bool:
    """True if ``text`` contains a control character other than HT."""
    return _CONTROL.search(text) is not None


def syntax(usage: str) -> Reply:
    return err(f"Syntax: {usage}")


def message_number(text: str) -> int | None:
    """RFC 1939 §5 msg: a decimal message number (no sign, at most 10 digits)."""
    return int(text) if _DIGITS.fullmatch(text) else None


def valid_digest(text: str) -> bool:
    """RFC 1939 §7 APOP digest: 32 hexadecimal digits (MD5)."""
    return _DIGEST.fullmatch(text) is not None


def capabilities(
    settings: POP3Settings, *, logged_in: bool, tls_active: bool, plaintext_ok: bool
) -> tuple[str, ...]:
    """The CAPA response lines (RFC 2449 §5-§6, RFC 2595 §4, RFC 5034 §3, RFC 3206 §6).

    RFC 2449 §5: what is available in AUTHORIZATION is announced in both
    states; STLS is dropped in TRANSACTION because it is only legal before login.
    """
    caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
    if plaintext_ok:
        caps += ["USER", "SASL PLAIN"]
    if settings.stls_available and not tls_active and not logged_in:
        caps.append("STLS")
    if settings.expire is not None:
        caps.append(f"EXPIRE {settings.expire}")
    if settings.login_delay is not None:
        caps.append(f"LOGIN-DELAY {settings.login_delay}")
    caps.append(f"IMPLEMENTATION {settings.implementation}")
    return tuple(caps)
