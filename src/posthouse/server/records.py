"""Connection records: who is connected, from where, to which service, in ``proc/``.

Like Cyrus's ``proc/`` directory, an administrator (or ``cyradm``) can see
every live connection of every worker process: each process keeps one file,
``proc/PID``, with a line per connection (record name, protocol, client,
user, mailbox).  The file is rewritten off the event loop at most every
``interval`` seconds when something changed, so accepting a connection costs
no file-system work; a process's file is removed when it stops, and files of
processes that died are removed at start-up.

:func:`read_records` reads them back for ``posthouse status --connections``; an IMAP
session's mailbox is its internal name (``user.alice.Sent``), as in Cyrus's proc files.

The records say who is connected from where, so only the daemon's account may read
them: the directory is made mode 0700 (:func:`prepare_records_dir`, also called when a
registry is created) and each file is written 0600 (created with ``O_NOFOLLOW``, its mode
fixed through the descriptor), then renamed into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

_counter = itertools.count(1)


@dataclass
class ConnectionRecord:
    """One live connection."""

    protocol: str
    client: str
    registry: ConnectionRegistry | None = None
    user: str = ""
    mailbox: str = ""
    name: str = field(default_factory=lambda: f"{os.getpid()}-{next(_counter)}")

    def line(self) -> str:
        return f"{self.name}\t{self.protocol}\t{self.client}\t{self.user}\t{self.mailbox}\n"

    def update(self, *, user: str | None = None, mailbox: str | None = None) -> None:
        if user is not None:
            self.user = user
        if mailbox is not None:
            self.mailbox = mailbox
        if self.registry is not None:
            self.registry.changed()

    def remove(self) -> None:
        if self.registry is not None:
            self.registry.forget(self)


@dataclass(frozen=True)
class LiveConnection:
    """One line of a ``proc/PID`` file, as read back."""

    pid: int
    name: str
    protocol: str
    client: str
    user: str
    mailbox: str


def read_records(directory: Path) -> list[LiveConnection]:
    """Every live connection recorded under ``directory``, by process and record name.

    PermissionError when this account may not read them (only root and the daemon's may);
    a missing directory has none; files being replaced and malformed lines are skipped."""
    connections: list[LiveConnection] = []
    try:
        entries = sorted(directory.iterdir(), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue  # a temporary ".PID.tmp" being renamed into place
        try:
            text = entry.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue  # the process stopped meanwhile
        for line in text.splitlines():
            fields = line.split("\t")
            if len(fields) == 5:
                connections.append(LiveConnection(int(entry.name), *fields))
    return connections


def prepare_records_dir(directory: Path) -> None:
    """Create ``directory`` mode 0700, or take group and other access away from it.

    The mode is changed through a descriptor opened with ``O_NOFOLLOW`` and only when the
    directory belongs to this process's account (root may fix any)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077 and os.geteuid() in (0, st.st_uid):
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
    finally:
        os.close(fd)


class ConnectionRegistry:
    """This process's live connections, mirrored to ``proc/PID``."""

    def __init__(self, directory: Path | None, interval: float = 0.5) -> None:
        if directory is not None:
            with contextlib.suppress(OSError):  # records are informational: never fatal
                prepare_records_dir(directory)
        self.directory = directory
        self.interval = interval
        self._records: dict[str, ConnectionRecord] = {}
        self._flush_pending = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def path(self) -> Path | None:
        return self.directory / str(os.getpid()) if self.directory is not None else None

    def open(self, protocol: str, client: str) -> ConnectionRecord:
        record = ConnectionRecord(protocol, client, self)
        self._records[record.name] = record
        self.changed()
        return record

    def forget(self, record: ConnectionRecord) -> None:
        if self._records.pop(record.name, None) is not None:
            self.changed()

    def changed(self) -> None:
        if self.directory is None or self._flush_pending:
            return
        self._flush_pending = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush_pending = False
            return
        loop.call_later(self.interval, self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        self._flush_pending = False
        text = "".join(record.line() for record in self._records.values())
        await asyncio.to_thread(self._write, text)

    def _write(self, text: str) -> None:
        path = self.path
        if path is None:
            return
        temp = path.with_name(f".{path.name}.tmp")
        with contextlib.suppress(OSError):
            fd = os.open(
                temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            with open(fd, "w", encoding="utf-8") as out:
                os.fchmod(fd, 0o600)  # a leftover temporary file keeps its old mode otherwise
                out.write(text)
            os.replace(temp, path)

    def close(self) -> None:
        """The process stops: its file goes away."""
        path = self.path
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()


def remove_stale_records(directory: Path) -> int:
    """Delete the files of processes that no longer exist; returns how many."""
    removed = 0
    if not directory.is_dir():
        return 0
    for entry in directory.iterdir():
        pid_text = entry.name.lstrip(".").split("-", 1)[0].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                entry.unlink()
                removed += 1
        except PermissionError:
            continue
    return removed
