"""Events the POP3 engine emits to the application (frozen dataclasses).

Informational events need no answer.  *Decision* events (`DecisionEvent`
subclasses) pause the engine until the application answers with the matching
``POP3Engine`` method:

=================  ==================================================
`LoginAttempt`     ``accept_login(maildrop)`` / ``reject_login(...)``
`StartTLS`         ``accept_stls()`` / ``reject_stls(reason)``
`Retrieve`         ``send_message(n, chunks)`` or ``begin_message(n)``,
                   ``message_chunk(data)``..., ``end_message()``
`UpdateRequested`  ``quit_done(ok, reason)``
=================  ==================================================

Invariant: a session that reached the TRANSACTION state ends with exactly one
`UpdateRequested` (QUIT; RFC 1939 §6) or `ConnectionLost` (anything else, in
which case no message may be deleted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Mechanism = Literal["USER", "APOP", "PLAIN"]


@dataclass(frozen=True)
class Event:
    """Base class of every engine event."""


@dataclass(frozen=True)
class DecisionEvent(Event):
    """An event the application must answer before the engine continues."""


@dataclass(frozen=True)
class LoginAttempt(DecisionEvent):
    """Credentials to verify: USER/PASS (RFC 1939 §7), APOP (RFC 1939 §7), AUTH PLAIN.

    ``USER`` and ``PLAIN`` carry ``password``.  ``APOP`` carries ``digest``
    instead (32 lower-case hex digits): the application checks it against
    MD5(apop_timestamp + shared secret).  ``authzid`` is the SASL PLAIN
    authorization identity (RFC 4616 §2; "" when absent, always "" otherwise);
    an application that does not support proxy logins should reject a
    non-empty one that differs from ``user``.
    """

    mechanism: Mechanism
    user: str
    password: str | None = field(default=None, repr=False)
    digest: str | None = None
    authzid: str = ""


@dataclass(frozen=True)
class StartTLS(DecisionEvent):
    """STLS (RFC 2595 §4): accept_stls() and start the handshake, or reject_stls()."""


@dataclass(frozen=True)
class Retrieve(DecisionEvent):
    """RETR n (``top_lines`` None) or TOP n k (RFC 1939 §5, §7).

    The engine has checked that message ``number`` exists and is not deleted.
    The application supplies the *whole* message content; for TOP the engine
    cuts it after the header, the blank line and ``top_lines`` body lines.
    """

    number: int
    top_lines: int | None = None


@dataclass(frozen=True)
class UpdateRequested(DecisionEvent):
    """QUIT in TRANSACTION state (RFC 1939 §6 UPDATE state).

    The application removes the ``deleted`` messages (1-based numbers,
    ascending; may be empty), releases the maildrop and calls ``quit_done``.
    """

    deleted: tuple[int, ...]


@dataclass(frozen=True)
class Quit(Event):
    """QUIT in AUTHORIZATION state: the engine signs off and closes."""


@dataclass(frozen=True)
class ConnectionLost(Event):
    """The TRANSACTION session ended without QUIT: release the maildrop, delete nothing.

    Causes: EOF from the client, too many errors or commands, or a message
    that could not be read while being sent (``abort_message``).
    """

    reason: str = ""
