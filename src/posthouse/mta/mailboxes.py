"""Group-committed appends to mbox files, for asyncio callers.

``MailboxWriter.append`` queues a message for one mailbox and returns once it
is appended and fsynced.  Messages that arrive for a mailbox while an append
to it is running wait and then go in together, under one lock acquisition and
one fsync, so concurrent sessions writing to the same mailbox share the cost
of the flush (group commit).  Different mailboxes are written in parallel, in
worker threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from posthouse.mta.agents.mbox import MboxMessage, append_messages
from posthouse.mta.errors import MailError
from posthouse.mta.locking import LockMethod, MailboxLockTimeout

log = logging.getLogger("posthouse.mta.mailboxes")


@dataclass
class _Pending:
    messages: list[MboxMessage] = field(default_factory=list)
    waiters: list[asyncio.Future[MailError | None]] = field(default_factory=list)


class MailboxWriter:
    """Appends to mbox files with one lock and one fsync per batch and mailbox."""

    def __init__(
        self,
        *,
        method: LockMethod,
        timeout: float,
        stale_after: float,
        owner_of: Callable[[Path], tuple[int, int] | None] = lambda _path: None,
    ) -> None:
        self.method = method
        self.timeout = timeout
        self.stale_after = stale_after
        self.owner_of = owner_of
        self._pending: dict[Path, _Pending] = {}
        self._busy: set[Path] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def append(self, path: Path, message: MboxMessage) -> MailError | None:
        """Append ``message`` durably; returns None on success or the (temporary) error."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[MailError | None] = loop.create_future()
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

    def _write(self, path: Path, messages: list[MboxMessage]) -> MailError | None:
        try:
            append_messages(
                path,
                messages,
                method=self.method,
                timeout=self.timeout,
                stale_after=self.stale_after,
                owner=self.owner_of(path),
            )
        except MailboxLockTimeout as exc:
            return MailError("4.2.0", f"mailbox {path} is locked: {exc}")
        except OSError as exc:
            return MailError("4.2.0", f"cannot write mailbox {path}: {exc.strerror or exc}")
        except Exception as exc:  # an agent bug must not strand the waiting sessions
            log.exception("appending to %s failed", path)
            return MailError("4.3.0", f"internal error writing {path}: {exc}")
        return None
