"""Delivery of queued messages to their destinations, local and remote.

``QueueDelivery.run_batch`` claims a batch of queued messages, expands each
envelope recipient once (aliases, ``:include:``, ``~/.forward``) into
destinations, finds each destination's agent (:mod:`posthouse.mta.targets`) and
delivers through the agents' one interface
(:mod:`posthouse.mta.agents.transaction`): one transaction per message and agent,
all committed together, so every message for one mbox is appended under a single
lock with a single fsync, programs and files go to the local runner (as their
identity), and remote addresses to the SMTP agent, once per next hop.  The
envelope is then
rewritten (or removed when nothing is left), so a destination that failed
temporarily stays queued and is retried, and one that delivered is not
delivered again.  Blocking work: the scheduler runs batches in a thread.

Destinations are kept in the control file after expansion as typed data
(:mod:`posthouse.mta.destinations`): what a destination is never depends on the
characters of its address.  A token from a queue file written before kinds
existed (``legacy``) is never interpreted: its original recipient is expanded
again, and destinations it had already reached are not delivered twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, TypeVar

from posthouse.mta.agents.local_runner import LocalRunner
from posthouse.mta.agents.mbox import MailboxWriter, SpoolMailbox
from posthouse.mta.agents.program import ProgramDelivery
from posthouse.mta.agents.smtp import SMTPDelivery, SMTPRecipient
from posthouse.mta.agents.store import StoreDelivery, StoreMailbox
from posthouse.mta.agents.transaction import (
    DeliveryAgent,
    MessageBody,
    MessageEnvelope,
    RecipientResult,
    Transaction,
)
from posthouse.mta.destinations import LEGACY, legacy_token
from posthouse.mta.errors import MailError
from posthouse.mta.expand import Expander
from posthouse.mta.local_mail import LocalMail
from posthouse.mta.logline import delivery_line
from posthouse.mta.pseudodomains import AddressError
from posthouse.mta.queue.store import Envelope, QueueError, QueueStore, RecipientState
from posthouse.mta.stats import Statistics
from posthouse.mta.targets import Target, Targets, Unroutable, mailer_of
from posthouse.mta.transport import RemoteTransport
from posthouse.store.mbox.locking import LockSettings

log = logging.getLogger("posthouse.mta.delivery")
T = TypeVar("T")

SMALL_MESSAGE = 64 * 1024  # read whole before sending over SMTP; larger ones are streamed
COPY_CHUNK = 256 * 1024  # a list owner's copy of a message is written in chunks this size
ACTIVE = ("pending", "deferred")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts, bounded, and a queue lifetime."""

    first: float = 60.0
    maximum: float = 3600.0
    lifetime: float = 5 * 24 * 3600.0

    def next_attempt(self, attempts: int, now: float) -> float:
        backoff: float = self.first * 2.0 ** max(attempts - 1, 0)
        return now + min(backoff, self.maximum)


@dataclass(frozen=True)
class MailboxSettings:
    """Where local mailboxes are and how they are locked."""

    spool_dir: Path
    locking: LockSettings
    owner_of: Callable[[str], tuple[int, int] | None] = lambda _user: None
    trusted_uids: tuple[int, ...] = ()  # owners accepted besides the user (store.mbox.append)


@dataclass
class DeliveryOutcome:
    """What happened to one queued message in a batch."""

    queue_id: str
    claimed: bool
    finished: bool = False  # nothing left to do: removed from the queue
    next_attempt: float | None = None
    failures: dict[str, MailError] = field(default_factory=dict)  # by envelope recipient
    bounced: list[RecipientState] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # new queue entries (DSNs) to deliver


_UNREAD: Final = b"\0unread"  # a _Work's content before the queue file was looked at


@dataclass
class _Work:
    envelope: Envelope
    outcome: DeliveryOutcome
    changed: bool = False
    content: bytes | None = _UNREAD  # the whole message when small (read once per batch)


