"""The durable mail queue: storage of messages waiting for delivery.

Principle: *durable before acknowledged*.  :meth:`IncomingMessage.commit` returns only when the
message's data and envelope are on stable storage and visible under their final names; the SMTP
server answers 250 after that, so a ``kill -9`` (or a crash of the machine, given a filesystem
that honours ``fsync``) at any later moment cannot lose the message.  Nothing lives only in one
process's memory: worker processes and command-line tools share the directory, and exclusive
access for delivery is arbitrated with real file locks.

On-disk format (one flat directory, by default mode 0775, files 0660)
---------------------------------------------------------------------
``ID.df``
    The message data: the raw bytes exactly as received (with the ``Received:`` header the
    server writes first), never rewritten.
``ID.qf``
    The control (envelope) file: one UTF-8 JSON object, ``{"v": 1, "queue_id": ID,
    "sender": ..., "recipients": [{"address", "original", "status", "attempts",
    "last_error", "next_attempt"}, ...], "received_at": <unix time>, "size": <bytes in
    ID.df>, "client_address", "helo", "auth_user", "body", "smtputf8", "protocol",
    "extra": {str: str}}``.  Readers reject any other ``"v"``.  It is replaced atomically
    (write a temporary file, fsync, rename over, fsync the directory), never edited in place.
``ID.df.tmp``, ``ID.qf.tmp``
    Temporary files: a message being received (its data file is ``flock``\\ ed by the
    receiving process) or a control file being rewritten.  Listing ignores them;
    :meth:`QueueStore.clean_stale` removes unlocked ones older than a day.

``ID`` is a :mod:`posthouse.mta.queueid` id (16 characters, sortable by arrival time).  Other
file names in the directory are ignored.

Commit order: the first 64 KiB of data are buffered in memory, the rest streamed to
``ID.df.tmp``; at commit the committer's thread (not the event loop: creating files can block
for a journal commit) writes what is left of the data and the control file ``ID.qf.tmp``; both
are ``fdatasync``\\ ed, renamed to ``ID.df`` then ``ID.qf`` (so the control
file, which makes the message a queue entry, appears last), and the directory is ``fsync``\\ ed,
the flushes being shared with concurrent commits through a
:class:`~posthouse.mta.groupcommit.GroupCommitter`.  (If the system crashes *before* commit
returned, i.e. for a message that was never acknowledged, an ``ID.df`` without control file
can remain; it is listed as damaged.)

Damaged entries: an id with a data file but no control file, a control file that cannot be
parsed, or a control file without data file, is listed by :meth:`QueueStore.list_entries` with
a ``problem`` and no envelope; listing never raises for them and the store never deletes them by
itself.

Locking: :meth:`QueueStore.claim` takes an exclusive ``flock`` on ``ID.qf`` (BSD locks, not
POSIX ``fcntl`` record locks: those are dropped when the process closes *any* descriptor of the
file, e.g. in :meth:`QueueStore.load`, and do not exclude two claims within one process).
Because :meth:`QueueStore.update` replaces the file, the new file is locked before it is
renamed into place, and a claimer that obtained the lock checks that the locked inode is still
the one named ``ID.qf`` (retrying otherwise; yielding None if it is gone).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from posthouse.mta.groupcommit import CommitRequest, GroupCommitter, wait_commit
from posthouse.mta.queueid import is_queue_id, new_queue_id

__all__ = [
    "CONTROL_VERSION",
    "CorruptControlFile",
    "Envelope",
    "IncomingMessage",
    "QueueEntry",
    "QueueEntryLocked",
    "QueueEntryNotFound",
    "QueueError",
    "QueueStore",
    "RecipientState",
    "envelope_from_json",
    "envelope_to_json",
]

CONTROL_VERSION = 1
DIR_MODE = 0o775
FILE_MODE = 0o660
STALE_AGE = 86400.0
_WRITE_BUFFER = 64 * 1024

RecipientStatus = Literal["pending", "deferred", "sent", "failed"]
_STATUSES = ("pending", "deferred", "sent", "failed")


class QueueError(Exception):
    """Base class of queue errors."""


class QueueEntryNotFound(QueueError, LookupError):
    """No such queue entry (or the requested file of it is missing)."""


class QueueEntryLocked(QueueError):
    """Another process (or claim) holds the entry."""


class CorruptControlFile(QueueError, ValueError):
    """A control file that cannot be parsed or has an unknown version."""


@dataclass
class RecipientState:
    """One recipient of a queued message and its delivery state."""

    address: str
    original: str | None = None
    status: RecipientStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    next_attempt: float = 0.0


@dataclass
class Envelope:
    """The contents of a control file."""

    queue_id: str
    sender: str
    recipients: list[RecipientState]
    received_at: float
    size: int
    client_address: str | None = None
    helo: str | None = None
    auth_user: str | None = None
    body: str | None = None
    smtputf8: bool = False
    protocol: str = "ESMTP"
    extra: dict[str, str] = field(default_factory=dict)


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


# -- control file (de)serialisation ----------------------------------------------------------


def envelope_to_json(envelope: Envelope) -> bytes:
    """Serialise ``envelope`` as a version-1 control file."""
    doc: dict[str, Any] = {"v": CONTROL_VERSION}
    doc.update(dataclasses.asdict(envelope))
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode(
        "utf-8", "surrogatepass"
    )


def _field(
    doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, optional: bool
) -> Any:
    if key not in doc:
        if optional:
            return None
        raise CorruptControlFile(f"missing field {key!r}")
    value = doc[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise CorruptControlFile(f"field {key!r} has the wrong type")
    if not isinstance(value, kind):
        raise CorruptControlFile(f"field {key!r} has the wrong type")
    return value


def _recipient_from(doc: Any) -> RecipientState:
    if not isinstance(doc, dict):
        raise CorruptControlFile("recipient is not an object")
    status = _field(doc, "status", str, optional=True) or "pending"
    if status not in _STATUSES:
        raise CorruptControlFile(f"unknown recipient status {status!r}")
    attempts = _field(doc, "attempts", int, optional=True)
    next_attempt = _field(doc, "next_attempt", (int, float), optional=True)
    return RecipientState(
        address=_field(doc, "address", str, optional=False),
        original=_field(doc, "original", str, optional=True),
        status=cast(RecipientStatus, status),
        attempts=attempts or 0,
        last_error=_field(doc, "last_error", str, optional=True),
        next_attempt=float(next_attempt or 0.0),
    )


def envelope_from_json(data: bytes, queue_id: str | None = None) -> Envelope:
    """Parse a control file; raises :class:`CorruptControlFile` for anything unexpected."""
    try:
        doc = json.loads(data.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptControlFile(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CorruptControlFile("not a JSON object")
    version = doc.get("v")
    if version != CONTROL_VERSION:
        raise CorruptControlFile(f"unsupported version {version!r}")
    qid = _field(doc, "queue_id", str, optional=False)
    if queue_id is not None and qid != queue_id:
        raise CorruptControlFile(f"queue id {qid!r} does not match the file name")
    recipients = _field(doc, "recipients", list, optional=False)
    extra = _field(doc, "extra", dict, optional=True) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise CorruptControlFile("field 'extra' must map strings to strings")
    size = _field(doc, "size", int, optional=False)
    if size < 0:
        raise CorruptControlFile("negative size")
    return Envelope(
        queue_id=qid,
        sender=_field(doc, "sender", str, optional=False),
        recipients=[_recipient_from(r) for r in recipients],
        received_at=float(_field(doc, "received_at", (int, float), optional=False)),
        size=size,
        client_address=_field(doc, "client_address", str, optional=True),
        helo=_field(doc, "helo", str, optional=True),
        auth_user=_field(doc, "auth_user", str, optional=True),
        body=_field(doc, "body", str, optional=True),
        smtputf8=bool(_field(doc, "smtputf8", bool, optional=True)),
        protocol=_field(doc, "protocol", str, optional=True) or "ESMTP",
        extra=dict(extra),
    )


# -- small file helpers ----------------------------------------------------------------------


def _read_fd(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


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

    def _sync_dir(self) -> None:
        self.committer.commit_blocking(CommitRequest(directories=[self.directory]))

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

    def list_entries(self) -> Iterator[QueueEntry]:
        """Every entry in id (arrival) order, damaged ones with a ``problem``; never raises
        for damaged or concurrently removed entries.  Temporary files are ignored."""
        found: dict[str, dict[str, os.stat_result]] = {}
        with os.scandir(self.directory) as it:
            for dent in it:
                stem, dot, kind = dent.name.rpartition(".")
                if not dot or kind not in ("qf", "df") or not is_queue_id(stem):
                    continue
                try:
                    st = dent.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.setdefault(stem, {})[kind] = st
        for queue_id in sorted(found):
            entry = self._entry(queue_id, found[queue_id])
            if entry is not None:
                yield entry

    def _entry(self, queue_id: str, stats: dict[str, os.stat_result]) -> QueueEntry | None:
        qf, df = stats.get("qf"), stats.get("df")
        data_size = df.st_size if df is not None else 0
        envelope: Envelope | None = None
        problem: str | None = None
        if qf is not None:
            try:
                envelope = self.load(queue_id)
            except QueueEntryNotFound:
                qf = None  # removed since the scan (delivered meanwhile?)
                if not self.data_path(queue_id).exists():
                    return None
            except CorruptControlFile as exc:
                problem = f"corrupt control file: {exc}"
            except OSError as exc:
                problem = f"unreadable control file: {exc.strerror}"
        if qf is None:
            problem = "no control file"
        elif problem is None and df is None:
            if self.data_path(queue_id).exists():
                df = os.stat(self.data_path(queue_id))  # raced with a commit
                data_size = df.st_size
            else:
                problem = "no data file"
        if problem is None and envelope is not None and envelope.size != data_size:
            problem = f"data file has {data_size} bytes, control file says {envelope.size}"
        mtime_from = qf if qf is not None else df
        mtime = mtime_from.st_mtime if mtime_from is not None else 0.0
        return QueueEntry(queue_id, envelope, problem, data_size, mtime)

    def load(self, queue_id: str) -> Envelope:
        """Read the control file of ``queue_id`` (no lock taken)."""
        try:
            data = self.control_path(queue_id).read_bytes()
        except FileNotFoundError:
            raise QueueEntryNotFound(queue_id) from None
        return envelope_from_json(data, queue_id)

    def open_data(self, queue_id: str) -> BinaryIO:
        """Open the message data of ``queue_id`` for reading (binary)."""
        try:
            return open(self.data_path(queue_id), "rb")
        except FileNotFoundError:
            raise QueueEntryNotFound(f"{queue_id}: no data file") from None

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
            if _same_file(current, os.fstat(fd)):
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
            envelope = envelope_from_json(_read_fd(fd), queue_id)
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
        if self._held_fd(queue_id) is None:
            raise QueueError(f"{queue_id}: update() without holding the claim")
        temp = self._temp_path(queue_id, "qf")
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            # Lock the new inode before it gets the real name, so the claim carries over.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write_all(fd, envelope_to_json(envelope))
            self.committer.commit_blocking(
                CommitRequest(files=[fd], renames=[(temp, path)], directories=[self.directory])
            )
        except BaseException:
            os.close(fd)
            _unlink(temp)
            raise
        with self._lock:
            old = self._claims.get(queue_id)
            self._claims[queue_id] = (fd, threading.get_ident())
        if old is not None:
            os.close(old[0])

    def remove(self, queue_id: str) -> None:
        """Remove an entry (delivered): control file first, then data, then flush the directory.

        Normally called while holding the claim.  Without it, the claim is taken for the
        moment (:class:`QueueEntryLocked` if someone else holds it); an entry without control
        file just loses its data file.
        """
        qf, df = self.control_path(queue_id), self.data_path(queue_id)
        if self._held_fd(queue_id) is not None:
            _unlink(qf)
            _unlink(df)
        else:
            fd = self._lock_control(queue_id, blocking=False)
            if fd is None:
                if qf.exists():
                    raise QueueEntryLocked(queue_id)
                if not _unlink(df):
                    raise QueueEntryNotFound(queue_id)
            else:
                try:
                    _unlink(qf)
                    _unlink(df)
                finally:
                    os.close(fd)
        self._sync_dir()

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
                    if _same_file(os.stat(path), st):
                        os.unlink(path)
                        removed.append(path)
            finally:
                os.close(fd)
        return removed


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
            _unlink(self._data_temp)
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
        file = self._file if self._file is not None else self._open_data_file()
        file.flush()
        self._envelope.size = self._size
        fd = os.open(
            self._control_temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE
        )
        self._control_fd = fd
        _write_all(fd, envelope_to_json(self._envelope))
        return CommitRequest(
            files=[file.fileno(), fd],
            renames=[
                (self._data_temp, store.data_path(self.queue_id)),
                (self._control_temp, store.control_path(self.queue_id)),
            ],
            directories=[store.directory],
        )

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
                _unlink(path)
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
