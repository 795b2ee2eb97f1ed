"""The POP3 maildrop of an mbox spool file (``SPOOL/USER``), with a persistent index.

:class:`MboxMaildrop` implements :class:`posthouse.store.maildrop.Maildrop` on the mboxrd
files written by :mod:`posthouse.mta.agents.mbox`.  Every access to the mailbox that needs
consistency with delivery goes through :func:`posthouse.mta.locking.locked_mailbox` with
the same :class:`~posthouse.mta.locking.LockMethod` as delivery.

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

Parsing (mboxrd, RFC 4155)
--------------------------
A message starts at a line beginning with ``From `` that is the first such line of the
file or follows an empty line; it extends to the next such line or to the end of file.
Its content is everything after the ``From_`` line, minus the final empty separator line.
:meth:`MboxMaildrop.read` yields the content with one ``>`` removed from lines matching
``^>+From `` and every line end as CRLF (``\\n`` and ``\\r\\n`` both count as a line end;
a lone ``\\r`` is data).  ``size`` is exactly the number of octets read() yields: both are
produced by the same streaming decoder.

Damage is tolerated, never fatal, and logged to ``posthouse.store`` with file and offset:

* bytes before the first ``From_`` line are skipped (logged as an error);
* a last message without its final newline (a truncated write by some other program) is
  served with what is there, plus a CRLF to end the last line (logged as a warning);
* text between messages that does not start with ``From `` after an empty line cannot be
  told from message text and is served as part of the preceding message.

Index file ``index_dir/USER.idx`` (JSON lines, rewritten atomically via a temporary file,
``fsync`` and ``rename``)
----------------------------------------------------------------------------------------
Line 1, an object::

    {"format": "posthouse-mbox-index", "version": 1, "uidvalidity": 1767225600,
     "next_serial": 42, "dev": 2049, "ino": 1234, "size": 81234, "mtime_ns": ...,
     "end": 81234, "count": 2}

``dev``/``ino``/``size``/``mtime_ns`` describe the mailbox as indexed, ``end`` is where
the indexed region ends (after a rewrite, mail appended during the session lies beyond
it).  Then ``count`` lines, one per message, in file order::

    [offset, length, from_len, content_len, size, "uid", "ident"]

``offset`` is that of the ``From_`` line, ``length`` covers the message up to the next
``From_`` line, ``from_len`` is the ``From_`` line's length, ``content_len`` the raw
content's (without the separator line), ``size`` the CRLF size, ``ident`` a BLAKE2b-128
hex digest of the first 4 KiB of the message (``From_`` line included).

At open the index is reused when the mailbox has the same device and inode, did not
shrink, was not modified in place at the same size (same size needs the same
``mtime_ns``), and the last indexed message still has its ``ident``.  Then only the region
from the last indexed message on is parsed (that message may have been completed by a
later append), and nothing at all when the size is unchanged.  Otherwise the mailbox is
re-indexed in full.

UIDs
----
``f"{uidvalidity}.{serial}"`` (Dovecot-style): ``serial`` comes from the index's counter
when a message is first indexed, ``uidvalidity`` is the time the index was created.  A
full re-index keeps the index's ``uidvalidity``/``next_serial`` and carries UIDs over to
messages with the same ``(ident, length)`` -- duplicates are matched in file order -- so
a rewrite by another program only renumbers the messages it really changed.  If the index
file is lost, a new ``uidvalidity`` makes all UIDs new (clients download again rather
than confuse messages).  ``X-UIDL:`` headers are not honoured: they are under the
sender's control and not guaranteed unique.

Deleting (UPDATE state): in place, with a journal
------------------------------------------------
The mailbox cannot be replaced by rename: delivery agents waiting on the ``lockf`` lock
(or having opened the path under a dot-lock) would then append to the unlinked old inode.
So :meth:`MboxMaildrop.commit_deletions` rewrites it in place, under the mailbox lock:
the region from the first deleted message to the end of file (kept messages plus mail
delivered since the open) is rebuilt.  To survive a crash at any point, the new region is
first written to the journal ``index_dir/USER.rewrite``:

* bytes 0-511: phase byte (``1`` or ``2``), then a JSON object ``{"dev", "ino", "start",
  "old_size", "length"}`` padded with spaces, ``\\n`` at byte 511;
* then ``length`` bytes: the new content of ``[start, start + length)``.

Steps: write ``USER.rewrite.tmp``, fsync, rename to ``USER.rewrite``, fsync the directory
(the mailbox is untouched until the journal is complete); copy the new content to
``start`` and overwrite the rest of the old region, ``[start + length, old_size)``, with
newlines (the file is then a valid mbox again); fsync; set the phase byte to ``2`` and
fsync; truncate to ``start + length``; fsync; delete the journal.

Recovery runs at the next open, under the mailbox lock.  Phase ``1`` means the file was
not yet truncated: the copy and padding are redone.  Phase ``2`` means the padding is
complete: if ``[start + length, old_size)`` is still all newlines the truncation did not
happen (appended mail always contains ``From ``).  Mail delivered after the crash lies
beyond ``old_size`` and is moved down over the padding by a second journalled rewrite,
so nothing is lost and no padding is left behind.  The index is then rebuilt by the
full-re-index path, which carries the UIDs over.

Memory use is bounded everywhere (64 KiB chunks; lines are parsed in pieces of at most
64 KiB); the journal needs disk space for the rebuilt region.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from posthouse.mta.locking import (
    LockMethod,
    MailboxLockTimeout,
    UnsafeMailboxError,
    locked_mailbox,
)
from posthouse.store.maildrop import MaildropBusy, MaildropError, MaildropMessage

__all__ = ["IndexStats", "MboxMaildrop"]

_log = logging.getLogger("posthouse.store")

CHUNK = 64 * 1024
IDENT_PREFIX = 4096
_LINE_LIMIT = 64 * 1024
_JOURNAL_HEADER = 512
_INDEX_FORMAT = "posthouse-mbox-index"
_INDEX_VERSION = 1
_FROM = b"From "
_GT_RUN = re.compile(rb">*")
_BAD_USER = re.compile(r"[/\x00-\x1f\x7f]")


def _no_crash(point: str) -> None:
    """Crash-injection seam: tests replace ``_crash_hook`` to stop a rewrite at ``point``."""


_crash_hook: Callable[[str], None] = _no_crash


# --- mboxrd decoding ---------------------------------------------------------------------


class _MboxrdDecoder:
    """Streaming inverse of :class:`posthouse.mta.agents.mbox.MboxrdEncoder`.

    Removes one ``>`` from lines matching ``^>+From ``, turns every ``\\n`` (or ``\\r\\n``)
    into ``\\r\\n`` and, in :meth:`finish`, ends an unterminated last line with CRLF.  The
    output does not depend on how the input is cut into chunks.  Carried state is bounded:
    a pending ``\\r``, one withheld ``>`` and at most four bytes of a possible ``From``.
    """

    def __init__(self) -> None:
        self._cr = False
        self._line_start = True
        self._held = False  # one ">" of the leading run withheld until we know what follows
        self._partial = b""  # proper prefix of b"From " seen after a ">" run
        self._last = b"\n"
        self._empty = True

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            self._cr = True
            data = data[:-1]
        return self._emit(self._unquote(data.replace(b"\r\n", b"\n")))

    def finish(self) -> bytes:
        pending = bytearray()
        if self._cr:
            self._cr = False
            pending += self._unquote(b"\r")
        if self._held:
            pending += b">"
            self._held = False
        pending += self._partial
        self._partial = b""
        out = self._emit(bytes(pending))
        if not self._empty and self._last != b"\n":
            out += b"\r\n"
            self._last = b"\n"
        return out

    def _emit(self, data: bytes) -> bytes:
        if data:
            self._last = data[-1:]
            self._empty = False
        return data.replace(b"\n", b"\r\n")

    def _unquote(self, data: bytes) -> bytes:
        out = bytearray()
        pos, end = 0, len(data)
        while pos < end:
            if self._line_start:
                if not self._partial:
                    run = _GT_RUN.match(data, pos)
                    assert run is not None  # ">*" always matches
                    if run.end() > pos:
                        out += data[pos + (0 if self._held else 1) : run.end()]
                        self._held = True
                        pos = run.end()
                        if pos == end:
                            break
                    elif not self._held:
                        self._line_start = False  # no ">" run: nothing to unquote
                        continue
                need = _FROM[len(self._partial) :]
                got = data[pos : pos + len(need)]
                if got == need:  # ">+From ": drop the withheld ">"
                    out += self._partial + got
                    pos += len(got)
                elif pos + len(got) == end and need.startswith(got):
                    self._partial += got  # undecided until the next chunk
                    break
                else:
                    out += b">" + self._partial
                self._held = False
                self._partial = b""
                self._line_start = False
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                out += data[pos:]
                break
            out += data[pos : newline + 1]
            pos = newline + 1
            self._line_start = True
        return bytes(out)


def _ident(prefix: bytes) -> str:
    return hashlib.blake2b(prefix, digest_size=16).hexdigest()


# --- scanning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scanned:
    offset: int
    length: int
    from_len: int
    content_len: int
    size: int
    ident: str


@dataclass(frozen=True)
class _Entry(_Scanned):
    uid: str

    @property
    def has_separator(self) -> bool:
        return self.length - self.from_len - self.content_len == 1


class _Builder:
    """Accumulates one message while scanning."""

    def __init__(self, offset: int, from_piece: bytes, from_done: bool) -> None:
        self.offset = offset
        self.length = 0
        self.from_len = 0
        self.in_from = True
        self.content_len = 0
        self.size = 0
        self.prefix = bytearray()
        self.pending_blank = False
        self._decoder = _MboxrdDecoder()
        self._batch = bytearray()
        self.add_from(from_piece, from_done)

    def _raw(self, piece: bytes) -> None:
        self.length += len(piece)
        if len(self.prefix) < IDENT_PREFIX:
            self.prefix += piece[: IDENT_PREFIX - len(self.prefix)]

    def add_from(self, piece: bytes, done: bool) -> None:
        self._raw(piece)
        self.from_len += len(piece)
        self.in_from = not done

    def add_line(self, piece: bytes, line_start: bool) -> None:
        self._raw(piece)
        if self.pending_blank:
            self._content(b"\n")
            self.pending_blank = False
        if line_start and piece == b"\n":
            self.pending_blank = True  # the separator, unless more text follows
        else:
            self._content(piece)

    def _content(self, piece: bytes) -> None:
        self.content_len += len(piece)
        self._batch += piece
        if len(self._batch) >= CHUNK:
            self.size += len(self._decoder.feed(bytes(self._batch)))
            self._batch.clear()

    def done(self) -> _Scanned:
        self.size += len(self._decoder.feed(bytes(self._batch)))
        self.size += len(self._decoder.finish())
        self._batch.clear()
        return _Scanned(
            self.offset,
            self.length,
            self.from_len,
            self.content_len,
            self.size,
            _ident(bytes(self.prefix)),
        )


def _scan(fd: int, start: int, path: Path) -> tuple[list[_Scanned], int]:
    """Parse the mailbox from ``start`` (a ``From_`` line, or 0) to end of file.

    Returns the messages found and the number of bytes read.  Damage is logged.
    """
    messages: list[_Scanned] = []
    current: _Builder | None = None
    garbage_at: int | None = None
    at_line_start = True
    pos = start
    with open(fd, "rb", buffering=CHUNK, closefd=False) as f:
        f.seek(start)
        while piece := f.readline(_LINE_LIMIT):
            line_start = at_line_start
            at_line_start = piece.endswith(b"\n")
            if (
                line_start
                and piece.startswith(_FROM)
                and (current is None or current.pending_blank)
            ):
                if current is not None:
                    messages.append(current.done())
                elif garbage_at is not None:
                    _log.error(
                        "%s: skipped %d bytes of garbage at offset %d before the first From_ line",
                        path,
                        pos - garbage_at,
                        garbage_at,
                    )
                current = _Builder(pos, piece, at_line_start)
            elif current is None:
                if garbage_at is None:
                    garbage_at = pos
            elif current.in_from:
                current.add_from(piece, at_line_start)
            else:
                current.add_line(piece, line_start)
            pos += len(piece)
    if current is not None:
        if not at_line_start:
            _log.warning(
                "%s: last message (offset %d) is truncated: it does not end with a newline; "
                "serving what is there",
                path,
                current.offset,
            )
        messages.append(current.done())
    elif garbage_at is not None:
        _log.error(
            "%s: no From_ line found; ignoring %d bytes at offset %d",
            path,
            pos - garbage_at,
            garbage_at,
        )
    return messages, pos - start


def _ident_at(fd: int, offset: int, length: int) -> str:
    return _ident(os.pread(fd, min(length, IDENT_PREFIX), offset))


# --- the index file ------------------------------------------------------------------------


@dataclass
class _Index:
    uidvalidity: int
    next_serial: int
    dev: int
    ino: int
    size: int
    mtime_ns: int
    end: int
    entries: list[_Entry]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _load_index(path: Path) -> _Index | None:
    try:
        with open(path, "rb") as f:
            header: Any = json.loads(f.readline())
            if not isinstance(header, dict) or header.get("format") != _INDEX_FORMAT:
                raise ValueError("not a posthouse mbox index")
            if header.get("version") != _INDEX_VERSION:
                raise ValueError(f"unsupported version {header.get('version')!r}")
            fields = ("uidvalidity", "next_serial", "dev", "ino", "size", "mtime_ns", "end")
            if not all(_is_int(header.get(name)) for name in (*fields, "count")):
                raise ValueError("bad header")
            entries: list[_Entry] = []
            for line in f:
                row: Any = json.loads(line)
                if (
                    not isinstance(row, list)
                    or len(row) != 7
                    or not all(_is_int(v) for v in row[:5])
                    or not all(isinstance(v, str) for v in row[5:])
                ):
                    raise ValueError(f"bad entry {line[:80]!r}")
                offset, length, from_len, content_len, size, uid, ident = row
                entries.append(_Entry(offset, length, from_len, content_len, size, ident, uid))
            if len(entries) != header["count"]:
                raise ValueError("incomplete")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _log.warning("%s: unusable index, re-indexing: %s", path, exc)
        return None
    h = {name: int(header[name]) for name in fields}
    return _Index(
        h["uidvalidity"],
        h["next_serial"],
        h["dev"],
        h["ino"],
        h["size"],
        h["mtime_ns"],
        h["end"],
        entries,
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_index(path: Path, index: _Index) -> None:
    tmp = path.with_name(path.name + ".tmp")
    header = {
        "format": _INDEX_FORMAT,
        "version": _INDEX_VERSION,
        "uidvalidity": index.uidvalidity,
        "next_serial": index.next_serial,
        "dev": index.dev,
        "ino": index.ino,
        "size": index.size,
        "mtime_ns": index.mtime_ns,
        "end": index.end,
        "count": len(index.entries),
    }
    try:
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
            for e in index.entries:
                row = [e.offset, e.length, e.from_len, e.content_len, e.size, e.uid, e.ident]
                f.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


# --- in-place rewrite with a journal ---------------------------------------------------------


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _copy(src: int, src_off: int, dst: int, dst_off: int, length: int) -> None:
    while length > 0:
        chunk = os.pread(src, min(CHUNK, length), src_off)
        if not chunk:
            raise OSError(f"unexpected end of file copying at offset {src_off}")
        _pwrite_all(dst, chunk, dst_off)
        src_off += len(chunk)
        dst_off += len(chunk)
        length -= len(chunk)


def _fill_newlines(fd: int, start: int, end: int) -> None:
    block = b"\n" * CHUNK
    while start < end:
        n = min(CHUNK, end - start)
        _pwrite_all(fd, block[:n], start)
        start += n


def _all_newlines(fd: int, start: int, end: int) -> bool:
    while start < end:
        chunk = os.pread(fd, min(CHUNK, end - start), start)
        if not chunk or chunk.strip(b"\n"):
            return False
        start += len(chunk)
    return True


def _no_append(fd: int) -> None:
    """Clear O_APPEND so pwrite() writes where it is told (Linux appends otherwise)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & os.O_APPEND:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_APPEND)


