"""Change notification across processes: shared per-mailbox counters and cheap waiters.

``notify.counters`` in the configuration directory is an array of 64-bit counters shared
by every process through ``mmap``.  A mailbox owns the slot its id hashes to; after a commit
the writer increments that slot (:meth:`ChangeCounters.bump`).  A waiter remembers the
value it last saw and is woken when the slot differs: at once when the commit happened in the
same process, otherwise by one poller thread per process that reads the watched slots every
:data:`POLL_INTERVAL` seconds (one memory read per watched mailbox, however many sessions
wait on it).  Two mailboxes sharing a slot only cause a spurious "look again".  An
increment holds a lock on its slot's bytes of the file (``lockf``), so writers in several
processes never lose one: each commit adds exactly 1, and a session that sees the value
moved by 1 after its own commit knows no other commit was announced meanwhile.

An idle session costs one future in a dict: 10,000 IDLE sessions are 10,000 futures and,
at most, 10,000 reads of shared memory per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

__all__ = ["POLL_INTERVAL", "ChangeCounters"]

SLOTS = 65536
_SLOT = struct.Struct("<Q")
POLL_INTERVAL = 0.2


@dataclass
class _Waiter:
    slot: int
    seen: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int]


class ChangeCounters:
    """The shared counters file and this process's waiters on it."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._fd = fd  # for the slots' locks; closed with the object at the latest
        self._close_fd = weakref.finalize(self, os.close, fd)
        if os.fstat(fd).st_size < SLOTS * _SLOT.size:
            os.ftruncate(fd, SLOTS * _SLOT.size)  # zero-filled; racing creators agree
        self._map = mmap.mmap(fd, SLOTS * _SLOT.size)
        self._lock = threading.Lock()
        self._waiters: dict[int, list[_Waiter]] = {}
        self._poller: threading.Thread | None = None
        self._poller_pid = 0
        self._closed = threading.Event()

    @staticmethod
    def slot_of(mailbox_id: str) -> int:
        digest = hashlib.blake2b(mailbox_id.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "little") % SLOTS

    def value(self, mailbox_id: str) -> int:
        return self._read(self.slot_of(mailbox_id))

    def _read(self, slot: int) -> int:
        value: int = _SLOT.unpack_from(self._map, slot * _SLOT.size)[0]
        return value

    def bump(self, mailbox_id: str) -> None:
        """Called after a commit on the mailbox: every waiter on it, in any process, wakes."""
        slot = self.slot_of(mailbox_id)
        offset = slot * _SLOT.size
        with self._lock:  # the threads of this process; lockf: the other processes
            fcntl.lockf(self._fd, fcntl.LOCK_EX, _SLOT.size, offset)
            try:
                _SLOT.pack_into(self._map, offset, (self._read(slot) + 1) % 2**64)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, _SLOT.size, offset)
        self._wake(slot)

    async def wait(self, mailbox_id: str, token: int, timeout: float) -> int:
        slot = self.slot_of(mailbox_id)
        current = self._read(slot)
        if current != token:
            return current
        loop = asyncio.get_running_loop()
        waiter = _Waiter(slot, token, loop, loop.create_future())
        with self._lock:
            self._waiters.setdefault(slot, []).append(waiter)
            self._ensure_poller()
        # A timer on the future itself, not wait_for and shield: an idle session then holds
        # one future and one timer (10,000 IDLE sessions hold 10,000 of each).
        timer = loop.call_later(timeout, _resolve, waiter.future, token)
        try:
            await waiter.future
            return self._read(slot)
        finally:
            timer.cancel()
            with self._lock:
                waiters = self._waiters.get(slot, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[slot]

    def _wake(self, slot: int) -> None:
        value = self._read(slot)
        with self._lock:
            ready = [w for w in self._waiters.get(slot, ()) if w.seen != value]
        for waiter in ready:
            with contextlib.suppress(RuntimeError):  # a loop closed since it waited
                waiter.loop.call_soon_threadsafe(_resolve, waiter.future, value)

    def _ensure_poller(self) -> None:
        if self._poller is not None and self._poller_pid == os.getpid():
            return
        self._poller_pid = os.getpid()
        self._poller = threading.Thread(target=self._poll, name="store-notify", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.wait(POLL_INTERVAL):
            with self._lock:
                slots = list(self._waiters)
            for slot in slots:
                self._wake(slot)

    def close(self) -> None:
        self._closed.set()
        if self._poller is not None and self._poller_pid == os.getpid():
            self._poller.join(timeout=5)
        self._close_fd()


def _resolve(future: asyncio.Future[int], value: int) -> None:
    if not future.done():
        future.set_result(value)
