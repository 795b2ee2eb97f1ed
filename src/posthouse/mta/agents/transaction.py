"""The one delivery-agent interface: a transaction with a result per recipient.

Every kind of destination (an mbox spool file, a next hop over SMTP, a program or a file) is
delivered by an agent that implements :class:`DeliveryAgent`, and both routes to a
destination (direct delivery at intake, :mod:`posthouse.mta.direct`, and queue runs,
:mod:`posthouse.mta.delivery`) drive it the same way (maddy's delivery target)::

    transaction = agent.start(envelope)        # MAIL FROM: who sends, what the message is
    transaction.add_recipient(recipient)       # RCPT TO, once per destination of this agent
    transaction.body(body)                     # DATA: where the message's bytes come from
    results = await transaction.commit()       # deliver; one RecipientResult per recipient
    # or: transaction.abort()                  # nothing is delivered

What a recipient is depends on the agent (a spool mailbox, a next hop and address, a
command or file with the identity it runs as); who picks the agent for a destination is
:mod:`posthouse.mta.targets`.  :meth:`Transaction.commit` never raises for a delivery
failure: partial failure is the rule, and each recipient's result is delivered (no error),
a temporary failure or a permanent one, as a :class:`~posthouse.mta.errors.MailError`
carrying its RFC 3463 status (its first digit says which), its text and, for another
host's refusal, that host's reply.  :class:`NotAttempted` is the temporary failure of a
recipient the agent did not try at all (its next hop busy or known to be down), which a
caller may queue as if it had never been tried.

Agents may coalesce the commits of concurrent transactions (the mbox agent appends the
messages of concurrent commits to one mailbox under one lock with one fsync; the SMTP agent
reuses cached connections), so a caller that has many messages commits their transactions
together (``asyncio.gather``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Generic, Literal, Protocol, TypeVar

from posthouse.mta.errors import MailError

__all__ = [
    "DeliveryAgent",
    "MessageBody",
    "MessageEnvelope",
    "NotAttempted",
    "RecipientResult",
    "Transaction",
    "TransactionBase",
]

R = TypeVar("R")

Outcome = Literal["delivered", "temporary", "permanent"]


@dataclass(frozen=True)
class MessageEnvelope:
    """What a transaction is started with: the message's identity and envelope sender."""

    queue_id: str
    sender: str  # "" for the null reverse-path
    received_at: float
    size: int
    body_8bit: bool = False
    smtputf8: bool = False

    @property
    def received(self) -> datetime:
        return datetime.fromtimestamp(self.received_at).astimezone()

    @property
    def return_path(self) -> bytes:
        """The ``Return-Path:`` header field a final delivery adds (RFC 5321 §4.4)."""
        return f"Return-Path: <{self.sender}>\r\n".encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class MessageBody:
    """Where a message's bytes come from: ``content`` when it is held in memory, else a
    fresh reader from ``open`` (each call opens it again; the caller closes it)."""

    open: Callable[[], BinaryIO]
    content: bytes | None = None

    def reader(self) -> BinaryIO:
        return io.BytesIO(self.content) if self.content is not None else self.open()


class NotAttempted(MailError):
    """A temporary failure of a recipient its agent did not try (busy or failing hop)."""

    def __init__(self, message: str) -> None:
        super().__init__("4.4.5", message)


@dataclass(frozen=True)
class RecipientResult(Generic[R]):
    """The fate of one recipient: ``error`` None means delivered."""

    recipient: R
    error: MailError | None

    @property
    def outcome(self) -> Outcome:
        if self.error is None:
            return "delivered"
        return "temporary" if self.error.temporary else "permanent"


class Transaction(Protocol[R]):
    """One message on its way through one agent (module docstring)."""

    def add_recipient(self, recipient: R) -> None: ...

    def body(self, body: MessageBody) -> None: ...

    async def commit(self) -> list[RecipientResult[R]]: ...

    def abort(self) -> None: ...


class DeliveryAgent(Protocol[R]):
    """Starts transactions (module docstring)."""

    def start(self, envelope: MessageEnvelope) -> Transaction[R]: ...


@dataclass
class TransactionBase(Generic[R]):
    """The bookkeeping every agent's transaction shares: recipients in order (each once),
    the body, and the one-shot rule (commit or abort, once)."""

    envelope: MessageEnvelope
    recipients: list[R] = field(default_factory=list)
    _body: MessageBody | None = None
    _done: bool = False

    def add_recipient(self, recipient: R) -> None:
        self._check_open()
        if recipient not in self.recipients:
            self.recipients.append(recipient)

    def body(self, body: MessageBody) -> None:
        self._check_open()
        self._body = body

    def abort(self) -> None:
        self._done = True

    def _begin_commit(self) -> MessageBody:
        """The body, once; the transaction is closed from now on."""
        self._check_open()
        self._done = True
        if self._body is None:
            raise RuntimeError("commit before body")
        return self._body

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError("the transaction was already committed or aborted")

    def _all(self, error: MailError | None) -> list[RecipientResult[R]]:
        return [RecipientResult(recipient, error) for recipient in self.recipients]