@dataclass
class _Planned:
    """One transaction of a batch: the message and, by agent recipient, the queue entries
    that led to it (two destinations may end in the same mailbox or address)."""

    work: _Work
    transaction: Transaction[Any]
    states: dict[Any, list[RecipientState]] = field(default_factory=dict)


async def _commit_all(transactions: list[Transaction[Any]]) -> list[list[RecipientResult[Any]]]:
    return list(await asyncio.gather(*(t.commit() for t in transactions)))


class QueueDelivery:
    """Delivers batches of queued messages: expansion, then the mbox, program, file and SMTP
    agents (local and remote destinations alike)."""

    def __init__(
        self,
        *,
        store: QueueStore,
        expander: Expander,
        mailboxes: MailboxSettings,
        retry: RetryPolicy,
        on_bounce: Callable[[Envelope, list[RecipientState]], object] | None = None,
        transport: RemoteTransport | None = None,
        stats: Statistics | None = None,
        on_delay: Callable[[Envelope, list[RecipientState]], object] | None = None,
        warn_after: float = 0.0,
        clock: Callable[[], float] = time.time,
        runner: LocalRunner | None = None,
        local_mail: LocalMail | None = None,
        mbox: MailboxWriter | None = None,
        store_agent: StoreDelivery | None = None,
    ) -> None:
        self.store = store
        self.expander = expander
        self.mailboxes = mailboxes
        self.retry = retry
        self.on_bounce = on_bounce
        self.transport = transport
        self.stats = stats
        self.on_delay = on_delay
        self.warn_after = warn_after
        self.clock = clock
        forwarded = transport is not None and transport.forwards_local_mail
        self.local_mail = local_mail or LocalMail(
            mailboxes.spool_dir, transport.default_domain if transport and forwarded else None
        )
        self.targets = Targets(self.local_mail, transport, expander.is_local_user)
        self.mbox = mbox or MailboxWriter(
            locking=mailboxes.locking,
            owner_of=lambda path: mailboxes.owner_of(path.name),
            trusted_uids=mailboxes.trusted_uids,
        )
        self.store_agent = store_agent
        self.smtp = None
        if transport is not None:
            self.smtp = SMTPDelivery(transport.agent, outbound_sender=transport.outbound_sender)
        self.programs = ProgramDelivery(
            runner, native_sender=functools.partial(_native_sender, transport)
        )

    def run_batch(self, queue_ids: Sequence[str], *, force: bool = False) -> list[DeliveryOutcome]:
        """Deliver what is due in the given messages; returns one outcome per id."""
        outcomes: list[DeliveryOutcome] = []
        with ExitStack() as claims:
            works: list[_Work] = []
            for queue_id in dict.fromkeys(queue_ids):
                try:
                    envelope = claims.enter_context(self.store.claim(queue_id))
                except (OSError, ValueError) as exc:
                    log.warning("%s: cannot claim queue entry: %s", queue_id, exc)
                    envelope = None
                outcome = DeliveryOutcome(queue_id, claimed=envelope is not None)
                outcomes.append(outcome)
                if envelope is not None:
                    works.append(_Work(envelope, outcome))
            now = self.clock()
            for work in works:
                self._expand(work, now)
            self._deliver_all(works, now, force=force)
            for work in works:
                self._finish(work, now)
        return outcomes

    # -- expansion ---------------------------------------------------------------------

    def hand_back_deferred(self, queue_id: str) -> None:
        """Drop the deferred recipients of an entry (their sender was told 4xx and retries);
        an entry left with nothing to do is removed."""
        with self.store.claim(queue_id, blocking=True) as envelope:
            if envelope is None:
                return
            envelope.recipients = [r for r in envelope.recipients if r.status != "deferred"]
            if any(r.status in ACTIVE for r in envelope.recipients):
                self.store.update(envelope)
            else:
                self.store.remove(queue_id)

    def _expand(self, work: _Work, now: float) -> None:
        recipients = _reopen_legacy(work.envelope.recipients)
        work.changed = work.changed or recipients is not work.envelope.recipients
        reached = {
            (r.original, r.address)
            for r in recipients
            if r.kind == LEGACY and r.status in ("sent", "failed")
        }
        expanded: list[RecipientState] = []
        for rcpt in recipients:
            if rcpt.original is not None or rcpt.status not in ACTIVE:
                expanded.append(rcpt)
                continue
            result = self.expander.expand(rcpt.address)
            work.changed = True
            retried = any(not error.permanent for error in result.errors)
            owned: dict[str, list[RecipientState]] = {}  # by owner-LIST sender
            for delivery in result.deliveries:
                if reached and (rcpt.address, legacy_token(delivery.destination)) in reached:
                    continue  # an older version delivered it (or gave up on it) already
                state = RecipientState.expanded(delivery.destination, rcpt.address)
                owner = self._owner(work.envelope, delivery.sender)
                if owner is None:
                    expanded.append(state)
                elif not retried:  # else split when the expansion is whole (no duplicates)
                    owned.setdefault(owner, []).append(state)
            for error in result.errors:
                if error.permanent:
                    failed = RecipientState(
                        address=error.address,
                        original=rcpt.address,
                        status="failed",
                        last_error=f"5.1.1 {error.message}",
                    )
                    owner = self._owner(work.envelope, error.sender)
                    if owner is None:
                        expanded.append(failed)
                    elif not retried:
                        owned.setdefault(owner, []).append(failed)
            if retried or not self._split(work, owned):
                # Stays unexpanded so the next attempt expands it again.
                message = next((e.message for e in result.errors if not e.permanent), "")
                rcpt.status = "deferred"
                rcpt.attempts += 1
                rcpt.last_error = f"4.3.0 {message or 'cannot queue the list owner copy'}"
                rcpt.next_attempt = self.retry.next_attempt(rcpt.attempts, now)
                expanded.append(rcpt)
        # Each destination once per message, whichever recipient led to it (sendmail's rule).
        unique: dict[tuple[str, str, bool], RecipientState] = {}
        for rcpt in expanded:
            unique.setdefault((rcpt.kind, rcpt.address, rcpt.original is None), rcpt)
        work.envelope.recipients = list(unique.values())

    @staticmethod
    def _owner(envelope: Envelope, sender: str | None) -> str | None:
        """The owner-LIST sender destinations of a list go out with, if not the envelope's.
        A message with the null sender keeps it: no DSN may be sent about it (RFC 5321
        §4.5.5), and the owner would get them."""
        if sender is None or not envelope.sender or sender == envelope.sender:
            return None
        return sender

    def _split(self, work: _Work, owned: dict[str, list[RecipientState]]) -> bool:
        """Queue a copy of the message for each owner-LIST sender with that list's
        destinations (sendmail's rule: its failures and DSNs go to the owner, and so does
        its Return-Path); False when one could not be queued."""
        envelope = work.envelope
        for sender, recipients in owned.items():
            extra = {k: v for k, v in envelope.extra.items() if k != "warned"}
            message = self.store.new_message(
                sender,
                recipients,
                client_address=envelope.client_address,
                helo=envelope.helo,
                auth_user=envelope.auth_user,
                body=envelope.body,
                smtputf8=envelope.smtputf8,
                protocol=envelope.protocol,
                extra=extra,
                received_at=envelope.received_at,
            )
            try:
                with self._open_data(envelope.queue_id) as data:
                    while chunk := data.read(COPY_CHUNK):
                        message.write(chunk)
                queue_id = message.commit_blocking()
            except OSError as exc:
                message.abort()
                log.warning("%s: cannot queue the copy for %s: %s", envelope.queue_id, sender, exc)
                return False
            log.info("%s: clone %s for list owner sender <%s>", envelope.queue_id, queue_id, sender)
            work.outcome.created.append(queue_id)
        return True

    # -- delivery ----------------------------------------------------------------------

    def _due(self, rcpt: RecipientState, now: float, force: bool) -> bool:
        return (
            rcpt.original is not None
            and rcpt.status in ACTIVE
            and (force or rcpt.next_attempt <= now)
        )

    def _deliver_all(self, works: list[_Work], now: float, *, force: bool) -> None:
        """Every due destination of the batch through its agent: one transaction per
        message and agent, all committed together (so the mbox agent appends a mailbox's
        messages under one lock, and the SMTP agent reuses its connections)."""
        transactions: dict[tuple[int, str], _Planned] = {}
        for work in works:
            for rcpt in work.envelope.recipients:
                if not self._due(rcpt, now, force):
                    continue
                destination = rcpt.destination()
                if destination is None:  # not a destination: never guessed at
                    unsafe = MailError("5.1.3", f"not a deliverable destination {rcpt.address!r}")
                    self._settle(work, rcpt, unsafe, now, mailer="local")
                    continue
                target = self.targets.resolve(destination)
                if isinstance(target, Unroutable):
                    self._settle(work, rcpt, target.error, now, mailer=target.mailer)
                    continue
                agent = self._agent_for(target)
                if agent is None:
                    unavailable = MailError("4.3.0", "no IMAP mail store on this host")
                    self._settle(work, rcpt, unavailable, now, mailer="local")
                    continue
                key = (id(agent), work.envelope.queue_id)
                planned = transactions.get(key)
                if planned is None:
                    planned = _Planned(work, agent.start(self._message_envelope(work.envelope)))
                    planned.transaction.body(self._body(work))
                    transactions[key] = planned
                planned.transaction.add_recipient(target)
                planned.states.setdefault(target, []).append(rcpt)
        if not transactions:
            return
        planned_list = list(transactions.values())
        results = self._run(_commit_all([p.transaction for p in planned_list]))
        for planned, outcome in zip(planned_list, results, strict=True):
            for result in outcome:
                mailer, relay = mailer_of(result.recipient)
                for rcpt in planned.states[result.recipient]:  # each destination gets one copy
                    self._settle(planned.work, rcpt, result.error, now, mailer=mailer, relay=relay)

    def _agent_for(self, target: Target) -> DeliveryAgent[Any] | None:
        if isinstance(target, SpoolMailbox):
            return self.mbox
        if isinstance(target, StoreMailbox):
            return self.store_agent
        if isinstance(target, SMTPRecipient):
            assert self.smtp is not None  # Targets plans SMTP only with a transport
            return self.smtp
        return self.programs

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self.transport is not None:
            return self.transport.run(coroutine)
        return asyncio.run(coroutine)

    @staticmethod
    def _message_envelope(envelope: Envelope) -> MessageEnvelope:
        return MessageEnvelope(
            queue_id=envelope.queue_id,
            sender=envelope.sender,
            received_at=envelope.received_at,
            size=envelope.size,
            body_8bit=(envelope.body or "").upper() == "8BITMIME",
            smtputf8=envelope.smtputf8,
        )

    def _body(self, work: _Work) -> MessageBody:
        if work.content is _UNREAD:
            work.content = self._small_content(work.envelope)
        return MessageBody(functools.partial(self._open_data, work.envelope.queue_id), work.content)

    def _open_data(self, queue_id: str) -> BinaryIO:
        try:
            return self.store.open_data(queue_id)
        except QueueError as exc:
            raise OSError(str(exc)) from exc

    def _small_content(self, envelope: Envelope) -> bytes | None:
        """A small message's data, read here (a worker thread) so the agents need not hand
        reads to threads; None for large or unreadable ones (the agents stream those)."""
        if envelope.size > SMALL_MESSAGE:
            return None
        try:
            content = self.store.read_data(envelope.queue_id)
        except (OSError, QueueError):
            return None  # the agent's own read reports it
        return content if len(content) == envelope.size else None

    def _settle(
        self,
        work: _Work,
        rcpt: RecipientState,
        error: MailError | None,
        now: float,
        *,
        mailer: str,
        relay: str = "localhost",
    ) -> None:
        work.changed = True
        envelope = work.envelope
        rcpt.attempts += 1
        # sendmail's log line, so existing log tools can read it.
        line = delivery_line(
            envelope.queue_id,
            rcpt.original or rcpt.address,
            now - envelope.received_at,
            mailer,
            relay,
        )
        if error is None:
            rcpt.status = "sent"
            rcpt.last_error = None
            log.info("%s, stat=Sent", line)
            if self.stats is not None:
                self.stats.record_sent(mailer, envelope.size)
            return
        rcpt.last_error = f"{error.status} {error.message}"
        expired = now - envelope.received_at > self.retry.lifetime
        if error.temporary and not expired:
            rcpt.status = "deferred"
            rcpt.next_attempt = self.retry.next_attempt(rcpt.attempts, now)
            # LMTP answers with this error's own code (452 4.2.2 for a full mailbox).
            work.outcome.failures.setdefault(rcpt.original or rcpt.address, error)
            log.info("%s, stat=Deferred: %s", line, rcpt.last_error)
        else:
            rcpt.status = "failed"
            work.outcome.failures[rcpt.original or rcpt.address] = error
            log.info("%s, stat=Failed: %s", line, rcpt.last_error)
            if self.stats is not None:
                self.stats.record_rejected(mailer)

    def _maybe_warn(self, work: _Work, active: list[RecipientState], now: float) -> None:
        """One delay warning per message once it has waited ``warn_after`` (0: never)."""
        envelope = work.envelope
        if not self.warn_after or self.on_delay is None or envelope.extra.get("warned"):
            return
        if now - envelope.received_at < self.warn_after:
            return
        waiting = [r for r in active if r.status == "deferred"]
        if not waiting:
            return
        notice = self.on_delay(envelope, waiting)
        envelope.extra["warned"] = "1"
        work.changed = True
        if isinstance(notice, str):
            work.outcome.created.append(notice)

    def _finish(self, work: _Work, now: float) -> None:
        envelope = work.envelope
        outcome = work.outcome
        for rcpt in envelope.recipients:
            if rcpt.status == "failed" and rcpt.original is not None:
                outcome.failures.setdefault(
                    rcpt.original, MailError("5.1.1", rcpt.last_error or "delivery failed")
                )
            elif rcpt.status == "deferred":
                outcome.failures.setdefault(
                    rcpt.original or rcpt.address,
                    MailError("4.2.0", rcpt.last_error or "delivery deferred"),
                )
        failed = [r for r in envelope.recipients if r.status == "failed"]
        active = [r for r in envelope.recipients if r.status in ACTIVE]
        if not active:
            if failed and self.on_bounce is not None:
                notice = self.on_bounce(envelope, failed)
                outcome.bounced = failed
                if isinstance(notice, str):
                    outcome.created.append(notice)
            self.store.remove(envelope.queue_id)
            outcome.finished = True
            return
        outcome.next_attempt = min(r.next_attempt for r in active)
        self._maybe_warn(work, active, now)
        if work.changed:
            self.store.update(envelope)


def _reopen_legacy(recipients: list[RecipientState]) -> list[RecipientState]:
    """Recipients with each legacy token still to deliver replaced by its original address,
    to be expanded again (a token whose kind cannot be proven is never interpreted); the
    list itself when there is none."""
    if not any(r.kind == LEGACY and r.status in ACTIVE for r in recipients):
        return recipients
    reopened: list[RecipientState] = []
    for rcpt in recipients:
        if rcpt.kind == LEGACY and rcpt.status in ACTIVE and rcpt.original is not None:
            log.info(
                "re-expanding %s queued by an older version as %r", rcpt.original, rcpt.address
            )
            reopened.append(RecipientState(address=rcpt.original, attempts=rcpt.attempts))
        else:
            reopened.append(rcpt)
    return reopened


def _native_sender(transport: RemoteTransport | None, sender: str) -> str:
    """The sender as a gateway's transport program gets it (``NATIVE_SENDER``)."""
    if transport is None or not sender:
        return sender
    try:
        return transport.outbound_sender(sender)
    except AddressError:
        return sender
