"""Direct local delivery: a small message for local mailboxes goes straight into them.

When every recipient of a message expands to plain local mailboxes (no
programs, files, remote addresses or owner-list senders) and the message is
still held in memory, the session appends it to the mailboxes itself, through
the group-committed ``MailboxWriter``, before answering.  The reply is sent
only after every mailbox is fsynced, so "durable before acknowledged" holds
with the mailbox as the durable copy, and the queue files (two creates, two
fsyncs, two renames and two unlinks per message) are skipped.  A mailbox that
cannot be written (locked, disk full) makes the caller queue the message for
exactly the destinations that failed, which the scheduler then retries.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from posthouse.mta.agents.mbox import MboxMessage
from posthouse.mta.errors import MailError
from posthouse.mta.expand import Expander, LocalMailbox
from posthouse.mta.mailboxes import MailboxWriter
from posthouse.mta.stats import Statistics

log = logging.getLogger("posthouse.mta.direct")


@dataclass(frozen=True)
class DirectPlan:
    """Where a message goes: (envelope recipient, local user) pairs, each user once."""

    targets: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DirectFailure:
    recipient: str
    user: str
    error: MailError


class DirectDelivery:
    """Plans and performs direct deliveries into local mailboxes."""

    def __init__(
        self,
        *,
        expander: Expander,
        writer: MailboxWriter,
        spool_dir: Path,
        stats: Statistics | None = None,
    ) -> None:
        self.expander = expander
        self.writer = writer
        self.spool_dir = spool_dir
        self.stats = stats

    def plan(self, recipients: list[str]) -> DirectPlan | None:
        """The plan when every recipient ends in local mailboxes only, else None."""
        targets: dict[str, str] = {}
        for recipient in recipients:
            expansion = self.expander.expand(recipient)
            if expansion.errors or not expansion.deliveries:
                return None
            for delivery in expansion.deliveries:
                destination = delivery.destination
                if not isinstance(destination, LocalMailbox) or delivery.sender is not None:
                    return None
                targets.setdefault(destination.user, recipient)
        return DirectPlan(tuple((recipient, user) for user, recipient in targets.items()))

    async def deliver(
        self, plan: DirectPlan, *, queue_id: str, sender: str, content: bytes, received: datetime
    ) -> list[DirectFailure]:
        """Append to every planned mailbox; returns the destinations that failed."""
        prefix = f"Return-Path: <{sender}>\r\n".encode("utf-8", "surrogateescape")
        message = MboxMessage(sender, prefix + content, received)
        results = await asyncio.gather(
            *(self.writer.append(self.spool_dir / user, message) for _rcpt, user in plan.targets)
        )
        failures = []
        for (recipient, user), error in zip(plan.targets, results, strict=True):
            if error is None:
                log.info("%s: to=<%s>, mailer=local, stat=Sent (direct)", queue_id, recipient)
                if self.stats is not None:
                    self.stats.record_sent("local", len(content))
            else:
                log.info("%s: to=<%s>, stat=Deferred: %s", queue_id, recipient, error)
                failures.append(DirectFailure(recipient, user, error))
        return failures
