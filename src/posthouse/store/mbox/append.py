"""The mbox delivery agent: appends messages to Unix mbox spool files (mboxrd, RFC 4155).

This module owns the on-disk mbox format and the append transaction; the locking itself
lives in :mod:`posthouse.store.mbox.locking`.

Format written, per message::

    From <envelope sender> <asctime of receipt, UTC>\\n
    <content with CRLF -> LF and mboxrd From-quoting>   (ends with a newline)
    \\n                                                   (one blank separator line)

* mboxrd quoting: every line matching ``^>*From `` gets one more ``>``, so a reader that
  strips one ``>`` from such lines recovers the message exactly.  Quoting is done by a
  streaming state machine (:class:`MboxrdEncoder`), so a ``From `` split across chunk
  boundaries is still quoted and memory use does not depend on message or line size.
* A newline is added if the content does not end with one; then exactly one blank line is
  appended as the separator.  Trailing blank lines that are part of the content are kept
  (a reader drops only the final separator), so the body round-trips.

:class:`MboxMessage` content may be ``bytes``, a :class:`~pathlib.Path` (opened and
streamed at append time, so one queue file can be delivered to several mailboxes), or a
readable binary file object (streamed from its *current position* to EOF, never read
whole into memory; the caller keeps ownership and must rewind it to re-deliver).

:func:`append_messages` appends a batch under one lock acquisition, fsyncs, and on any
failure truncates the mailbox back to its original length before re-raising.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from posthouse.store.mbox.locking import LockMethod, locked_mailbox

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MboxMessage",
    "MboxrdEncoder",
    "append_messages",
    "mbox_from_line",
    "to_mbox_bytes",
]

DEFAULT_CHUNK_SIZE = 64 * 1024

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FROM = b"From "
_GT_RUN = re.compile(rb">*")
_UNSAFE_SENDER = re.compile(r"[\s\x00-\x1f\x7f]")


def mbox_from_line(sender: str, when: datetime) -> bytes:
    """The ``From_`` separator line for a message from ``sender`` received at ``when``.

    ``when`` is converted to UTC (naive datetimes are taken to be UTC already), as RFC 4155
    asks, and written in ``asctime`` form without a zone.  The null sender (``""`` or
    ``"<>"``) becomes ``MAILER-DAEMON``; surrounding angle brackets are dropped and any
    whitespace or control character is replaced by ``_`` so the address stays one token.
    """
    address = sender.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    address = _UNSAFE_SENDER.sub("_", address) or "MAILER-DAEMON"
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    stamp = (
        f"{_DAYS[when.weekday()]} {_MONTHS[when.month - 1]} {when.day:2d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {when.year}"
    )
    return f"From {address} {stamp}\n".encode()


class MboxrdEncoder:
    """Streaming CRLF -> LF conversion plus mboxrd ``>*From `` quoting.

    Feed chunks with :meth:`feed`, then call :meth:`finish` once; concatenating the
    results gives the message body as stored in the mbox, including the trailing newline
    and the blank separator line.  State carried between chunks is bounded: a pending
    ``\\r`` and at most four bytes of a possible ``From`` (a run of leading ``>`` is
    emitted at once, since the extra quoting ``>`` may go anywhere within the run).
    """

    def __init__(self) -> None:
        self._cr = False  # a "\r" ended the previous chunk
        self._line_start = True  # in the leading ">" run of a line
        self._partial = b""  # proper prefix of b"From " seen after the ">" run
        self._last = b"\n"  # last byte emitted (b"\n" before any output)
        self._empty = True

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            self._cr = True
            data = data[:-1]
        return self._quote(data.replace(b"\r\n", b"\n"))

    def finish(self) -> bytes:
        out = bytearray(self._quote(b"\r") if self._cr else b"")
        self._cr = False
        if self._partial:
            out += self._partial
            self._last = self._partial[-1:]
            self._partial = b""
        if not self._empty and self._last != b"\n":
            out += b"\n"
        out += b"\n"
        return bytes(out)

    def _quote(self, data: bytes) -> bytes:
        out = bytearray()
        pos, end = 0, len(data)
        while pos < end:
            if self._line_start:
                if not self._partial:
                    run_end = _GT_RUN.match(data, pos)
                    assert run_end is not None  # ">*" always matches
                    out += data[pos : run_end.end()]
                    pos = run_end.end()
                    if pos == end:
                        break
                need = _FROM[len(self._partial) :]
                got = data[pos : pos + len(need)]
                if got == need:
                    out += b">" + self._partial + got
                    pos += len(got)
                    self._partial = b""
                    self._line_start = False
                elif pos + len(got) == end and need.startswith(got):
                    self._partial += got  # undecided until the next chunk
                    pos = end
                    break
                else:
                    out += self._partial
                    self._partial = b""
                    self._line_start = False
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                out += data[pos:]
                pos = end
            else:
                out += data[pos : newline + 1]
                pos = newline + 1
                self._line_start = True
        if out:
            self._last = bytes(out[-1:])
            self._empty = False
        elif self._partial:
            self._empty = False
        return bytes(out)


def to_mbox_bytes(sender: str, content: bytes, when: datetime) -> bytes:
    """One complete mbox entry: ``From_`` line, quoted content, blank separator line."""
    encoder = MboxrdEncoder()
    return mbox_from_line(sender, when) + encoder.feed(content) + encoder.finish()


@dataclass(frozen=True)
class MboxMessage:
    """A message to append: envelope sender, content and time of receipt.

    ``content`` is ``bytes``, a ``Path`` to a file holding the message (streamed), or a
    readable binary file object (streamed from its current position to EOF).
    """

    sender: str
    content: bytes | Path | BinaryIO
    received: datetime


def _chunks(content: bytes | Path | BinaryIO, chunk_size: int) -> Iterator[bytes]:
    if isinstance(content, bytes | bytearray | memoryview):
        view = memoryview(content)
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start : start + chunk_size])
    elif isinstance(content, Path):
        with open(content, "rb") as f:
            yield from _read_chunks(f, chunk_size)
    else:
        yield from _read_chunks(content, chunk_size)


def _read_chunks(f: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    while chunk := f.read(chunk_size):
        yield chunk


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - os.write raises instead on real errors
            raise OSError(errno.EIO, "short write to mailbox")
        view = view[written:]


def _separator_needed(fd: int, size: int) -> bytes:
    """What to write so the next ``From_`` line follows a blank line."""
    if size == 0:
        return b""
    tail = os.pread(fd, 2, max(0, size - 2))
    if tail.endswith(b"\n\n") or tail == b"\n":
        return b""
    if tail.endswith(b"\n"):
        return b"\n"
    return b"\n\n"


def _prepare_parent(path: Path) -> None:
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_messages(
    path: Path,
    messages: Sequence[MboxMessage],
    *,
    method: LockMethod,
    timeout: float = 30.0,
    stale_after: float = 300.0,
    owner: tuple[int, int] | None = None,
    trusted_uids: Collection[int] = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> None:
    """Append all messages under ONE lock acquisition, flush and fsync before returning.

    On any failure (disk full, an error reading a message, an interrupt) the mailbox is
    truncated back to its original length, so no torn message is left, and the exception
    is re-raised.  If the existing file does not end with a blank line, newlines are
    added so the new ``From_`` line starts after one.

    Ownership (mail.local's rule): ``owner`` ``(uid, gid)`` is the user's account, or None
    for a user without one (posthouse's own users, whose mailboxes belong to the mail
    system).  A mailbox this call creates is handed to ``owner`` with ``fchown`` on its
    descriptor when running as root (otherwise it belongs to this process).  An existing
    mailbox is written only when it is owned by ``owner``'s uid, by this process's
    effective uid (the account that creates mailboxes when it cannot give them away), or by
    one of ``trusted_uids`` (e.g. the daemon's ``run_as`` account, for a root queue run
    over mailboxes the daemon created); otherwise
    :class:`~posthouse.store.mbox.locking.UnsafeMailboxError` (an ``OSError``, logged) is raised
    and nothing is written: a mailbox planted by another account in a shared spool is never
    filled.  A missing parent
    directory is created with mode 0755 (subject to umask) -- real spool directories
    such as ``/var/mail`` (1777 or 2775 group mail) are the administrator's to set up.
    ``chunk_size`` is the read/write unit used for streaming message content.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    if not messages:
        return
    parent_existed = path.parent.is_dir()
    _prepare_parent(path)
    # Only decides whether to fsync the directory afterwards, so a race here is harmless.
    created = not os.path.lexists(path)
    allowed = {os.geteuid(), *trusted_uids}
    if owner is not None:
        allowed.add(owner[0])
    with locked_mailbox(
        path,
        method,
        timeout=timeout,
        stale_after=stale_after,
        create_owner=owner,
        allowed_owners=allowed,
    ) as mbox:
        fd = mbox.fileno()
        original = os.fstat(fd).st_size
        try:
            pending = bytearray(_separator_needed(fd, original))
            for message in messages:
                encoder = MboxrdEncoder()
                pending += mbox_from_line(message.sender, message.received)
                for chunk in _chunks(message.content, chunk_size):
                    pending += encoder.feed(chunk)
                    if len(pending) >= chunk_size:
                        _write_all(fd, pending)
                        pending.clear()
                pending += encoder.finish()
            if pending:
                _write_all(fd, pending)
            os.fsync(fd)
        except BaseException as exc:
            try:
                os.ftruncate(fd, original)
                os.fsync(fd)
            except OSError as cleanup:
                exc.add_note(f"also failed to truncate {path} back to {original}: {cleanup}")
            raise
    if created:
        _fsync_dir(path.parent)
        if not parent_existed:
            _fsync_dir(path.parent.parent)
