"""Direct delivery: a small message goes to its destinations while the client waits.

When every recipient of a message expands to plain local mailboxes or to
remote addresses sent on over SMTP (no programs, files, gateways' transport
programs or owner-list senders) and the message is still held in memory, the
session delivers it itself before answering the final dot:

* local mailboxes: appended through the group-committed ``MailboxWriter``; the
  reply waits for the fsync of every mailbox;
* remote addresses (*cut-through* relaying, as Exim calls it): sent to their
  next hop over a cached connection of the SMTP client agent; the reply waits
  for the next hop's 250, which makes that host responsible for the message.
  By default only next hops the configuration names (static routes, the relay
  host, the mail server, gateway relays) are used this way: mail for a domain
  whose MX hosts are on the Internet is queued first, so that a slow or
  tarpitting remote server never holds up the client (``any_hop`` changes that).

Either way "durable before acknowledged" holds, and the queue file (its
create, fsync, rename and unlink, and the directory flush) is skipped.
Whatever did not succeed comes back as a :class:`DirectFailure`.  If every
destination refused for good, the caller passes the refusal to its client;
otherwise it queues the message for exactly those destinations: with the error
(deferred, or failed and bounced by the queue), or without one when it was not
tried (every connection to the hop busy for longer than ``slot_wait``, or the
hop failed to answer less than ``failing_window`` seconds ago), for the
scheduler to deliver as usual.  A next hop that does not answer the final dot
within ``timeout`` gets the message queued again: it may arrive twice, never
not at all (RFC 1047).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from posthouse.mta.address import unquote_local
from posthouse.mta.agents.mbox import MailboxWriter
from posthouse.mta.agents.smtp import DestinationBusy, OutboundMessage
from posthouse.mta.destinations import Destination, LocalMailbox, RemoteAddress
from posthouse.mta.errors import MailError
from posthouse.mta.expand import Expander
from posthouse.mta.local_mail import LocalMail, SpoolMailbox
from posthouse.mta.logline import delivery_line, relay_name
from posthouse.mta.queue.control_file import Envelope, RecipientState
from posthouse.mta.routing import NextHop
from posthouse.mta.stats import Statistics
from posthouse.mta.transport import AddressError, LocalRoute, RemoteTransport, SMTPRoute
from posthouse.store.mbox.append import MboxMessage

log = logging.getLogger("posthouse.mta.direct")


@dataclass(frozen=True)
class LocalTarget:
    """Envelope recipient ``recipient`` ends in the spool mailbox ``path`` of local user
    ``user``."""

    recipient: str
    user: str
    path: Path

    @property
    def destination(self) -> Destination:
        return LocalMailbox(self.user)


@dataclass(frozen=True)
class RemoteTarget:
    """Envelope recipient ``recipient`` goes to ``address`` at ``hop`` (as ``wire_address``)."""

    recipient: str
    address: str
    hop: NextHop
    wire_address: str

    @property
    def destination(self) -> Destination:
        return RemoteAddress(self.address)


@dataclass(frozen=True)
class DirectPlan:
    """Where a message goes; each mailbox and each remote address once."""

    local: tuple[LocalTarget, ...]
    remote: tuple[RemoteTarget, ...] = ()


@dataclass(frozen=True)
class DirectFailure:
    """A destination that does not have the message; ``error`` None: it was not tried."""

    recipient: str
    destination: Destination
    error: MailError | None


@dataclass(frozen=True)
class Delivered:
    """Every destination has the message: the client gets its ``250``, nothing is queued."""


@dataclass(frozen=True)
class Refused:
    """Every destination refused for good: the client gets ``error`` (no bounce, no
    backscatter)."""

    error: MailError


@dataclass(frozen=True)
class Requeue:
    """Some destinations do not have the message: queue it for exactly ``recipients``."""

    recipients: list[RecipientState]


DirectOutcome = Delivered | Refused | Requeue


@dataclass(frozen=True)
class CutThrough:
    """How remote destinations are relayed while the client waits."""

    transport: RemoteTransport
    timeout: float = 30.0
    slot_wait: float = 2.0
    failing_window: float = 60.0
    any_hop: bool = False  # also hops found by DNS (MX), not only those the configuration names


class DirectDelivery:
    """Plans and performs direct deliveries (see the module docstring)."""

    def __init__(
        self,
        *,
        expander: Expander,
        writer: MailboxWriter,
        local_mail: LocalMail,
        stats: Statistics | None = None,
        relay: CutThrough | None = None,
    ) -> None:
        self.expander = expander
        self.writer = writer
        self.local_mail = local_mail
        self.stats = stats
        self.relay = relay

    def plan(self, recipients: list[str]) -> DirectPlan | None:
        """The plan when every recipient ends in destinations handled here, else None."""
        local: dict[str, LocalTarget] = {}
        remote: dict[str, RemoteTarget] = {}
        for recipient in recipients:
            expansion = self.expander.expand(recipient)
            if expansion.errors or not expansion.deliveries:
                return None
            for delivery in expansion.deliveries:
                destination = delivery.destination
                if delivery.sender is not None:
                    return None
                if isinstance(destination, LocalMailbox):
                    target = self._local_target(recipient, destination.user)
                elif isinstance(destination, RemoteAddress):
                    target = self._remote_target(recipient, destination.address)
                else:
                    return None
                if target is None:
                    return None
                if isinstance(target, LocalTarget):
                    local.setdefault(target.user, target)
                else:
                    remote.setdefault(target.address, target)
        return DirectPlan(tuple(local.values()), tuple(remote.values()))

    def _remote_target(self, recipient: str, address: str) -> RemoteTarget | LocalTarget | None:
        if self.relay is None:
            return None
        try:
            where = self.relay.transport.plan(address)
        except AddressError:
            return None  # the queue reports it
        match where:
            case SMTPRoute(hop=hop, address=wire_address) if hop.configured or self.relay.any_hop:
                return RemoteTarget(recipient, address, hop, wire_address)
            case LocalRoute(user=local):
                user = unquote_local(local).lower()
                if self.expander.is_local_user(user):
                    return self._local_target(recipient, user, via_relay=False)
        return None

    def _local_target(
        self, recipient: str, user: str, *, via_relay: bool = True
    ) -> LocalTarget | RemoteTarget | None:
        """Where local user ``user``'s mail goes (:class:`LocalMail`), if delivered here.
        ``via_relay`` False: the address was routed here, so it is never sent back out."""
        try:
            where = self.local_mail.target(user)
        except MailError:
            return None  # the queue reports it
        if isinstance(where, SpoolMailbox):
            return LocalTarget(recipient, user, where.path)
        if not via_relay:
            return None
        target = self._remote_target(recipient, where.address)
        return target if isinstance(target, RemoteTarget) else None

    async def attempt(
        self, recipients: list[str], envelope: Envelope, content: bytes, retry_at: float
    ) -> DirectOutcome | None:
        """Deliver ``content`` directly when every recipient allows it (:meth:`plan`);
        None when it does not, and the message is queued as usual.  ``retry_at``: when
        destinations that failed temporarily are tried again from the queue."""
        plan = self.plan(recipients)
        if plan is None:
            return None
        failures = await self.deliver(plan, envelope, content)
        if not failures:
            return Delivered()
        refusals = [f.error for f in failures if f.error is not None and not f.error.temporary]
        if len(refusals) == len(plan.local) + len(plan.remote):
            return Refused(refusals[0])
        return Requeue([_queued_state(failure, retry_at) for failure in failures])

    async def deliver(
        self, plan: DirectPlan, envelope: Envelope, content: bytes
    ) -> list[DirectFailure]:
        """Deliver to every planned destination; returns those that did not take it."""
        received = datetime.fromtimestamp(envelope.received_at).astimezone()
        by_hop: dict[NextHop, list[RemoteTarget]] = defaultdict(list)
        for target in plan.remote:
            by_hop[target.hop].append(target)
        results = await asyncio.gather(
            self._deliver_local(plan.local, envelope, content, received),
            *(self._relay(hop, targets, envelope, content) for hop, targets in by_hop.items()),
        )
        return [failure for part in results for failure in part]

    async def _deliver_local(
        self,
        targets: tuple[LocalTarget, ...],
        envelope: Envelope,
        content: bytes,
        received: datetime,
    ) -> list[DirectFailure]:
        if not targets:
            return []
        prefix = f"Return-Path: <{envelope.sender}>\r\n".encode("utf-8", "surrogateescape")
        message = MboxMessage(envelope.sender, prefix + content, received)
        results = await asyncio.gather(
            *(self.writer.append(target.path, message) for target in targets)
        )
        failures = []
        for target, error in zip(targets, results, strict=True):
            if error is None:
                delay = time.time() - envelope.received_at
                line = delivery_line(envelope.queue_id, target.recipient, delay, "local", "local")
                log.info("%s, stat=Sent (direct)", line)
                if self.stats is not None:
                    self.stats.record_sent("local", len(content))
            else:
                log.info(
                    "%s: to=<%s>, stat=Deferred: %s", envelope.queue_id, target.recipient, error
                )
                failures.append(DirectFailure(target.recipient, target.destination, error))
        return failures

    async def _relay(
        self, hop: NextHop, targets: list[RemoteTarget], envelope: Envelope, content: bytes
    ) -> list[DirectFailure]:
        relay = self.relay
        assert relay is not None
        untried = [DirectFailure(t.recipient, t.destination, None) for t in targets]
        if relay.transport.agent.failing(hop, relay.failing_window):
            return untried
        message = OutboundMessage(
            queue_id=envelope.queue_id,
            sender=relay.transport.outbound_sender(envelope.sender),
            recipients=tuple(t.wire_address for t in targets),
            open_data=_no_file,
            size=len(content),
            body_8bit=(envelope.body or "").upper() == "8BITMIME",
            smtputf8=envelope.smtputf8,
            content=content,
        )
        try:
            results = await relay.transport.agent.deliver(
                hop, [message], wait=relay.slot_wait, timeout=relay.timeout
            )
        except DestinationBusy:
            return untried
        outcome = {r.recipient: r.error for r in results.get(envelope.queue_id, [])}
        failures = []
        for target in targets:
            error = outcome.get(target.wire_address, MailError("4.3.0", "no result"))
            delay = time.time() - envelope.received_at
            line = delivery_line(
                envelope.queue_id, target.recipient, delay, "smtp", relay_name(hop)
            )
            if error is None:
                log.info("%s, stat=Sent (cut-through)", line)
                if self.stats is not None:
                    self.stats.record_sent("smtp", len(content))
                continue
            log.info("%s, stat=%s: %s", line, "Deferred" if error.temporary else "Failed", error)
            if self.stats is not None and not error.temporary:
                self.stats.record_rejected("smtp")
            failures.append(DirectFailure(target.recipient, target.destination, error))
        return failures


def _no_file() -> BinaryIO:
    raise AssertionError("a cut-through message is sent from memory")


def _queued_state(failure: DirectFailure, retry_at: float) -> RecipientState:
    """How a destination direct delivery did not reach goes into the queue."""
    state = RecipientState.expanded(failure.destination, failure.recipient)
    error = failure.error
    if error is None:  # not tried: the scheduler delivers it as usual
        return state
    state.status = "deferred" if error.temporary else "failed"
    state.attempts = 1
    state.last_error = f"{error.status} {error.message}"
    state.next_attempt = retry_at
    return state
