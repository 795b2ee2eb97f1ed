"""Receiving a message into the queue: :class:`IncomingMessage`, until it is committed.

Principle: *durable before acknowledged*.  :meth:`IncomingMessage.commit` returns only when
the message's data and envelope are on stable storage and visible under their final names.

Commit order: the first 64 KiB of data are buffered in memory, the rest streamed to
``ID.df.tmp``.  At commit the committer's thread (not the event loop: creating files can block
for a journal commit) writes the control file ``ID.qf.tmp``: for a message still held in
memory, the control line followed by the data (one file: an *inline* entry); otherwise the
control line alone, after what is left of ``ID.df.tmp``.  The files are ``fdatasync``\\ ed,
renamed (``ID.df`` first, so the control file, which makes the message a queue entry, appears
last), and the directory is ``fsync``\\ ed, the flushes being shared with concurrent
commits through a :class:`~posthouse.mta.queue.groupcommit.GroupCommitter`.  (If the system crashes
*before* commit returned, i.e. for a message that was never acknowledged, an ``ID.df``
without control file can remain; it is listed as damaged.)

Create one with :meth:`posthouse.mta.queue.store.QueueStore.new_message`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from typing import TYPE_CHECKING, BinaryIO, Literal

from posthouse.mta.queue.control_file import Envelope, QueueError, envelope_to_json
from posthouse.mta.queue.files import FILE_MODE, unlink_if_exists, write_all
from posthouse.mta.queue.groupcommit import CommitRequest, wait_commit

if TYPE_CHECKING:
    from posthouse.mta.queue.store import QueueStore

__all__ = ["IncomingMessage"]

_WRITE_BUFFER = 64 * 1024


class IncomingMessage:
    """A message being received; becomes a queue entry when committed."""

    def __init__(self, store: QueueStore, envelope: Envelope) -> None:
        self._store = store
        self._envelope = envelope
        self.queue_id = envelope.queue_id
        self._data_temp = store._temp_path(self.queue_id, "df")
        self._control_temp = store._temp_path(self.queue_id, "qf")
        # Small messages stay in this buffer until commit, where the committer thread creates
        # the file; larger ones spill to the temp data file as soon as the buffer is full.
        self._buffer: bytearray | None = bytearray()
        self._file: BinaryIO | None = None
        self._control_fd: int | None = None
        self._size = 0
        self._state: Literal["open", "committing", "committed", "aborted"] = "open"

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    @property
    def envelope(self) -> Envelope:
        """The envelope that will be written (recipients may still be adjusted before commit)."""
        return self._envelope

    def _open_data_file(self) -> BinaryIO:
        fd = os.open(
            self._data_temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE
        )
        try:
            # Marks the temp file as in progress for clean_stale() in any process.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            file = open(fd, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115
        except BaseException:
            os.close(fd)
            unlink_if_exists(self._data_temp)
            raise
        self._file = file
        if self._buffer:
            file.write(self._buffer)
        self._buffer = None
        return file

    def content_in_memory(self) -> bytes | None:
        """The whole message so far if it is still held in memory (small messages), else None."""
        return bytes(self._buffer) if self._buffer is not None else None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append to the message data (buffered; at most ~64 KiB are held in memory)."""
        if self._state != "open":
            raise QueueError(f"{self.queue_id}: message is {self._state}")
        if self._buffer is not None:
            self._buffer += data
            if len(self._buffer) >= _WRITE_BUFFER:
                self._open_data_file()
        else:
            assert self._file is not None
            self._file.write(data)
        self._size += len(data)

    def _request(self) -> CommitRequest:
        if self._state != "open":
            raise QueueError(f"{self.queue_id}: message is {self._state}")
        self._state = "committing"
        return CommitRequest(prepare=self._prepare)

    def _prepare(self) -> CommitRequest:
        """Write the files (in the committer thread); returns what to flush and rename."""
        store = self._store
        if store.control_path(self.queue_id).exists():  # never overwrite an entry
            raise FileExistsError(errno.EEXIST, "queue id in use", self.queue_id)
        self._envelope.size = self._size
        if self._buffer is not None:  # small: one file, control line and data
            self._envelope.inline = True
            fd = self._open_control_file()
            write_all(fd, envelope_to_json(self._envelope) + self._buffer)
            return CommitRequest(
                files=[fd],
                renames=[(self._control_temp, store.control_path(self.queue_id))],
                directories=[store.directory],
            )
        file = self._file  # write() opened it when the buffer grew past its limit
        assert file is not None
        file.flush()
        fd = self._open_control_file()
        write_all(fd, envelope_to_json(self._envelope))
        return CommitRequest(
            files=[file.fileno(), fd],
            renames=[
                (self._data_temp, store.data_path(self.queue_id)),
                (self._control_temp, store.control_path(self.queue_id)),
            ],
            directories=[store.directory],
        )

    def _open_control_file(self) -> int:
        fd = os.open(
            self._control_temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE
        )
        self._control_fd = fd
        return fd

    def _close_files(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._control_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._control_fd)
            self._control_fd = None

    def _fail(self) -> None:
        """Undo everything, including renames a failed batch may have done."""
        self._close_files()
        self._buffer = None
        store = self._store
        for path in (
            store.control_path(self.queue_id),
            self._control_temp,
            store.data_path(self.queue_id),
            self._data_temp,
        ):
            with contextlib.suppress(OSError):
                unlink_if_exists(path)
        self._state = "aborted"

    def _settle(self, outcome: BaseException | None) -> None:
        if outcome is None:
            self._close_files()
            self._state = "committed"
        else:
            self._fail()

    def commit_blocking(self) -> str:
        """Make the message durable and visible; returns the queue id (synchronous callers)."""
        request = self._request()
        try:
            self._store.committer.submit(request).result()
        except BaseException as exc:
            self._settle(exc)
            raise
        self._settle(None)
        return self.queue_id

    async def commit(self) -> str:
        """Make the message durable and visible; returns the queue id.

        After this returns, the message survives ``kill -9``.  If the awaiting task is
        cancelled, the commit either did not happen (nothing is left behind) or completed
        (the message stays queued: better a duplicate than a loss); ``CancelledError``
        is raised in both cases.
        """
        request = self._request()
        try:
            future = self._store.committer.submit(request)
        except BaseException as exc:
            self._settle(exc)
            raise
        try:
            await wait_commit(future)
        except BaseException as exc:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._settle(None)  # cancelled after the batch completed it
            else:
                self._settle(exc)
            raise
        self._settle(None)
        return self.queue_id

    def abort(self) -> None:
        """Discard the message: nothing becomes visible.  A no-op once committed or aborted."""
        if self._state == "open" and self._file is None and self._control_fd is None:
            # Never left memory (small message): there is nothing on disk to remove.
            self._buffer = None
            self._state = "aborted"
        elif self._state == "open":
            self._fail()
        elif self._state == "committing":
            raise QueueError(f"{self.queue_id}: abort() during commit")

    def __enter__(self) -> IncomingMessage:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state == "open":
            self.abort()
