"""Group-committed appends to mbox files, for asyncio callers, and spool mailbox names.

:func:`mailbox_path` is the one place a user name becomes a spool file name: it refuses
names that are not a single plain file name, and names ending in ``.lock`` (``NAME.lock``
is the dot-lock of mailbox ``NAME``, a name other programs rely on).

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
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from posthouse.mta.errors import MailError
from posthouse.store.mbox.append import MboxMessage, append_messages
from posthouse.store.mbox.locking import (
    LOCK_SUFFIX,
    LockMethod,
    MailboxLockTimeout,
    UnsafeMailboxError,
)

log = logging.getLogger("posthouse.store.mbox.writer")


@dataclass
class _Pending:
    messages: list[MboxMessage] = field(default_factory=list)
    waiters: list[asyncio.Future[MailError | None]] = field(default_factory=list)


def mailbox_path(spool_dir: Path, user: str) -> Path:
    """``spool_dir/user``, or a permanent :class:`MailError` for a name that cannot be a
    mailbox: empty, ``.``/``..``, containing ``/`` or a control character, starting with
    ``.`` or ``-``, or ending in ``.lock``."""
    if (
        not user
        or user.startswith((".", "-"))
        or "/" in user
        or any(ord(char) < 0x20 or ord(char) == 0x7F for char in user)
    ):
        raise MailError("5.1.3", f"{user!r} cannot be a mailbox name")
    if user.endswith(LOCK_SUFFIX):
        raise MailError(
            "5.1.3", f"{user!r} cannot be a mailbox name: it ends in {LOCK_SUFFIX}, the lock suffix"
        )
    return spool_dir / user


class MailboxWriter:
    """Appends to mbox files with one lock and one fsync per batch and mailbox."""

    def __init__(
        self,
        *,
        method: LockMethod,
        timeout: float,
        stale_after: float,
        owner_of: Callable[[Path], tuple[int, int] | None] = lambda _path: None,
        trusted_uids: Collection[int] = (),
    ) -> None:
        self.method = method
        self.timeout = timeout
        self.stale_after = stale_after
        self.owner_of = owner_of
        self.trusted_uids = tuple(trusted_uids)
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
                trusted_uids=self.trusted_uids,
            )
        except MailboxLockTimeout as exc:
            return MailError("4.2.0", f"mailbox {path} is locked: {exc}")
        except UnsafeMailboxError as exc:
            # Temporary, as mail.local has it: the administrator fixes the file, mail waits.
            return MailError("4.2.0", f"mailbox {path} refused: {exc.strerror}")
        except OSError as exc:
            return MailError("4.2.0", f"cannot write mailbox {path}: {exc.strerror or exc}")
        except Exception as exc:  # an agent bug must not strand the waiting sessions
            log.exception("appending to %s failed", path)
            return MailError("4.3.0", f"internal error writing {path}: {exc}")
        return None
