"""The durable mail queue: storage of messages waiting for delivery.

Principle: *durable before acknowledged*.  :meth:`IncomingMessage.commit` returns only when the
message's data and envelope are on stable storage and visible under their final names; the SMTP
server answers 250 after that, so a ``kill -9`` (or a crash of the machine, given a filesystem
that honours ``fsync``) at any later moment cannot lose the message.  Nothing lives only in one
process's memory: worker processes and command-line tools share the directory, and exclusive
access for delivery is arbitrated with real file locks.

On-disk format (one flat directory, by default mode 0775, files 0660)
---------------------------------------------------------------------
``ID.qf``
    The control (envelope) file: one line of UTF-8 JSON, whose format and codec
    :mod:`posthouse.mta.queue.control_file` owns, followed, for a message that was small enough to
    be held in memory while it was received (version 2, "inline"), by the message data itself:
    then the whole message is this one file, as DESIGN.md's queue has it.  It is replaced
    atomically (write a temporary file, fsync, rename over, fsync the directory), never edited
    in place; an inline message's data is copied into the new file.
``ID.df``
    The message data of a larger message (version-1 control file): the raw bytes exactly as
    received (with the ``Received:`` header the server writes first), never rewritten.
``ID.df.tmp``, ``ID.qf.tmp``
    Temporary files: a message being received (its data file is ``flock``\\ ed by the
    receiving process) or a control file being rewritten.  Listing ignores them;
    :meth:`QueueStore.clean_stale` removes unlocked ones older than a day.

``ID`` is a :mod:`posthouse.mta.queue.ids` id (16 characters, sortable by arrival time).  Other
file names in the directory are ignored.

Commit order: see :mod:`posthouse.mta.queue.incoming`, which owns receiving
(:class:`IncomingMessage`): data then control file are flushed and renamed into place, the
control file (which makes the message a queue entry) last.

Damaged entries: an id with a data file but no control file, a control file that cannot be
parsed, a version-1 control file without data file, or data of another size than the envelope
says, is listed by :meth:`QueueStore.list_entries` with
a ``problem`` and no envelope; listing never raises for them and the store never deletes them by
itself.

Locking: :meth:`QueueStore.claim` takes an exclusive ``flock`` on ``ID.qf`` (BSD locks, not
POSIX ``fcntl`` record locks: those are dropped when the process closes *any* descriptor of the
file, e.g. in :meth:`QueueStore.load`, and do not exclude two claims within one process).
Because :meth:`QueueStore.update` replaces the file, the new file is locked before it is
renamed into place, and a claimer that obtained the lock checks that the locked inode is still
the one named ``ID.qf`` (retrying otherwise; yielding None if it is gone).

This module owns :class:`QueueStore` (listing, loading, claiming, updating, removing and
housekeeping).  The envelope types and codec (:mod:`posthouse.mta.queue.control_file`) and
:class:`IncomingMessage` (:mod:`posthouse.mta.queue.incoming`) are re-exported here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from posthouse.mta.queue.control_file import (
    CONTROL_VERSION,
    CorruptControlFile,
    Envelope,
    QueueError,
    RecipientState,
    envelope_from_json,
    envelope_to_json,
    inline_data,
    parse_control,
)
from posthouse.mta.queue.control_file import RecipientStatus as RecipientStatus
from posthouse.mta.queue.files import DIR_MODE as DIR_MODE
from posthouse.mta.queue.files import FILE_MODE as FILE_MODE
from posthouse.mta.queue.files import read_fd, same_file, unlink_if_exists, write_all
from posthouse.mta.queue.groupcommit import CommitRequest, GroupCommitter
from posthouse.mta.queue.ids import QUEUE_ID_ALPHABET, QUEUE_ID_LENGTH, is_queue_id, new_queue_id
from posthouse.mta.queue.incoming import IncomingMessage

__all__ = [
    "CONTROL_VERSION",
    "CorruptControlFile",
    "Envelope",
    "IncomingMessage",
    "QueueEntry",
    "QueueEntryLocked",
    "QueueEntryNotFound",
    "QueueError",
    "QueueFiles",
    "QueueStore",
    "RecipientState",
    "envelope_from_json",
    "envelope_to_json",
    "is_queue_file",
    "scan_queue_files",
]

STALE_AGE = 86400.0


class QueueEntryNotFound(QueueError, LookupError):
    """No such queue entry (or the requested file of it is missing)."""


class QueueEntryLocked(QueueError):
    """Another process (or claim) holds the entry."""


@dataclass(frozen=True)
class QueueEntry:
    """One queue entry as listed; ``problem`` is set (and ``envelope`` may be None) if damaged."""

    queue_id: str
    envelope: Envelope | None
    problem: str | None
    data_size: int
    mtime: float

    @property
    def damaged(self) -> bool:
        return self.problem is not None


@dataclass(frozen=True)
class QueueFiles:
    """What one scan of the queue directory found: the ids with a regular control or data
    file, sorted, and the inode number of each regular control file by id."""

    ids: list[str]
    controls: dict[str, int]


#: Whether a file name is one :meth:`QueueStore.list_entries` considers: an id plus .qf or .df.
is_queue_file = re.compile(
    f"[{re.escape(QUEUE_ID_ALPHABET)}]{{{QUEUE_ID_LENGTH}}}\\.[qd]f", re.ASCII
).fullmatch


def scan_queue_files(directory: Path) -> QueueFiles:
    """One ``readdir`` pass over ``directory`` (file types and inode numbers come with the
    names: no ``stat`` calls)."""
    ids: set[str] = set()
    controls: dict[str, int] = {}
    with os.scandir(directory) as it:
        for dent in it:
            name = dent.name
            if is_queue_file(name) and dent.is_file(follow_symlinks=False):
                stem = name[:-3]
                ids.add(stem)
                if name[-2] == "q":
                    controls[stem] = dent.inode()
    return QueueFiles(sorted(ids), controls)


_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW


def _read_at(dir_fd: int, name: str) -> bytes:
    """The content of the regular file ``name`` in the directory ``dir_fd``."""
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 16384):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _data_file(dir_fd: int, queue_id: str) -> os.stat_result | None:
    """``lstat`` of the entry's data file; None unless it is a regular file."""
    try:
        st = os.stat(f"{queue_id}.df", dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _mtime(dir_fd: int, queue_id: str, df: os.stat_result | None) -> float:
    """When a damaged entry was written: its data file's time, else its control file's."""
    if df is not None:
        return df.st_mtime
    try:
        return os.stat(f"{queue_id}.qf", dir_fd=dir_fd, follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _entry(dir_fd: int, queue_id: str, *, has_control: bool) -> QueueEntry | None:
    """The entry ``queue_id`` as it is now; None if it has gone since the directory scan."""
    envelope: Envelope | None = None
    problem: str | None = None
    inline_size: int | None = None
    if has_control:
        try:
            envelope, inline = parse_control(_read_at(dir_fd, f"{queue_id}.qf"), queue_id)
            inline_size = len(inline) if envelope.inline else None
        except FileNotFoundError:
            has_control = False  # removed since the scan (delivered meanwhile?)
        except CorruptControlFile as exc:
            problem = f"corrupt control file: {exc}"
        except OSError as exc:
            problem = f"unreadable control file: {exc.strerror}"
    if inline_size is not None:
        assert envelope is not None
        if envelope.size != inline_size:
            problem = f"control file holds {inline_size} bytes of data, says {envelope.size}"
        return QueueEntry(queue_id, envelope, problem, inline_size, envelope.received_at)
    df = _data_file(dir_fd, queue_id)
    if not has_control:
        if df is None:
            return None
        problem = "no control file"
    data_size = df.st_size if df is not None else 0
    if envelope is None:
        return QueueEntry(queue_id, None, problem, data_size, _mtime(dir_fd, queue_id, df))
    if df is None:
        problem = "no data file"
    elif envelope.size != data_size:
        problem = f"data file has {data_size} bytes, control file says {envelope.size}"
    return QueueEntry(queue_id, envelope, problem, data_size, envelope.received_at)


# -- the store -------------------------------------------------------------------------------


class QueueStore:
    """A queue directory shared by any number of threads and processes."""

    def __init__(self, directory: Path, committer: GroupCommitter | None = None) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=DIR_MODE, parents=True)
        except FileExistsError:
            if not self.directory.is_dir():
                raise
        else:
            os.chmod(self.directory, DIR_MODE)  # mkdir's mode is filtered by the umask
        self._committer = committer
        self._owns_committer = False
        self._lock = threading.Lock()
        # queue id -> (locked control-file descriptor, owning thread id)
        self._claims: dict[str, tuple[int, int]] = {}

    # -- plumbing --

    @property
    def committer(self) -> GroupCommitter:
        """The group committer used for flushes (a private one unless one was given)."""
        with self._lock:
            if self._committer is None:
                self._committer = GroupCommitter()
                self._owns_committer = True
            return self._committer

    def close(self) -> None:
        """Stop the private committer, if one was started (claims are not affected)."""
        with self._lock:
            committer, owned = self._committer, self._owns_committer
            if owned:
                self._committer = None
                self._owns_committer = False
        if owned and committer is not None:
            committer.close()

    def path_for(self, queue_id: str, kind: Literal["qf", "df"] = "qf") -> Path:
        """The path of the control (``"qf"``) or data (``"df"``) file of ``queue_id``."""
        if not is_queue_id(queue_id):
            raise QueueEntryNotFound(f"not a queue id: {queue_id!r}")
        return self.directory / f"{queue_id}.{kind}"

    def control_path(self, queue_id: str) -> Path:
        return self.path_for(queue_id, "qf")

    def data_path(self, queue_id: str) -> Path:
        return self.path_for(queue_id, "df")

    def _temp_path(self, queue_id: str, kind: Literal["qf", "df"]) -> Path:
        return self.directory / f"{queue_id}.{kind}.tmp"

    # -- receiving --

    def new_message(
        self,
        sender: str,
        recipients: Sequence[str | RecipientState],
        *,
        client_address: str | None = None,
        helo: str | None = None,
        auth_user: str | None = None,
        body: str | None = None,
        smtputf8: bool = False,
        protocol: str = "ESMTP",
        extra: Mapping[str, str] | None = None,
        received_at: float | None = None,
    ) -> IncomingMessage:
        """Start receiving a message; write its data, then commit (or abort) it."""
        rcpts = [
            dataclasses.replace(r) if isinstance(r, RecipientState) else RecipientState(r)
            for r in recipients
        ]
        queue_id = new_queue_id()
        envelope = Envelope(
            queue_id=queue_id,
            sender=sender,
            recipients=rcpts,
            received_at=time.time() if received_at is None else received_at,
            size=0,
            client_address=client_address,
            helo=helo,
            auth_user=auth_user,
            body=body,
            smtputf8=smtputf8,
            protocol=protocol,
            extra=dict(extra or {}),
        )
        return IncomingMessage(self, envelope)

    # -- reading --

    def queue_ids(self) -> list[str]:
        """Sorted ids of all entries that have a control file (cheap: one directory scan)."""
        ids = []
        with os.scandir(self.directory) as it:
            for entry in it:
                name = entry.name
                if name.endswith(".qf") and is_queue_id(name[:-3]):
                    ids.append(name[:-3])
        ids.sort()
        return ids

    def list_entries(self, files: QueueFiles | None = None) -> Iterator[QueueEntry]:
        """Every entry in id (arrival) order, damaged ones with a ``problem``; never raises
        for damaged or concurrently removed entries.  Temporary files are ignored.

        The entries are those of ``files`` (by default, a :func:`scan_queue_files` now), each
        as it is when reached: one read of its control file and one ``lstat`` of its data file,
        both relative to an open descriptor of the directory."""
        if files is None:
            files = scan_queue_files(self.directory)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            controls = files.controls
            for queue_id in files.ids:
                entry = _entry(dir_fd, queue_id, has_control=queue_id in controls)
                if entry is not None:
                    yield entry
        finally:
            os.close(dir_fd)

    def load(self, queue_id: str) -> Envelope:
        """Read the control file of ``queue_id`` (no lock taken)."""
        try:
            data = self.control_path(queue_id).read_bytes()
        except FileNotFoundError:
            raise QueueEntryNotFound(queue_id) from None
        return parse_control(data, queue_id)[0]

    def open_data(self, queue_id: str) -> BinaryIO:
        """Open the message data of ``queue_id`` for reading (binary): ``ID.df``, or the data
        after the control line of an inline entry, as a real file (its descriptor's offset is
        at the data, so a program can read it as its standard input)."""
        try:
            return open(self.data_path(queue_id), "rb")
        except FileNotFoundError:
            pass
        fd = self._open_inline(queue_id)
        try:
            inline = self._inline(fd, queue_id)
            os.lseek(fd, os.fstat(fd).st_size - len(inline), os.SEEK_SET)
            return open(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def read_data(self, queue_id: str) -> bytes:
        """The whole message data of ``queue_id`` (for small messages)."""
        try:
            with open(self.data_path(queue_id), "rb") as file:
                return file.read()
        except FileNotFoundError:
            pass
        fd = self._open_inline(queue_id)
        try:
            return self._inline(fd, queue_id)
        finally:
            os.close(fd)

    def _open_inline(self, queue_id: str) -> int:
        try:
            return os.open(self.control_path(queue_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise QueueEntryNotFound(f"{queue_id}: no data file") from None

    @staticmethod
    def _inline(fd: int, queue_id: str) -> bytes:
        data = inline_data(read_fd(fd), queue_id)
        if data is None:
            raise QueueEntryNotFound(f"{queue_id}: no data file")
        return data

    # -- claiming, updating, removing --

    def _lock_control(self, queue_id: str, blocking: bool) -> int | None:
        """Open and flock the current ``ID.qf``; None if missing or (non-blocking) locked."""
        path = self.control_path(queue_id)
        while True:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                current = os.stat(path)
            except BlockingIOError:
                os.close(fd)
                return None
            except FileNotFoundError:
                os.close(fd)  # removed while we waited
                return None
            except BaseException:
                os.close(fd)
                raise
            if same_file(current, os.fstat(fd)):
                return fd
            os.close(fd)  # replaced by update() while we waited: lock the new one

    @contextlib.contextmanager
    def claim(self, queue_id: str, *, blocking: bool = False) -> Iterator[Envelope | None]:
        """Hold the entry exclusively (for delivery) while inside.

        Yields the envelope read after locking, or None if the entry does not exist (any more)
        or, when not ``blocking``, another process or claim holds it.  Raises
        :class:`CorruptControlFile` if the control file cannot be parsed.
        """
        me = threading.get_ident()
        with self._lock:
            held = self._claims.get(queue_id)
        if held is not None and held[1] == me:
            raise QueueError(f"{queue_id}: already claimed by this thread")
        fd = self._lock_control(queue_id, blocking)
        if fd is None:
            yield None
            return
        with self._lock:
            self._claims[queue_id] = (fd, me)
        try:
            envelope = parse_control(read_fd(fd), queue_id)[0]
            yield envelope
        finally:
            with self._lock:
                current = self._claims.pop(queue_id, None)
            if current is not None:
                os.close(current[0])  # update() may have swapped the descriptor

    def _held_fd(self, queue_id: str) -> int | None:
        with self._lock:
            held = self._claims.get(queue_id)
        return held[0] if held is not None else None

    def update(self, envelope: Envelope) -> None:
        """Atomically replace the control file; the caller must hold the claim."""
        queue_id = envelope.queue_id
        path = self.control_path(queue_id)
        held = self._held_fd(queue_id)
        if held is None:
            raise QueueError(f"{queue_id}: update() without holding the claim")
        content = envelope_to_json(envelope)
        if envelope.inline:  # the data goes along into the new file
            content += parse_control(read_fd(held), queue_id)[1]
        temp = self._temp_path(queue_id, "qf")
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            # Lock the new inode before it gets the real name, so the claim carries over.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            write_all(fd, content)
            self.committer.commit_blocking(
                CommitRequest(files=[fd], renames=[(temp, path)], directories=[self.directory])
            )
        except BaseException:
            os.close(fd)
            unlink_if_exists(temp)
            raise
        with self._lock:
            old = self._claims.get(queue_id)
            self._claims[queue_id] = (fd, threading.get_ident())
        if old is not None:
            os.close(old[0])

    def remove(self, queue_id: str) -> None:
        """Remove an entry (delivered): control file first, then data.

        The directory is not flushed: after a crash a delivered entry may come back and be
        delivered a second time, never lost (as in Postfix).  This saves an fsync per batch.

        Normally called while holding the claim.  Without it, the claim is taken for the
        moment (:class:`QueueEntryLocked` if someone else holds it); an entry without control
        file just loses its data file.
        """
        qf, df = self.control_path(queue_id), self.data_path(queue_id)
        if self._held_fd(queue_id) is not None:
            unlink_if_exists(qf)
            unlink_if_exists(df)
        else:
            fd = self._lock_control(queue_id, blocking=False)
            if fd is None:
                if qf.exists():
                    raise QueueEntryLocked(queue_id)
                if not unlink_if_exists(df):
                    raise QueueEntryNotFound(queue_id)
            else:
                try:
                    unlink_if_exists(qf)
                    unlink_if_exists(df)
                finally:
                    os.close(fd)

    # -- housekeeping --

    def clean_stale(self, max_age: float = STALE_AGE, *, now: float | None = None) -> list[Path]:
        """Remove temporary files older than ``max_age`` seconds that no process is using
        (left by crashed receivers or writers); returns the removed paths."""
        cutoff = (time.time() if now is None else now) - max_age
        removed: list[Path] = []
        with os.scandir(self.directory) as it:
            candidates = [
                Path(d.path)
                for d in it
                if d.name.endswith((".df.tmp", ".qf.tmp")) and is_queue_id(d.name[:-7])
            ]
        for path in candidates:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                st = os.fstat(fd)
                if st.st_mtime >= cutoff:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # still being written
                with contextlib.suppress(FileNotFoundError):
                    if same_file(os.stat(path), st):
                        os.unlink(path)
                        removed.append(path)
            finally:
                os.close(fd)
        return removed
