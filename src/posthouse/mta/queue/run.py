"""Running the queue on demand: ``sendmail -q``, ``-qR``, ``-qI``, ``-qS`` and ``-oQDIR -q``.

Selects queued messages (all, or those whose id, recipient or sender contains
a string), delivers them now in bounded batches regardless of their retry
time, and reports progress and a summary.  Messages another process is
delivering are skipped, not waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from posthouse.mta.delivery import QueueDelivery
from posthouse.mta.queue.store import QueueStore

BATCH = 256
Selector = Literal["all", "id", "recipient", "sender"]


@dataclass
class QueueRunSummary:
    selected: int = 0
    finished: int = 0  # delivered (or bounced) and gone from the queue
    waiting: int = 0  # still queued: some destination deferred
    busy: int = 0  # being delivered by another process
    damaged: int = 0  # control file missing or unreadable: left alone

    def describe(self) -> str:
        return (
            f"{self.selected} selected: {self.finished} done, {self.waiting} still queued, "
            f"{self.busy} busy elsewhere, {self.damaged} damaged (left alone)"
        )


def select(
    store: QueueStore, selector: Selector, needle: str, *, damaged: QueueRunSummary | None = None
) -> Iterator[str]:
    """Queue ids matching the selector (case-insensitive substring); one pass over the queue,
    counting damaged entries into ``damaged`` when given."""
    needle = needle.lower()
    for entry in store.list_entries():
        envelope = entry.envelope
        if envelope is None:
            if damaged is not None:
                damaged.damaged += 1
            continue
        match selector:
            case "all":
                hit = True
            case "id":
                hit = needle in entry.queue_id.lower()
            case "sender":
                hit = needle in envelope.sender.lower()
            case "recipient":
                hit = any(
                    needle in (r.original or r.address).lower() or needle in r.address.lower()
                    for r in envelope.recipients
                    if r.status in ("pending", "deferred")
                )
        if hit:
            yield entry.queue_id


def run_queue(
    store: QueueStore,
    delivery: QueueDelivery,
    *,
    selector: Selector = "all",
    needle: str = "",
    progress: Callable[[QueueRunSummary], None] | None = None,
) -> QueueRunSummary:
    """Deliver the selected messages now; returns what happened."""
    summary = QueueRunSummary()
    ids = []
    for queue_id in select(store, selector, needle, damaged=summary):
        ids.append(queue_id)
    summary.selected = len(ids)
    for start in range(0, len(ids), BATCH):
        for outcome in delivery.run_batch(ids[start : start + BATCH], force=True):
            if not outcome.claimed:
                summary.busy += 1
            elif outcome.finished:
                summary.finished += 1
            else:
                summary.waiting += 1
        if progress is not None:
            progress(summary)
    return summary
