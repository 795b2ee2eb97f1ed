"""Events the SMTP engine emits to the application (frozen dataclasses).

Informational events need no answer.  *Decision* events (`DecisionEvent`
subclasses) pause the engine until the application calls
``SMTPEngine.respond`` (or ``respond_per_recipient`` for an LMTP `MessageEnd`).

Invariant: every `DataStart` is followed by exactly one `MessageEnd` or
`MessageAborted`; `MessageData` only occurs between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """Base class of every engine event."""


@dataclass(frozen=True)
class DecisionEvent(Event):
    """An event the application must answer before the engine continues."""


@dataclass(frozen=True)
class Hello(Event):
    """HELO / EHLO / LHLO accepted (RFC 5321 §4.1.1.1, RFC 2033 §4.1).

    A greeting also ends any mail transaction in progress (RFC 5321 §4.1.4),
    so the application must forget the current envelope.
    """

    verb: str
    domain: str


@dataclass(frozen=True)
class MailFrom(DecisionEvent):
    """MAIL FROM (RFC 5321 §4.1.1.2); ``address`` is '' for the null path ``<>``.

    ``params`` holds every ESMTP parameter, keys upper-cased; the known ones
    are also decoded into ``size`` (RFC 1870), ``body`` (RFC 6152, upper-cased)
    and ``smtputf8`` (RFC 6531).
    """

    address: str
    params: Mapping[str, str | None]
    size: int | None = None
    body: str | None = None
    smtputf8: bool = False


@dataclass(frozen=True)
class RcptTo(DecisionEvent):
    """RCPT TO (RFC 5321 §4.1.1.3).  A 2xx answer accepts the recipient."""

    address: str
    params: Mapping[str, str | None]


@dataclass(frozen=True)
class DataStart(Event):
    """Message content follows (DATA accepted, or first BDAT chunk)."""


@dataclass(frozen=True)
class MessageData(Event):
    """A slice of message content: dot-unstuffed (DATA) or raw (BDAT)."""

    data: bytes


@dataclass(frozen=True)
class MessageEnd(DecisionEvent):
    """End of content (CRLF.CRLF or BDAT LAST): accept or reject the message."""


@dataclass(frozen=True)
class MessageAborted(Event):
    """The message in progress is discarded; the engine sends its own reply."""

    reason: str


@dataclass(frozen=True)
class AuthAttempt(DecisionEvent):
    """Decoded SASL credentials (RFC 4954): answer 235 2.7.0 or 535 5.7.8."""

    mechanism: str
    authzid: str
    authcid: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class StartTLS(DecisionEvent):
    """STARTTLS (RFC 3207): answer 220 2.0.0 and upgrade, or 454 4.7.0."""


@dataclass(frozen=True)
class Reset(Event):
    """RSET (RFC 5321 §4.1.1.5): the current transaction is abandoned."""


@dataclass(frozen=True)
class Quit(Event):
    """QUIT (RFC 5321 §4.1.1.10): the engine answers 221 and closes."""
