"""Events the IMAP engine emits to the server (frozen dataclasses).

Informational events need no answer.  *Decision* events (`DecisionEvent` subclasses)
pause the engine until the server answers with the matching ``IMAPEngine`` method:

================  =========================================================
`LoginAttempt`    ``accept_login(user)`` / ``reject_login(reason, code)``
`StartTLS`        ``accept_starttls()`` (then the TLS handshake) /
                  ``reject_starttls(reason)``
`Run`             the command needs the store: ``untagged(...)``/``send_raw(...)``
                  any number of times, ``select(...)``/``unselect()`` as the
                  command requires, then ``finish(status, text, code)``
`IdleDone`        the client ended IDLE: ``finish("OK", ...)`` after a last look
================  =========================================================

`IdleStarted` tells the server to watch the selected mailbox; while the engine idles
the server may send news with ``announce()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from posthouse.protocols.imap.commands import Command


@dataclass(frozen=True)
class Event:
    """Base class of every engine event."""


@dataclass(frozen=True)
class DecisionEvent(Event):
    """An event the server must answer before the engine continues."""


@dataclass(frozen=True)
class LoginAttempt(DecisionEvent):
    """LOGIN (RFC 3501 §6.2.3) or AUTHENTICATE PLAIN/LOGIN (RFC 4616, SASL-IR RFC 4959).

    ``authzid`` is the SASL PLAIN authorization identity ("" when absent)."""

    tag: str
    mechanism: str
    user: str
    password: str = field(repr=False)
    authzid: str = ""


@dataclass(frozen=True)
class StartTLS(DecisionEvent):
    """STARTTLS (RFC 3501 §6.2.1)."""

    tag: str


@dataclass(frozen=True)
class Run(DecisionEvent):
    """A command for the server to carry out against the store."""

    command: Command


@dataclass(frozen=True)
class IdleStarted(Event):
    """IDLE (RFC 2177) began: watch the selected mailbox and ``announce()`` news."""

    tag: str


@dataclass(frozen=True)
class IdleDone(DecisionEvent):
    """The client sent DONE: take a last look and ``finish`` the IDLE command."""

    tag: str


@dataclass(frozen=True)
class LiteralAccepted(Event):
    """The engine sent ``+`` for a synchronising literal of ``command``: its octets (an
    APPEND message, perhaps large) follow, a transfer rather than a command line."""

    tag: str
    command: str


@dataclass(frozen=True)
class PlaintextLoginRefused(Event):
    """A LOGIN or AUTHENTICATE over plain text was refused (LOGINDISABLED, RFC 3501
    §6.2.3): a protection failure the server logs."""

    command: str


@dataclass(frozen=True)
class CompressionStarted(Event):
    """COMPRESS DEFLATE (RFC 4978) is in force from now on, both ways."""


@dataclass(frozen=True)
class LoggedOut(Event):
    """LOGOUT: the engine said BYE and closes."""


@dataclass(frozen=True)
class ConnectionLost(Event):
    """The session ended without LOGOUT (end of input, too many errors, a timeout)."""

    reason: str = ""
