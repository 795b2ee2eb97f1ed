"""Delivery of queued messages to their destinations, local and remote.

``QueueDelivery.run_batch`` claims a batch of queued messages, expands each
envelope recipient once (aliases, ``:include:``, ``~/.forward``) into
destinations, and hands them to the delivery agents: every message for one
mbox is appended under a single lock with a single fsync; programs and files
go to the local runner (as their identity); remote addresses to the SMTP agent,
grouped by next hop.  The envelope is then
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

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from posthouse.mta.address import unquote_local
from posthouse.mta.agents.local_runner import LocalRunner, PrefixedReader
from posthouse.mta.agents.smtp import OutboundMessage
from posthouse.mta.destinations import (
    LEGACY,
    Destination,
    FileDestination,
    LocalMailbox,
    ProgramDestination,
    RemoteAddress,
    legacy_token,
)
from posthouse.mta.errors import MailError
from posthouse.mta.expand import Expander
from posthouse.mta.local_mail import LocalMail, SpoolMailbox
from posthouse.mta.logline import delivery_line, relay_name
from posthouse.mta.pseudodomains import AddressError, NativeAddress
from posthouse.mta.queue.store import Envelope, QueueError, QueueStore, RecipientState
from posthouse.mta.routing import NextHop
from posthouse.mta.stats import Statistics
from posthouse.mta.transport import LocalRoute, PipeRoute, RemoteTransport, SMTPRoute
from posthouse.store.mbox.append import MboxMessage, append_messages
from posthouse.store.mbox.locking import LockSettings, MailboxLockTimeout

log = logging.getLogger("posthouse.mta.delivery")

SMALL_MESSAGE = 64 * 1024  # read whole before sending over SMTP; larger ones are streamed
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
    trusted_uids: tuple[int, ...] = ()  # owners accepted besides the user (mbox.append_messages)


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


@dataclass
class _Work:
    envelope: Envelope
    outcome: DeliveryOutcome
    changed: bool = False


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
        self.runner = runner
        forwarded = transport is not None and transport.forwards_local_mail
        self.local_mail = local_mail or LocalMail(
            mailboxes.spool_dir, transport.default_domain if transport and forwarded else None
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
            for delivery in result.deliveries:
                if reached and (rcpt.address, legacy_token(delivery.destination)) in reached:
                    continue  # an older version delivered it (or gave up on it) already
                expanded.append(RecipientState.expanded(delivery.destination, rcpt.address))
            for error in result.errors:
                if error.permanent:
                    expanded.append(
                        RecipientState(
                            address=error.address,
                            original=rcpt.address,
                            status="failed",
                            last_error=f"5.1.1 {error.message}",
                        )
                    )
                else:
                    # Stays unexpanded so the next attempt expands it again.
                    rcpt.status = "deferred"
                    rcpt.attempts += 1
                    rcpt.last_error = f"4.3.0 {error.message}"
                    rcpt.next_attempt = self.retry.next_attempt(rcpt.attempts, now)
                    expanded.append(rcpt)
        # Each destination once per message, whichever recipient led to it (sendmail's rule).
        unique: dict[tuple[str, str, bool], RecipientState] = {}
        for rcpt in expanded:
            unique.setdefault((rcpt.kind, rcpt.address, rcpt.original is None), rcpt)
        work.envelope.recipients = list(unique.values())

    # -- delivery ----------------------------------------------------------------------

    def _due(self, rcpt: RecipientState, now: float, force: bool) -> bool:
        return (
            rcpt.original is not None
            and rcpt.status in ACTIVE
            and (force or rcpt.next_attempt <= now)
        )

    def _deliver_all(self, works: list[_Work], now: float, *, force: bool) -> None:
        mbox_groups: dict[Path, list[tuple[_Work, RecipientState, str]]] = defaultdict(list)
        smtp_groups: dict[NextHop, list[tuple[_Work, RecipientState, str]]] = defaultdict(list)
        for work in works:
            for rcpt in work.envelope.recipients:
                if not self._due(rcpt, now, force):
                    continue
                target: Destination | SpoolMailbox | None = rcpt.destination()
                if isinstance(target, LocalMailbox):
                    target = self._local_target(work, rcpt, target.user, now)
                    if target is None:
                        continue  # settled
                match target:
                    case SpoolMailbox(user=user, path=path):
                        mbox_groups[path].append((work, rcpt, user))
                    case FileDestination(path=file_path, run_as=run_as):
                        failure = self._append_file(work.envelope, file_path, run_as)
                        self._settle(work, rcpt, failure, now, mailer="file")
                    case ProgramDestination(command=command, run_as=run_as):
                        failure = self._run_program(work.envelope, command, run_as)
                        self._settle(work, rcpt, failure, now, mailer="prog")
                    case RemoteAddress(address=address):
                        self._plan_remote(work, rcpt, address, smtp_groups, mbox_groups, now)
                    case _:
                        # A kind that is not a destination: never guessed at
                        # (RecipientState.destination).
                        unsafe = MailError(
                            "5.1.3", f"not a deliverable destination {rcpt.address!r}"
                        )
                        self._settle(work, rcpt, unsafe, now, mailer="local")
        for path, items in mbox_groups.items():
            outcome = self._append(path, items)
            for work, rcpt, _user in items:
                self._settle(work, rcpt, outcome, now, mailer="local")
        for hop, targets in smtp_groups.items():
            self._send_smtp(hop, targets, now)

    def _local_target(
        self, work: _Work, rcpt: RecipientState, user: str, now: float
    ) -> SpoolMailbox | RemoteAddress | None:
        """Where local user ``user``'s mail goes (:class:`LocalMail`); None when that failed
        (settled here)."""
        try:
            return self.local_mail.target(user)
        except MailError as error:
            self._settle(work, rcpt, error, now, mailer="local")
            return None

    def _plan_remote(
        self,
        work: _Work,
        rcpt: RecipientState,
        address: str,
        smtp_groups: dict[NextHop, list[tuple[_Work, RecipientState, str]]],
        mbox_groups: dict[Path, list[tuple[_Work, RecipientState, str]]],
        now: float,
    ) -> None:
        if self.transport is None:
            error = MailError("4.4.1", "no transport for remote recipients on this host")
            self._settle(work, rcpt, error, now, mailer="smtp")
            return
        try:
            where = self.transport.plan(address)
        except AddressError as exc:
            self._settle(work, rcpt, MailError("5.1.3", str(exc)), now, mailer="smtp")
            return
        match where:
            case SMTPRoute(hop=hop, address=target):
                smtp_groups[hop].append((work, rcpt, target))
            case PipeRoute(command=command, native=native):
                failure = self._run_program(work.envelope, command, "", native=native)
                self._settle(work, rcpt, failure, now, mailer=native.protocol)
            case LocalRoute(user=local):
                user = unquote_local(local).lower()
                if self.expander.is_local_user(user):
                    spool = self._local_target(work, rcpt, user, now)
                    if isinstance(spool, SpoolMailbox):
                        mbox_groups[spool.path].append((work, rcpt, user))
                    elif spool is not None:
                        smtp_error = MailError("5.4.6", f"<{address}>: routing loop")
                        self._settle(work, rcpt, smtp_error, now, mailer="local")
                else:
                    unknown = MailError("5.1.1", f"<{address}>: no such local mailbox")
                    self._settle(work, rcpt, unknown, now, mailer="local")

    def _send_smtp(
        self, hop: NextHop, targets: list[tuple[_Work, RecipientState, str]], now: float
    ) -> None:
        assert self.transport is not None
        by_message: dict[str, list[tuple[_Work, RecipientState, str]]] = defaultdict(list)
        for target in targets:
            by_message[target[0].envelope.queue_id].append(target)
        messages = []
        for queue_id, items in by_message.items():
            envelope = items[0][0].envelope
            messages.append(
                OutboundMessage(
                    queue_id=queue_id,
                    sender=self.transport.outbound_sender(envelope.sender),
                    recipients=tuple(address for _w, _r, address in items),
                    open_data=functools.partial(self.store.open_data, queue_id),
                    size=envelope.size,
                    body_8bit=(envelope.body or "").upper() == "8BITMIME",
                    smtputf8=envelope.smtputf8,
                    content=self._small_content(envelope),
                )
            )
        results = self.transport.deliver(hop, messages)
        relay = relay_name(hop)
        for queue_id, items in by_message.items():
            outcome = {result.recipient: result.error for result in results.get(queue_id, [])}
            for work, rcpt, address in items:
                error = outcome.get(address, MailError("4.3.0", "no result from the SMTP agent"))
                self._settle(work, rcpt, error, now, mailer="smtp", relay=relay)

    def _small_content(self, envelope: Envelope) -> bytes | None:
        """A small message's data, read here (a worker thread) so the SMTP client need not
        hand reads to threads; None for large or unreadable ones (the client streams those)."""
        if envelope.size > SMALL_MESSAGE:
            return None
        try:
            content = self.store.read_data(envelope.queue_id)
        except (OSError, QueueError):
            return None  # the client's own read reports it
        return content if len(content) == envelope.size else None

    def _append(
        self, path: Path, items: list[tuple[_Work, RecipientState, str]]
    ) -> MailError | None:
        settings = self.mailboxes
        owner = settings.owner_of(items[0][2])
        with ExitStack() as files:
            messages = []
            for work, _rcpt, _user in items:
                envelope = work.envelope
                stream = files.enter_context(self.store.open_data(envelope.queue_id))
                received = datetime.fromtimestamp(envelope.received_at).astimezone()
                content = PrefixedReader(_return_path(envelope.sender), stream)
                messages.append(MboxMessage(envelope.sender, content, received))  # type: ignore[arg-type]
            try:
                append_messages(
                    path,
                    messages,
                    method=settings.locking.method,
                    timeout=settings.locking.timeout,
                    stale_after=settings.locking.stale_after,
                    owner=owner,
                    trusted_uids=settings.trusted_uids,
                )
            except MailboxLockTimeout as exc:
                return MailError("4.2.0", f"mailbox {path} is locked: {exc}")
            except OSError as exc:
                return MailError("4.2.0", f"cannot write mailbox {path}: {exc.strerror or exc}")
        return None

    def _run_program(
        self,
        envelope: Envelope,
        command: str,
        run_as: str,
        *,
        native: NativeAddress | None = None,
    ) -> MailError | None:
        if self.runner is None:
            return MailError("4.3.5", "programs are not delivered by this process")
        env = {"QUEUE_ID": envelope.queue_id}
        if native is not None:
            # A gateway transport (12.2.3.2, routing "direct") gets the mapped address.
            env.update(
                NATIVE=native.native,
                NODE=native.next_hop,
                NATIVE_USER=native.user,
                PROTOCOL=native.protocol,
                NATIVE_SENDER=self._native_sender(envelope.sender),
            )
        try:
            with self.store.open_data(envelope.queue_id) as stream:
                return self.runner.run_program(
                    command, run_as, stream, sender=envelope.sender, env=env
                )
        except (OSError, QueueError) as exc:
            return MailError("4.3.0", f"cannot read the message for {command!r}: {exc}")

    def _append_file(self, envelope: Envelope, path: str, run_as: str) -> MailError | None:
        if self.runner is None:
            return MailError("4.3.5", "files are not written by this process")
        received = datetime.fromtimestamp(envelope.received_at).astimezone()
        try:
            with self.store.open_data(envelope.queue_id) as stream:
                return self.runner.append_file(
                    path,
                    run_as,
                    _return_path(envelope.sender),
                    stream,
                    sender=envelope.sender,
                    received=received,
                )
        except (OSError, QueueError) as exc:
            return MailError("4.3.0", f"cannot read the message for {path}: {exc}")

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

    def _native_sender(self, sender: str) -> str:
        if self.transport is None or not sender:
            return sender
        try:
            return self.transport.outbound_sender(sender)
        except AddressError:
            return sender

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


def _return_path(sender: str) -> bytes:
    return f"Return-Path: <{sender}>\r\n".encode("utf-8", "surrogateescape")
