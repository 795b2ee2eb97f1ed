"""Journalled in-place rewrites of an mbox spool file, and their crash recovery.

This module owns :class:`Rewriter`: the maildrop
(:class:`~posthouse.store.mbox.maildrop.MboxMaildrop`) drops deleted messages with
:meth:`Rewriter.rewrite` and completes an interrupted rewrite at the next open with
:meth:`Rewriter.recover`.

Deleting (UPDATE state): in place, with a journal
------------------------------------------------
The mailbox cannot be replaced by rename: delivery agents waiting on the ``lockf`` lock
(or having opened the path under a dot-lock) would then append to the unlinked old inode.
So :meth:`~posthouse.store.mbox.maildrop.MboxMaildrop.commit_deletions` rewrites it in
place, under the mailbox lock: the region from the first deleted message to the end of file
(kept messages plus mail delivered since the open) is rebuilt.  To survive a crash at any
point, the new region is first written to the journal ``index_dir/USER.rewrite``:

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

Memory use is bounded (64 KiB chunks); the journal needs disk space for the rebuilt region.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posthouse.durable import sync_directory
from posthouse.store.mbox.scan import CHUNK

__all__ = ["Rewriter", "no_crash"]

_log = logging.getLogger("posthouse.store")

_JOURNAL_HEADER = 512


def no_crash(point: str) -> None:
    """The default crash hook of a :class:`Rewriter`: do nothing at ``point``."""


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
class Rewriter:
    """Journalled in-place rewrites of one mailbox (see the module docstring)."""

    path: Path
    journal: Path
    #: Crash-injection seam: called with the name of each step once it is durable.
    crash_hook: Callable[[str], None] = no_crash

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
            sync_directory(self.journal.parent)
            self.crash_hook("journal")
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
        self.crash_hook("copied")
        _fill_newlines(fd, end, old_size)
        os.fsync(fd)
        self.crash_hook("padded")
        _pwrite_all(jfd, b"2", 0)
        os.fsync(jfd)
        self.crash_hook("phase2")
        self._finish(fd, end, old_size, current)

    def _finish(self, fd: int, end: int, old_size: int, current: int) -> None:
        """``[end, old_size)`` is padding; drop it, keeping whatever follows ``old_size``."""
        if current > old_size:
            # Mail delivered after a crash: move it down over the padding, journalled too.
            self.rewrite(fd, end, [(old_size, current - old_size)])
            return
        os.ftruncate(fd, end)
        os.fsync(fd)
        self.crash_hook("truncated")
        self.journal.unlink()
        sync_directory(self.journal.parent)

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
                self.discard()
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
                    self.discard()
                    return
                _log.warning("%s: completing an interrupted rewrite at offset %d", self.path, start)
                self._apply(fd, jfd, start, length, old_size, current)
            elif current >= old_size and _all_newlines(fd, end, old_size):
                _log.warning("%s: completing an interrupted truncation to %d", self.path, end)
                _no_append(fd)
                self._finish(fd, end, old_size, current)
            else:
                _log.info("%s: interrupted rewrite had already completed", self.path)
                self.discard()
        except ValueError as exc:
            _log.error(
                "%s: discarding unusable rewrite journal %s: %s", self.path, self.journal, exc
            )
            self.discard()
        finally:
            os.close(jfd)

    def discard(self) -> None:
        self.journal.unlink(missing_ok=True)
        sync_directory(self.journal.parent)
