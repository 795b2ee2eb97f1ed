"""The delivery scheduler: which queued message is delivered when.

New messages are handed over by the session that queued them and delivered
in batches (so many messages for one mailbox share one lock and one fsync).
Deferred messages wait in a heap keyed by their next attempt, so finding due
work costs O(log n) and never sorts or scans the queue.  The queue directory
is scanned once at start-up and then at a slow interval, to pick up messages
queued by other processes (the ``sendmail`` command, other workers, a crashed
predecessor); a message another process is delivering is skipped, because
delivery claims it with a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable

from posthouse.mta.delivery import DeliveryOutcome, QueueDelivery
from posthouse.mta.errors import MailError
from posthouse.mta.queue.store import QueueStore

log = logging.getLogger("posthouse.mta.queue.scheduler")


class DeliveryScheduler:
    """Runs ``QueueDelivery`` batches for new and due messages."""

    def __init__(
        self,
        delivery: QueueDelivery,
        store: QueueStore,
        *,
        batch_size: int = 256,
        concurrency: int = 4,
        scan_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.delivery = delivery
        self.store = store
        self.batch_size = batch_size
        self.scan_interval = scan_interval
        self.clock = clock
        self._ready: dict[str, None] = {}
        self._waiting: list[tuple[float, str]] = []
        self._known: set[str] = set()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._last_scan = 0.0

    def submit(self, queue_id: str) -> None:
        """A message was just queued: deliver it soon."""
        self._known.add(queue_id)
        self._ready[queue_id] = None
        self._wake.set()

    async def deliver_now(self, queue_id: str) -> dict[str, MailError]:
        """Deliver one message at once (LMTP) and return the failures by recipient.

        The recipients that failed temporarily are handed back: the client gets their 4xx
        and keeps the message (RFC 2033 §4.2), so the queue must not deliver it later too."""
        self._known.add(queue_id)
        async with self._slots:
            outcomes = await asyncio.to_thread(self.delivery.run_batch, [queue_id])
            failures = outcomes[0].failures if outcomes else {}
            if any(error.temporary for error in failures.values()):
                await asyncio.to_thread(self.delivery.hand_back_deferred, queue_id)
        self._after_batch(outcomes)
        return failures

    async def drain_submitted(self) -> None:
        """Deliver everything submitted so far (short-lived processes: ``sendmail -bs``)."""
        batch = list(self._ready)
        self._ready.clear()
        if batch:
            self._after_batch(await asyncio.to_thread(self.delivery.run_batch, batch))

    async def run(self) -> None:
        """The scheduling loop; returns after ``stop()``."""
        stale = await asyncio.to_thread(self.store.clean_stale)
        if stale:
            log.info("removed %d stale temporary queue file(s)", len(stale))
        await self._scan()
        while not self._stopping:
            self._promote_due()
            if self._ready:
                await self._slots.acquire()
                batch = list(self._ready)[: self.batch_size]
                for queue_id in batch:
                    del self._ready[queue_id]
                task = asyncio.create_task(self._run_batch(batch))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
                continue
            await self._sleep_until_work()
            if self.clock() - self._last_scan >= self.scan_interval:
                await self._scan()

    async def stop(self) -> None:
        """Finish the batches in flight; queued messages stay queued for next time."""
        self._stopping = True
        self._wake.set()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def settle(self) -> None:
        """Wait for the batches running now (not for later ones), e.g. before the objects
        they deliver with are closed."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _run_batch(self, batch: list[str]) -> None:
        try:
            outcomes = await asyncio.to_thread(self.delivery.run_batch, batch)
            self._after_batch(outcomes)
        except Exception:
            log.exception("delivery batch failed; the messages stay queued")
            retry_at = self.clock() + 60.0
            for queue_id in batch:
                heapq.heappush(self._waiting, (retry_at, queue_id))
        finally:
            self._slots.release()
            self._wake.set()

    def _after_batch(self, outcomes: list[DeliveryOutcome]) -> None:
        for outcome in outcomes:
            for queue_id in outcome.created:
                self.submit(queue_id)
            if outcome.finished:
                self._known.discard(outcome.queue_id)
            elif outcome.next_attempt is not None:
                heapq.heappush(self._waiting, (outcome.next_attempt, outcome.queue_id))
            elif not outcome.claimed:
                # Another process holds it; the periodic scan picks it up if it stays.
                self._known.discard(outcome.queue_id)

    def _promote_due(self) -> None:
        now = self.clock()
        while self._waiting and self._waiting[0][0] <= now:
            _when, queue_id = heapq.heappop(self._waiting)
            self._ready[queue_id] = None

    async def _sleep_until_work(self) -> None:
        self._wake.clear()
        now = self.clock()
        deadline = self._last_scan + self.scan_interval
        if self._waiting:
            deadline = min(deadline, self._waiting[0][0])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(deadline - now, 0.01))

    async def _scan(self) -> None:
        """Learn about messages this process was not told of.

        One directory listing (names only); only control files of ids not yet known are
        read, so a rescan of a large, mostly known queue stays cheap.
        """
        self._last_scan = self.clock()
        known = frozenset(self._known)
        found = 0
        for queue_id, due in await asyncio.to_thread(self._list_due, known):
            if queue_id in self._known:
                continue
            self._known.add(queue_id)
            heapq.heappush(self._waiting, (due, queue_id))
            found += 1
        if found:
            log.info("queue scan found %d message(s) to deliver", found)

    def _list_due(self, known: frozenset[str]) -> list[tuple[str, float]]:
        """(queue id, earliest next attempt) of unknown messages with work left (in a thread)."""
        due = []
        for queue_id in self.store.queue_ids():
            if queue_id in known:
                continue
            try:
                envelope = self.store.load(queue_id)
            except (OSError, ValueError, LookupError):
                continue  # gone meanwhile, or damaged: mailq reports those
            active = [
                r.next_attempt for r in envelope.recipients if r.status in ("pending", "deferred")
            ]
            if active:
                due.append((queue_id, min(active)))
        return due
