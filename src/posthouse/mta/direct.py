"""Direct delivery: a small message goes to its destinations while the client waits.

When every recipient of a message expands to plain local mailboxes or to
remote addresses sent on over SMTP (no programs, files, gateways' transport
programs or owner-list senders; :mod:`posthouse.mta.targets` decides, as for the
queue) and the message is still held in memory, the session delivers it itself,
through the agents' one interface (:mod:`posthouse.mta.agents.transaction`),
before answering the final dot:

* local mailboxes: one transaction of the mbox agent (group-committed appends,
  :mod:`posthouse.mta.agents.mbox`) for spool files, one of the store agent
  (:mod:`posthouse.mta.agents.store`) for IMAP-type users; the reply waits for the fsync
  of every mailbox (and the store's index commit);
* remote addresses (*cut-through* relaying, as Exim calls it): one transaction of
  the SMTP agent, sent to each next hop over a cached connection; the reply waits
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from posthouse.mta.address import DETAIL_DELIMITER
from posthouse.mta.agents.mbox import MailboxWriter, SpoolMailbox
from posthouse.mta.agents.smtp import SMTPDelivery, SMTPRecipient
from posthouse.mta.agents.store import StoreDelivery, StoreMailbox
from posthouse.mta.agents.transaction import (
    MessageBody,
    MessageEnvelope,
    NotAttempted,
    Transaction,
)
from posthouse.mta.destinations import Destination, LocalMailbox, RemoteAddress
from posthouse.mta.errors import MailError
from posthouse.mta.expand import Expander
from posthouse.mta.local_mail import LocalMail
from posthouse.mta.logline import delivery_line
from posthouse.mta.queue.control_file import Envelope, RecipientState
from posthouse.mta.routing import NextHop
from posthouse.mta.stats import Statistics
from posthouse.mta.targets import Targets, mailer_of
from posthouse.mta.transport import RemoteTransport

log = logging.getLogger("posthouse.mta.direct")


@dataclass(frozen=True)
class LocalTarget:
    """Envelope recipient ``recipient`` ends in ``mailbox`` (a spool file or the store) of
    local user ``user``."""

    recipient: str
    user: str
    mailbox: SpoolMailbox | StoreMailbox

    @property
    def destination(self) -> Destination:
        return LocalMailbox(self.user)


def _local_user(mailbox: SpoolMailbox | StoreMailbox) -> str:
    """The local mailbox name a target stands for (``user+folder`` for a store folder)."""
    if isinstance(mailbox, StoreMailbox) and mailbox.folder is not None:
        return mailbox.user + DETAIL_DELIMITER + mailbox.folder
    return mailbox.user


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
        store: StoreDelivery | None = None,
    ) -> None:
        self.expander = expander
        self.writer = writer
        self.store = store
        self.local_mail = local_mail
        self.stats = stats
        self.relay = relay

    @property
    def relay(self) -> CutThrough | None:
        return self._relay

    @relay.setter
    def relay(self, relay: CutThrough | None) -> None:
        """The targets and the SMTP agent follow the cut-through settings."""
        self._relay = relay
        transport = relay.transport if relay is not None else None
        self._targets = Targets(self.local_mail, transport, self.expander.is_local_user)
        self._smtp = None
        if relay is not None:
            self._smtp = SMTPDelivery(
                relay.transport.agent,
                outbound_sender=relay.transport.outbound_sender,
                wait=relay.slot_wait,
                timeout=relay.timeout,
                failing_window=relay.failing_window,
            )

    def plan(self, recipients: list[str]) -> DirectPlan | None:
        """The plan when every recipient ends in destinations handled here, else None."""
        local: dict[SpoolMailbox | StoreMailbox, LocalTarget] = {}
        remote: dict[str, RemoteTarget] = {}
        for recipient in recipients:
            expansion = self.expander.expand(recipient)
            if expansion.errors or not expansion.deliveries:
                return None
            for delivery in expansion.deliveries:
                if delivery.sender is not None:
                    return None
                match self._targets.resolve(delivery.destination):
                    case SpoolMailbox() as box:
                        local.setdefault(box, LocalTarget(recipient, box.user, box))
                    case StoreMailbox() as box if self.store is not None:
                        local.setdefault(box, LocalTarget(recipient, _local_user(box), box))
                    case SMTPRecipient(hop=hop, address=address) if self._cut_through(hop):
                        remote.setdefault(address, RemoteTarget(recipient, address, hop, address))
                    case _:
                        return None  # the queue delivers it, or reports why not
        return DirectPlan(tuple(local.values()), tuple(remote.values()))

    def _cut_through(self, hop: NextHop) -> bool:
        return self.relay is not None and (hop.configured or self.relay.any_hop)

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
        """Deliver to every planned destination through the mbox and SMTP agents (one
        transaction each, committed together); returns those that did not take it."""
        message = MessageEnvelope(
            queue_id=envelope.queue_id,
            sender=envelope.sender,
            received_at=envelope.received_at,
            size=len(content),
            body_8bit=(envelope.body or "").upper() == "8BITMIME",
            smtputf8=envelope.smtputf8,
        )
        body = MessageBody(_no_file, content)
        commits = []
        spool = [t for t in plan.local if isinstance(t.mailbox, SpoolMailbox)]
        stored = [t for t in plan.local if isinstance(t.mailbox, StoreMailbox)]
        for agent, targets in ((self.writer, spool), (self.store, stored)):
            if targets:
                assert agent is not None  # store targets are planned only with the agent
                local_transaction: Transaction[Any] = agent.start(message)
                for local in targets:
                    local_transaction.add_recipient(local.mailbox)
                local_transaction.body(body)
                commits.append(self._commit(local_transaction, targets, envelope, len(content)))
        if plan.remote:
            assert self._smtp is not None  # planned only with cut-through
            smtp = self._smtp.start(message)
            for remote in plan.remote:
                smtp.add_recipient(SMTPRecipient(remote.hop, remote.wire_address))
            smtp.body(body)
            commits.append(self._commit(smtp, plan.remote, envelope, len(content)))
        results = [await commits[0]] if len(commits) == 1 else await asyncio.gather(*commits)
        return [failure for part in results for failure in part]

    async def _commit(
        self,
        transaction: Transaction[Any],
        targets: Sequence[LocalTarget | RemoteTarget],
        envelope: Envelope,
        size: int,
    ) -> list[DirectFailure]:
        results = await transaction.commit()
        failures = []
        for target, result in zip(targets, results, strict=True):
            error = result.error
            mailer, relay = mailer_of(result.recipient)
            delay = time.time() - envelope.received_at
            line = delivery_line(envelope.queue_id, target.recipient, delay, mailer, relay)
            how = "direct" if mailer == "local" else "cut-through"
            if error is None:
                log.info("%s, stat=Sent (%s)", line, how)
                if self.stats is not None:
                    self.stats.record_sent(mailer, size)
                continue
            log.info("%s, stat=%s: %s", line, "Deferred" if error.temporary else "Failed", error)
            if self.stats is not None and not error.temporary:
                self.stats.record_rejected(mailer)
            untried = isinstance(error, NotAttempted)
            failures.append(
                DirectFailure(target.recipient, target.destination, None if untried else error)
            )
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
