"""One SQLite database used by many threads of a process and by many processes.

Every database of the file-system store (the mailboxes list, each mailbox's index, the
quota roots) is opened the same way: write-ahead log (readers never wait for the writer),
``synchronous=FULL`` (a commit returns after the log is on disk, so a commit is durable
before anything is acknowledged), a busy timeout (a writer in another process is waited
for, not failed on).  :meth:`Database.write` holds the database's write lock from the start
(``BEGIN IMMEDIATE``): that is the cross-process lock the store relies on.  Within a process
one connection is shared under a mutex; after ``fork`` the child opens its own.

A connection follows its path: when another file has been put there (``reconstruct``
replacing a damaged index, a restored mailboxes list), the next transaction opens the new
file; a write checks again once it holds the lock, so it never commits to the file that
was replaced while it waited.

**Reads in place** (:func:`inline_reads`): the store may run a short read on the calling
thread (the event loop) instead of handing it to a thread, which costs more than a small
read itself.  There nothing may wait: a database whose connection another thread is using,
or any write, raises :class:`WouldBlock`, and the caller hands the work to a thread after
all (a read has no effects to undo).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from posthouse.store.errors import StoreUnavailable

__all__ = [
    "BUSY_TIMEOUT",
    "Database",
    "WouldBlock",
    "inline_active",
    "inline_reads",
    "open_read_only",
]

BUSY_TIMEOUT = 60.0

_inline = threading.local()


class WouldBlock(Exception):
    """Work tried in place (:func:`inline_reads`) would have to wait or write."""


@contextmanager
def inline_reads() -> Iterator[None]:
    """Within the block, on this thread, reads must not wait and writes are refused
    (:class:`WouldBlock`)."""
    _inline.active = True
    try:
        yield
    finally:
        _inline.active = False


def inline_active() -> bool:
    """Whether this thread runs work in place (:func:`inline_reads`)."""
    return bool(getattr(_inline, "active", False))


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a database file nobody vouches for (a backup, a damaged
    index): SQLite's URI form, the path quoted so ``?`` or ``#`` in it stay part of it."""
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)


class Database:
    """A lazily opened, fork-aware, mutex-guarded SQLite connection."""

    def __init__(self, path: Path, *, schema: Callable[[sqlite3.Connection], None]) -> None:
        self.path = path
        self._schema = schema
        self._mutex = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._inode = 0

    def _replaced(self) -> bool:
        """Whether the file at the path is no longer the one the connection has open (a
        missing file is not: the open one is all there is)."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return False

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid() and self._replaced():
            self._conn.close()
            self._conn = None
        if self._conn is None or self._pid != os.getpid():
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=BUSY_TIMEOUT,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
                self._schema(conn)
                inode = os.stat(self.path).st_ino
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
            self._conn, self._pid, self._inode = conn, os.getpid(), inode
        return self._conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several statements."""
        if not inline_active():
            self._mutex.acquire()
        elif not self._mutex.acquire(blocking=False):
            raise WouldBlock(f"{self.path} is in use by another thread")
        try:
            conn = self._connection()
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        finally:
            self._mutex.release()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the write lock from its start; durable when the
        block ends without an exception, rolled back otherwise."""
        if inline_active():
            raise WouldBlock(f"a write to {self.path} is not done in place")
        with self._mutex:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                if self._replaced():  # replaced while we waited for the lock: the new file
                    conn.execute("ROLLBACK")
                    conn = self._connection()
                    conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot lock {self.path}: {exc}") from exc
            try:
                yield conn
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise StoreUnavailable(f"cannot update {self.path}: {exc}") from exc
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreUnavailable(f"cannot commit to {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
