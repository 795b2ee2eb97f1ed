"""Group-committed appends to mbox spool files, for asyncio callers.

``MboxAppender.append`` queues a message for one mailbox and returns once it
is appended and fsynced.  Messages that arrive for a mailbox while an append
to it is running wait and then go in together, under one lock acquisition and
one fsync (:func:`~posthouse.store.mbox.append.append_messages`), so concurrent
sessions writing to the same mailbox share the cost of the flush (group
commit).  Different mailboxes are written in parallel, in worker threads.

A failed batch is reported to each of its callers as the exception that failed it
(:class:`~posthouse.store.mbox.locking.MailboxLockTimeout`,
:class:`~posthouse.store.mbox.locking.UnsafeMailboxError`, another ``OSError``, or an
unexpected error, logged): what that means for the mail is the caller's to say (the MTA's
mbox agent, :mod:`posthouse.mta.agents.mbox`, turns it into a status code).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from posthouse.store.mbox.append import MboxMessage, append_messages
from posthouse.store.mbox.locking import LockSettings, MailboxLockTimeout

log = logging.getLogger("posthouse.store.mbox.writer")


@dataclass
class _Pending:
    messages: list[MboxMessage] = field(default_factory=list)
    waiters: list[asyncio.Future[Exception | None]] = field(default_factory=list)


class MboxAppender:
    """Appends to mbox files with one lock and one fsync per batch and mailbox."""

    def __init__(
        self,
        *,
        locking: LockSettings,
        owner_of: Callable[[Path], tuple[int, int] | None] = lambda _path: None,
        trusted_uids: Collection[int] = (),
    ) -> None:
        self.locking = locking
        self.owner_of = owner_of
        self.trusted_uids = tuple(trusted_uids)
        self._pending: dict[Path, _Pending] = {}
        self._busy: set[Path] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def append(self, path: Path, message: MboxMessage) -> Exception | None:
        """Append ``message`` durably; returns None on success or what failed the batch."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Exception | None] = loop.create_future()
        pending = self._pending.setdefault(path, _Pending())
        pending.messages.append(message)
        pending.waiters.append(waiter)
        if path not in self._busy:
            self._busy.add(path)
            task = loop.create_task(self._flush(path))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await waiter

    async def _flush(self, path: Path) -> None:
        try:
            while (batch := self._pending.pop(path, None)) is not None:
                error = await asyncio.to_thread(self._write, path, batch.messages)
                for waiter in batch.waiters:
                    if not waiter.done():
                        waiter.set_result(error)
        finally:
            self._busy.discard(path)

    def _write(self, path: Path, messages: list[MboxMessage]) -> Exception | None:
        try:
            append_messages(
                path,
                messages,
                method=self.locking.method,
                timeout=self.locking.timeout,
                stale_after=self.locking.stale_after,
                owner=self.owner_of(path),
                trusted_uids=self.trusted_uids,
            )
        except (MailboxLockTimeout, OSError) as exc:  # UnsafeMailboxError is an OSError
            return exc
        except Exception as exc:  # a bug must not strand the waiting sessions
            log.exception("appending to %s failed", path)
            return exc
        return None