@dataclass(frozen=True)
class _Rewriter:
    """Journalled in-place rewrites of one mailbox (see the module docstring)."""

    path: Path
    journal: Path

    def rewrite(self, fd: int, start: int, ranges: Sequence[tuple[int, int]]) -> None:
        """Make ``[start, EOF)`` the concatenation of the byte ``ranges`` (all >= start)."""
        st = os.fstat(fd)
        old_size = st.st_size
        length = sum(n for _, n in ranges)
        if list(ranges) == [(start, old_size - start)] or (length == 0 and start == old_size):
            return
        tmp = self.journal.with_name(self.journal.name + ".tmp")
        header = json.dumps(
            {
                "dev": st.st_dev,
                "ino": st.st_ino,
                "start": start,
                "old_size": old_size,
                "length": length,
            }
        ).encode()
        assert len(header) <= _JOURNAL_HEADER - 2
        jfd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            try:
                _pwrite_all(jfd, b"1" + header.ljust(_JOURNAL_HEADER - 2) + b"\n", 0)
                position = _JOURNAL_HEADER
                for offset, n in ranges:
                    _copy(fd, offset, jfd, position, n)
                    position += n
                os.fsync(jfd)
                os.replace(tmp, self.journal)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(self.journal.parent)
            _crash_hook("journal")
            self._apply(fd, jfd, start, length, old_size, old_size)
        finally:
            os.close(jfd)

    def _apply(
        self, fd: int, jfd: int, start: int, length: int, old_size: int, current: int
    ) -> None:
        """Redo-able: copy the journal into place, pad, truncate (or move later mail down)."""
        _no_append(fd)
        end = start + length
        _copy(jfd, _JOURNAL_HEADER, fd, start, length)
        _crash_hook("copied")
        _fill_newlines(fd, end, old_size)
        os.fsync(fd)
        _crash_hook("padded")
        _pwrite_all(jfd, b"2", 0)
        os.fsync(jfd)
        _crash_hook("phase2")
        self._finish(fd, end, old_size, current)

    def _finish(self, fd: int, end: int, old_size: int, current: int) -> None:
        """``[end, old_size)`` is padding; drop it, keeping whatever follows ``old_size``."""
        if current > old_size:
            # Mail delivered after a crash: move it down over the padding, journalled too.
            self.rewrite(fd, end, [(old_size, current - old_size)])
            return
        os.ftruncate(fd, end)
        os.fsync(fd)
        _crash_hook("truncated")
        self.journal.unlink()
        _fsync_dir(self.journal.parent)

    def recover(self, fd: int) -> None:
        """Complete or discard an interrupted rewrite; call under the mailbox lock."""
        self.journal.with_name(self.journal.name + ".tmp").unlink(missing_ok=True)
        try:
            jfd = os.open(self.journal, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            block = os.pread(jfd, _JOURNAL_HEADER, 0)
            phase = block[:1]
            try:
                header: Any = json.loads(block[1:])
                start, old_size, length = (
                    int(header["start"]),
                    int(header["old_size"]),
                    int(header["length"]),
                )
                dev, ino = int(header["dev"]), int(header["ino"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"bad journal header: {exc}") from exc
            if phase not in (b"1", b"2") or os.fstat(jfd).st_size != _JOURNAL_HEADER + length:
                raise ValueError("journal is damaged")
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (dev, ino):
                _log.warning(
                    "%s: discarding rewrite journal %s: the mailbox was replaced since",
                    self.path,
                    self.journal,
                )
                self._discard()
                return
            current, end = st.st_size, start + length
            if phase == b"1":
                if current < old_size:
                    _log.error(
                        "%s: mailbox shrank below the interrupted rewrite's size (%d < %d); "
                        "leaving it as it is",
                        self.path,
                        current,
                        old_size,
                    )
                    self._discard()
                    return
                _log.warning("%s: completing an interrupted rewrite at offset %d", self.path, start)
                self._apply(fd, jfd, start, length, old_size, current)
            elif current >= old_size and _all_newlines(fd, end, old_size):
                _log.warning("%s: completing an interrupted truncation to %d", self.path, end)
                _no_append(fd)
                self._finish(fd, end, old_size, current)
            else:
                _log.info("%s: interrupted rewrite had already completed", self.path)
                self._discard()
        except ValueError as exc:
            _log.error(
                "%s: discarding unusable rewrite journal %s: %s", self.path, self.journal, exc
            )
            self._discard()
        finally:
            os.close(jfd)

    def _discard(self) -> None:
        self.journal.unlink(missing_ok=True)
        _fsync_dir(self.journal.parent)


# --- the maildrop --------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexStats:
    """How the index was brought up to date at open: a hook for tests and diagnostics.

    ``mode``: ``"missing"`` (no mailbox file), ``"unchanged"`` (nothing parsed), ``"tail"``
    (only the region from the last indexed message on was parsed) or ``"full"``.
    ``scanned_bytes``: how many bytes of the mailbox were parsed.
    """

    mode: Literal["missing", "unchanged", "tail", "full"]
    scanned_bytes: int


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
    try:  # for humans only: who holds it
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
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
        method: LockMethod,
        index_dir: Path,
        session_fd: int,
        timeout: float,
        stale_after: float,
    ) -> None:
        self._path = path
        self._user = user
        self._method = method
        self._index_path = index_dir / f"{user}.idx"
        self._rewriter = _Rewriter(path, index_dir / f"{user}.rewrite")
        self._session_fd: int | None = session_fd
        self._timeout = timeout
        self._stale_after = stale_after
        self._fd: int | None = None
        self._index: _Index | None = None
        self._entries: list[_Entry] = []
        self._messages: tuple[MaildropMessage, ...] = ()
        self._committed = False
        self.index_stats = IndexStats("missing", 0)

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        user: str,
        method: LockMethod,
        index_dir: Path,
        session_lock_dir: Path,
        timeout: float = 30.0,
        stale_after: float = 300.0,
    ) -> MboxMaildrop:
        """Lock the session, bring the index up to date and take the snapshot.

        Raises :class:`MaildropBusy` if another session holds ``user``'s maildrop, and
        :class:`MaildropError` if the mailbox cannot be locked within ``timeout`` seconds
        (temporary), is unsafe (symlink, hard links: permanent) or cannot be read.  A
        missing mailbox is an empty maildrop (the file is not created).  ``index_dir``
        and ``session_lock_dir`` are created if missing.
        """
        _check_user(user)
        session_fd = _take_session_lock(session_lock_dir / f"{user}.pop.lock", user)
        self = cls(
            path,
            user=user,
            method=method,
            index_dir=index_dir,
            session_fd=session_fd,
            timeout=timeout,
            stale_after=stale_after,
        )
        try:
            index_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._load()
        except BaseException:
            self.close()
            raise
        return self

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
            ident = _ident_at(fd, entry.offset, entry.length)
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
            with locked_mailbox(
                self._path, self._method, timeout=self._timeout, stale_after=self._stale_after
            ) as f:
                fd = f.fileno()
                new_entries, end = self._rewrite(fd, index, doomed)
                st = os.fstat(fd)
        except (OSError, MailboxLockTimeout) as exc:
            raise _store_error(self._path, "update", exc) from exc
        index.entries = new_entries
        index.end = end
        index.size, index.mtime_ns = st.st_size, st.st_mtime_ns
        try:
            _save_index(self._index_path, index)
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

    def _entry(self, number: int) -> _Entry:
        if not 1 <= number <= len(self._entries):
            raise IndexError(f"no message {number} in this maildrop")
        return self._entries[number - 1]

    def _stream(self, fd: int, number: int, entry: _Entry) -> Iterator[bytes]:
        decoder = _MboxrdDecoder()
        position = entry.offset + entry.from_len
        remaining = entry.content_len
        produced = 0
        while remaining > 0:
            try:
                chunk = os.pread(fd, min(CHUNK, remaining), position)
            except OSError as exc:
                raise _store_error(self._path, "read", exc) from exc
            if not chunk:
                raise MaildropError(f"{self._path}: message {number} was truncated")
            position += len(chunk)
            remaining -= len(chunk)
            out = decoder.feed(chunk)
            if out:
                produced += len(out)
                yield out
        out = decoder.finish()
        produced += len(out)
        if produced != entry.size:
            raise MaildropError(f"{self._path}: message {number} changed while being read")
        if out:
            yield out

    def _load(self) -> None:
        old = _load_index(self._index_path)
        if not os.path.lexists(self._path):
            if self._rewriter.journal.exists():
                _log.warning("%s: mailbox is gone; discarding its rewrite journal", self._path)
                self._rewriter._discard()
            self._index = old
            return
        try:
            with locked_mailbox(
                self._path, self._method, timeout=self._timeout, stale_after=self._stale_after
            ) as f:
                fd = f.fileno()
                self._rewriter.recover(fd)
                index, stats = self._refresh(fd, old)
                self._fd = os.dup(fd)  # opened (and closed) under the mailbox lock
        except (OSError, MailboxLockTimeout) as exc:
            raise _store_error(self._path, "open", exc) from exc
        if stats.mode != "unchanged":
            try:
                _save_index(self._index_path, index)
            except OSError as exc:  # without it the UIDs handed out would not be stable
                raise _store_error(self._index_path, "save the index of", exc) from exc
        self._index = index
        self.index_stats = stats
        self._entries = list(index.entries)
        self._messages = tuple(
            MaildropMessage(number, e.uid, e.size) for number, e in enumerate(self._entries, 1)
        )

    def _refresh(self, fd: int, old: _Index | None) -> tuple[_Index, IndexStats]:
        st = os.fstat(fd)
        reusable = (
            old is not None
            and (old.dev, old.ino) == (st.st_dev, st.st_ino)
            and st.st_size >= old.size
            and st.st_size >= old.end
            and (st.st_size > old.size or st.st_mtime_ns == old.mtime_ns)
            and (
                not old.entries
                or _ident_at(fd, old.entries[-1].offset, old.entries[-1].length)
                == old.entries[-1].ident
            )
        )
        if old is not None and reusable:
            if st.st_size == old.end:
                stats = IndexStats("unchanged", 0)
                entries = old.entries
            elif old.entries:
                last = old.entries[-1]
                scanned, nbytes = _scan(fd, last.offset, self._path)
                if not scanned or scanned[0].offset != last.offset:  # pragma: no cover
                    return self._full(fd, st, old)
                entries = [*old.entries[:-1], _Entry(**vars(scanned[0]), uid=last.uid)]
                entries += [self._new_entry(old, s) for s in scanned[1:]]
                stats = IndexStats("tail", nbytes)
            else:
                return self._full(fd, st, old)
            return self._described(old, st, entries), stats
        if old is not None and old.entries:
            _log.info("%s: mailbox changed by another program; re-indexing", self._path)
        return self._full(fd, st, old)

    def _full(self, fd: int, st: os.stat_result, old: _Index | None) -> tuple[_Index, IndexStats]:
        if old is None:
            old = _Index(int(time.time()), 1, 0, 0, 0, 0, 0, [])
        carry: dict[tuple[str, int], collections.deque[str]] = {}
        for e in old.entries:
            carry.setdefault((e.ident, e.length), collections.deque()).append(e.uid)
        scanned, nbytes = _scan(fd, 0, self._path)
        entries = []
        for s in scanned:
            uids = carry.get((s.ident, s.length))
            if uids:
                entries.append(_Entry(**vars(s), uid=uids.popleft()))
            else:
                entries.append(self._new_entry(old, s))
        return self._described(old, st, entries), IndexStats("full", nbytes)

    @staticmethod
    def _new_entry(index: _Index, s: _Scanned) -> _Entry:
        uid = f"{index.uidvalidity}.{index.next_serial}"
        index.next_serial += 1
        return _Entry(**vars(s), uid=uid)

    @staticmethod
    def _described(old: _Index, st: os.stat_result, entries: list[_Entry]) -> _Index:
        return _Index(
            old.uidvalidity,
            old.next_serial,
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            st.st_size,
            entries,
        )

    def _rewrite(self, fd: int, index: _Index, doomed: set[int]) -> tuple[list[_Entry], int]:
        """Under the mailbox lock: drop messages ``doomed``; return new entries and end."""
        st = os.fstat(fd)
        entries = index.entries
        first = min(doomed) - 1
        if (st.st_dev, st.st_ino) != (index.dev, index.ino) or st.st_size < index.end:
            raise self._changed()
        for e in entries[first:]:
            if _ident_at(fd, e.offset, e.length) != e.ident:
                raise self._changed()
        start = entries[first].offset
        kept = entries[:first]
        ranges: list[tuple[int, int]] = []
        position = start
        for number, e in enumerate(entries[first:], first + 1):
            if number in doomed:
                continue
            kept.append(replace(e, offset=position))
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
        if not self._method.uses_lockf or not os.path.lexists(self._path):
            os.close(fd)
            return
        closed = False
        try:
            with locked_mailbox(
                self._path, self._method, timeout=self._timeout, stale_after=self._stale_after
            ):
                closed = True
                os.close(fd)
        except (OSError, MailboxLockTimeout) as exc:
            _log.warning("%s: closing the maildrop without the mailbox lock: %s", self._path, exc)
        if not closed:
            os.close(fd)
