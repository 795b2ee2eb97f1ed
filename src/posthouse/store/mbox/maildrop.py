"""The POP3 maildrop of an mbox spool file (``SPOOL/USER``), with a persistent index.

:class:`MboxMaildrop` implements :class:`posthouse.store.maildrop.Maildrop` on the mboxrd
files written by :mod:`posthouse.store.mbox.append`.  Every access to the mailbox that needs
consistency with delivery goes through :func:`posthouse.store.mbox.locking.locked_mailbox`
with the same :class:`~posthouse.store.mbox.locking.LockSettings` as delivery.

Locks
-----
* **Session lock** (RFC 1939 §8): ``flock(LOCK_EX|LOCK_NB)`` on
  ``session_lock_dir/USER.pop.lock``, held from :meth:`MboxMaildrop.open` to
  :meth:`MboxMaildrop.close`.  A second session (any process, or the same process) gets
  :class:`MaildropBusy`.  The kernel drops the lock when the process dies (``kill -9``
  included).  Lock files are never unlinked (unlinking a lock file races with openers).
  The session lock also protects this user's index and rewrite journal, which only a
  session writes.
* **Mailbox lock**: taken briefly at open (crash recovery, index check, scanning the new
  tail) and for the rewrite in :meth:`MboxMaildrop.commit_deletions`.  Delivery goes on
  during the session: it only appends after the indexed region.  Reads are not locked:
  the indexed region is only rewritten by a session (we hold the session lock) or by a
  foreign program, which :meth:`MboxMaildrop.read` detects by re-checking the message's
  first bytes.

The session keeps one read descriptor of the mailbox open.  Because closing *any*
descriptor of a file drops the process's ``lockf`` locks on it, that descriptor is opened
(a ``dup``) and, for ``lockf`` methods, closed while holding the mailbox lock, so another
thread's delivery lock is never dropped by us.

Parsing and sizes (mboxrd, RFC 4155)
------------------------------------
:meth:`MboxMaildrop.read` yields a message's content with one ``>`` removed from lines
matching ``^>+From `` and every line end as CRLF.  ``size`` is exactly the number of octets
read() yields: both are produced by the same streaming decoder.  A *plain* message (see
:mod:`posthouse.store.mbox.scan`; nearly all mail posthouse delivers) is read in one
``pread`` and only has its LFs turned into CRLFs; it is marked ``dot_free`` (no line
starts with "."), which read() re-checks when the file changed since it was indexed.

The parts, each a module with its own documentation:

* :mod:`posthouse.store.mbox.mboxrd`: the streaming mboxrd decoder (and encoder);
* :mod:`posthouse.store.mbox.scan`: parsing the mailbox into messages (and tolerating
  damage);
* :mod:`posthouse.store.mbox.index`: the persistent index ``index_dir/USER.idx``, reusing it
  or re-indexing, and the UIDs;
* :mod:`posthouse.store.mbox.rewrite`: deleting in place with the journal
  ``index_dir/USER.rewrite`` and recovering from a crash at the next open.

This module owns :class:`MboxMaildrop`, the session tying them together: the locks, the
snapshot taken at open, reading and committing deletions.

Memory use is bounded everywhere (64 KiB chunks; lines are parsed in pieces of at most
64 KiB); the journal needs disk space for the rebuilt region.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from posthouse.store.maildrop import MaildropBusy, MaildropError, MaildropMessage
from posthouse.store.mbox.index import (
    Entry,
    Index,
    IndexStats,
    load_index,
    refresh_index,
    save_index,
)
from posthouse.store.mbox.locking import (
    LockSettings,
    MailboxLockTimeout,
    UnsafeMailboxError,
    locked_mailbox,
)
from posthouse.store.mbox.mboxrd import MboxrdDecoder
from posthouse.store.mbox.rewrite import Rewriter, no_crash
from posthouse.store.mbox.scan import CHUNK, ident_at, scan
from posthouse.store.mbox.scan import IDENT_PREFIX as IDENT_PREFIX

__all__ = ["IndexStats", "MboxMaildrop"]

#: The parser the maildrop uses; looked up at each open, so tests can replace it.
_scan = scan
#: Crash-injection seam: tests replace ``_crash_hook`` to stop a rewrite at a step.
_crash_hook: Callable[[str], None] = no_crash

_log = logging.getLogger("posthouse.store")

_BAD_USER = re.compile(r"[/\x00-\x1f\x7f]")


def _call_crash_hook(point: str) -> None:
    _crash_hook(point)  # looked up at each call, so a replaced hook takes effect


def _check_user(user: str) -> None:
    if not user or user.startswith(".") or _BAD_USER.search(user):
        raise ValueError(f"unusable user name for a maildrop: {user!r}")


def _take_session_lock(lock_path: Path, user: str) -> int:
    lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MaildropBusy(f"maildrop of {user} is already in use by another session") from None
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):  # for humans only: who holds it (fixed width, no truncate)
        os.pwrite(fd, f"{os.getpid():>10}\n".encode(), 0)
    return fd


def _store_error(path: Path, action: str, exc: BaseException) -> MaildropError:
    temporary = not isinstance(exc, UnsafeMailboxError)
    return MaildropError(f"cannot {action} maildrop {path}: {exc}", temporary=temporary)


class MboxMaildrop:
    """A POP session on one mbox spool file.  Create with :meth:`open`."""

    def __init__(
        self,
        path: Path,
        *,
        user: str,
        locking: LockSettings,
        index_dir: Path,
        session_fd: int,
    ) -> None:
        self._path = path
        self._user = user
        self._locking = locking
        self._index_path = index_dir / f"{user}.idx"
        self._rewriter = Rewriter(path, index_dir / f"{user}.rewrite", crash_hook=_call_crash_hook)
        self._session_fd: int | None = session_fd
        self._fd: int | None = None
        self._indexed_as: tuple[int, int, int, int] | None = None
        self._index: Index | None = None
        self._entries: list[Entry] = []
        self._messages: tuple[MaildropMessage, ...] = ()
        self._committed = False
        self.index_stats = IndexStats("missing", 0)

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        user: str,
        locking: LockSettings,
        index_dir: Path,
        session_lock_dir: Path,
    ) -> MboxMaildrop:
        """Lock the session, bring the index up to date and take the snapshot.

        Raises :class:`MaildropBusy` if another session holds ``user``'s maildrop, and
        :class:`MaildropError` if the mailbox cannot be locked within ``locking.timeout`` seconds
        (temporary), is unsafe (symlink, hard links: permanent) or cannot be read.  A
        missing mailbox is an empty maildrop (the file is not created).  ``index_dir``
        and ``session_lock_dir`` are created if missing.
        """
        _check_user(user)
        session_fd = _take_session_lock(session_lock_dir / f"{user}.pop.lock", user)
        self = cls(
            path,
            user=user,
            locking=locking,
            index_dir=index_dir,
            session_fd=session_fd,
        )
        try:
            index_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._load()
        except BaseException:
            self.close()
            raise
        return self

    def _lock_mailbox(self) -> contextlib.AbstractContextManager[BinaryIO]:
        locking = self._locking
        return locked_mailbox(
            self._path, locking.method, timeout=locking.timeout, stale_after=locking.stale_after
        )

    # -- the Maildrop protocol --

    @property
    def messages(self) -> Sequence[MaildropMessage]:
        return self._messages

    def read(self, number: int) -> Iterator[bytes]:
        entry = self._entry(number)
        fd = self._fd
        if fd is None or self._committed:
            raise MaildropError("the maildrop session is over", temporary=False)
        try:
            # Unchanged since it was indexed: no need to check the message is still there.
            unchanged = _file_state(os.fstat(fd)) == self._indexed_as
            ident = entry.ident if unchanged else ident_at(fd, entry.offset, entry.length)
        except OSError as exc:
            raise _store_error(self._path, "read", exc) from exc
        if ident != entry.ident:
            _log.error(
                "%s: message %d (uid %s) is no longer at offset %d: the mailbox was changed "
                "by another program",
                self._path,
                number,
                entry.uid,
                entry.offset,
            )
            raise MaildropError(
                f"{self._path}: message {number} moved (mailbox changed by another program)"
            )
        if entry.plain:
            return self._plain(fd, number, entry, verify=not unchanged)
        return self._stream(fd, number, entry)

    def commit_deletions(self, numbers: Collection[int]) -> None:
        if self._committed or self._session_fd is None:
            raise MaildropError("the maildrop session is over", temporary=False)
        doomed = set(numbers)
        for number in doomed:
            self._entry(number)  # IndexError for numbers out of range
        self._committed = True  # no retry: a failed rewrite is completed at the next open
        if not doomed:
            return
        index = self._index
        assert index is not None and self._fd is not None  # there are messages
        try:
            with self._lock_mailbox() as f:
                fd = f.fileno()
                new_entries, end = self._rewrite(fd, index, doomed)
                st = os.fstat(fd)
        except (OSError, MailboxLockTimeout) as exc:
            raise _store_error(self._path, "update", exc) from exc
        index.entries = new_entries
        index.end = end
        index.size, index.mtime_ns = st.st_size, st.st_mtime_ns
        try:
            save_index(self._index_path, index)
        except OSError as exc:  # the next open re-indexes and carries the UIDs over
            _log.error("%s: could not save the index: %s", self._index_path, exc)

    def close(self) -> None:
        try:
            if self._fd is not None:
                self._close_mailbox_fd(self._fd)
        finally:
            self._fd = None
            if self._session_fd is not None:
                os.close(self._session_fd)  # releases the flock
                self._session_fd = None

    def __enter__(self) -> MboxMaildrop:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --

    def _entry(self, number: int) -> Entry:
        if not 1 <= number <= len(self._entries):
            raise IndexError(f"no message {number} in this maildrop")
        return self._entries[number - 1]

    def _stream(self, fd: int, number: int, entry: Entry) -> Iterator[bytes]:
        decoder = MboxrdDecoder()
        position = entry.offset + entry.from_len
        remaining = entry.content_len
        produced = 0
        while remaining > 0:
            chunk = self._pread(fd, number, min(CHUNK, remaining), position)
            position += len(chunk)
            remaining -= len(chunk)
            out = decoder.feed(chunk)
            if out:
                produced += len(out)
                yield out
        out = decoder.finish()
        produced += len(out)
        if produced != entry.size:
            raise self._moved_while_read(number)
        if out:
            yield out

    def _plain(self, fd: int, number: int, entry: Entry, *, verify: bool) -> Iterator[bytes]:
        """A plain message (see :mod:`posthouse.store.mbox.scan`): LF to CRLF is all it needs.

        ``verify``: the file changed since it was indexed, so check that no line starts
        with "." before the content is served as dot-free.
        """
        if entry.content_len > CHUNK:
            return self._plain_chunks(fd, number, entry, verify)
        data = self._pread(fd, number, entry.content_len, entry.offset + entry.from_len)
        if verify and not _dot_free(data, True):
            raise self._moved_while_read(number)
        data = data.replace(b"\n", b"\r\n")
        if len(data) != entry.size:
            raise self._moved_while_read(number)
        return iter((data,))  # the usual case: one read, no generator

    def _plain_chunks(self, fd: int, number: int, entry: Entry, verify: bool) -> Iterator[bytes]:
        position = entry.offset + entry.from_len
        end = position + entry.content_len
        produced = 0
        line_start = True
        while position < end:
            chunk = self._pread(fd, number, min(CHUNK, end - position), position)
            if verify and not _dot_free(chunk, line_start):
                raise self._moved_while_read(number)
            position += len(chunk)
            line_start = chunk.endswith(b"\n")
            out = chunk.replace(b"\n", b"\r\n")
            produced += len(out)
            yield out
        if produced != entry.size:
            raise self._moved_while_read(number)

    def _pread(self, fd: int, number: int, length: int, position: int) -> bytes:
        try:
            data = os.pread(fd, length, position)
        except OSError as exc:
            raise _store_error(self._path, "read", exc) from exc
        if len(data) != length:
            raise MaildropError(f"{self._path}: message {number} was truncated")
        return data

    def _moved_while_read(self, number: int) -> MaildropError:
        return MaildropError(f"{self._path}: message {number} changed while being read")

    def _load(self) -> None:
        old = load_index(self._index_path)
        if not os.path.lexists(self._path):
            if self._rewriter.journal.exists():
                _log.warning("%s: mailbox is gone; discarding its rewrite journal", self._path)
                self._rewriter.discard()
            self._index = old
            return
        try:
            with self._lock_mailbox() as f:
                fd = f.fileno()
                self._rewriter.recover(fd)
                index, stats = refresh_index(fd, old, self._path, scan=_scan)
                self._fd = os.dup(fd)  # opened (and closed) under the mailbox lock
                # Indexed under the lock: while the file still looks like this, nothing moved.
                self._indexed_as = _file_state(os.fstat(fd))
        except (OSError, MailboxLockTimeout) as exc:
            raise _store_error(self._path, "open", exc) from exc
        if stats.mode != "unchanged":
            try:
                save_index(self._index_path, index)
            except OSError as exc:  # without it the UIDs handed out would not be stable
                raise _store_error(self._index_path, "save the index of", exc) from exc
        self._index = index
        self.index_stats = stats
        self._entries = list(index.entries)
        self._messages = tuple(
            MaildropMessage(number, e.uid, e.size, e.plain)
            for number, e in enumerate(self._entries, 1)
        )

    def _rewrite(self, fd: int, index: Index, doomed: set[int]) -> tuple[list[Entry], int]:
        """Under the mailbox lock: drop messages ``doomed``; return new entries and end."""
        st = os.fstat(fd)
        entries = index.entries
        first = min(doomed) - 1
        if (st.st_dev, st.st_ino) != (index.dev, index.ino) or st.st_size < index.end:
            raise self._changed()
        for e in entries[first:]:
            if ident_at(fd, e.offset, e.length) != e.ident:
                raise self._changed()
        start = entries[first].offset
        kept = entries[:first]
        ranges: list[tuple[int, int]] = []
        position = start
        for number, e in enumerate(entries[first:], first + 1):
            if number in doomed:
                continue
            kept.append(e._replace(offset=position))
            position += e.length
            if ranges and sum(ranges[-1]) == e.offset:
                ranges[-1] = (ranges[-1][0], ranges[-1][1] + e.length)
            else:
                ranges.append((e.offset, e.length))
        tail = index.end
        if len(entries) in doomed and not entries[-1].has_separator:
            # Newlines a later append added to complete the deleted message go with it.
            lead = os.pread(fd, 2, tail)
            tail += len(lead) - len(lead.lstrip(b"\n"))
        if st.st_size > tail:
            ranges.append((tail, st.st_size - tail))
        self._rewriter.rewrite(fd, start, ranges)
        return kept, position

    def _changed(self) -> MaildropError:
        _log.error(
            "%s: changed by another program during the session; deletions not applied",
            self._path,
        )
        return MaildropError(f"{self._path} was changed by another program; no messages deleted")

    def _close_mailbox_fd(self, fd: int) -> None:
        """Close our read descriptor without dropping another thread's ``lockf`` lock."""
        if not self._locking.method.uses_lockf or not os.path.lexists(self._path):
            os.close(fd)
            return
        closed = False
        try:
            with self._lock_mailbox():
                closed = True
                os.close(fd)
        except (OSError, MailboxLockTimeout) as exc:
            _log.warning("%s: closing the maildrop without the mailbox lock: %s", self._path, exc)
        if not closed:
            os.close(fd)


def _dot_free(data: bytes, line_start: bool) -> bool:
    """No line of ``data`` starts with "." (``line_start``: ``data`` starts a line)."""
    return b"\n." not in data and not (line_start and data.startswith(b"."))


def _file_state(st: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when anybody writes the file (appends included)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
