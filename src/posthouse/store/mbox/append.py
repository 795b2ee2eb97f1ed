"""Appending messages to an mbox spool file: one batch, one lock, one fsync, all or nothing.

This module owns the append transaction, :func:`append_messages`; the bytes written are
:mod:`posthouse.store.mbox.mboxrd`'s and the locks :mod:`posthouse.store.mbox.locking`'s.

Written per message::

    From <envelope sender> <asctime of receipt, UTC>\\n
    <content with CRLF -> LF and mboxrd From-quoting>   (ends with a newline)
    \\n                                                   (one blank separator line)

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
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from posthouse.durable import sync_directory
from posthouse.store.mbox.locking import (
    DEFAULT_STALE_AFTER,
    DEFAULT_TIMEOUT,
    LockMethod,
    locked_mailbox,
)
from posthouse.store.mbox.mboxrd import MboxrdEncoder, mbox_from_line

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MboxMessage",
    "append_messages",
]

DEFAULT_CHUNK_SIZE = 64 * 1024


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


def append_messages(
    path: Path,
    messages: Sequence[MboxMessage],
    *,
    method: LockMethod,
    timeout: float = DEFAULT_TIMEOUT,
    stale_after: float = DEFAULT_STALE_AFTER,
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
    if not parent_existed:
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
        sync_directory(path.parent)
        if not parent_existed:
            sync_directory(path.parent.parent)
