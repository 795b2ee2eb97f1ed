"""Mail statistics per delivery agent: the ``statistics`` file and ``posthouse mailstats``.

Like sendmail's ``sendmail.st``, the file holds, for each delivery agent ("mailer": ``local``,
``smtp``, ``esmtp``, ``relay``, ``prog``, ``file``... any name), the number of messages
received from it and sent to it, their sizes, and the numbers of rejected and discarded
messages, counted since a start time.

File format: one line of UTF-8 JSON, ``{"v": 1, "since": <unix time>, "agents": {name:
[msgsfr, bytes_from, msgsto, bytes_to, msgsrej, msgsdis], ...}}``, agents in order of first
appearance (their position is the ``M`` column of ``mailstats``).  Sizes are kept in bytes
(``mailstats`` shows kilobytes, rounded up).  Anything after the first line is ignored, so a
rewrite that leaves stale bytes behind (a crash between writing and truncating) stays readable.

Recording is cheap and safe for any number of processes: a :class:`Statistics` object only
accumulates *increments* in memory; :meth:`Statistics.flush` opens the file, takes an exclusive
``flock``, reads the totals, adds the increments, writes the result back and forgets the
increments.  The recording methods flush by themselves when ``flush_interval`` seconds have
passed since the last flush or ``max_pending`` events are waiting (defaults: one second, 100
events), so the cost per message is a dictionary update, plus one small locked
read-modify-write per second per process.  Call :meth:`Statistics.flush` periodically (e.g. from
a timer) so that increments do not wait for the next event, and :meth:`Statistics.close` at
shutdown.  With ``flush_interval=0`` every event is written at once.

Resetting (section 12.10 of the administration chapter, and sendmail): truncate the file to
zero bytes (``cp /dev/null statistics`` or ``: > statistics``) or remove it, at any time, with
the daemon running.  Because writers hold only the increments since their last flush, and
reopen the file at each flush, the next flush finds an empty (or new) file and starts from
zero: stale totals are never written back.  The new counting period starts at the time of the
truncation (the empty file's modification time) or, for a removed file, at its re-creation.
Increments recorded before the reset but flushed after it (at most ``flush_interval`` seconds'
worth) count in the new period.  ``posthouse mailstats -p`` prints and resets in one step
under the lock.  A truncation by another program that lands between a writer's read and write
can be undone by that write (sendmail has the same window; it is a few microseconds wide).

A file that cannot be parsed raises :class:`CorruptStatistics` when read; writers log a
warning and start again from zero rather than stop counting.  Objects are thread-safe; after a
``fork`` the child drops the increments it inherited (the parent flushes them).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMNS",
    "STATS_VERSION",
    "AgentStats",
    "CorruptStatistics",
    "Statistics",
    "StatsTable",
    "format_stats",
    "format_stats_program",
]

log = logging.getLogger(__name__)

STATS_VERSION = 1
FILE_MODE = 0o660
#: The counters of one agent, in file order.
COLUMNS = ("msgsfr", "bytes_from", "msgsto", "bytes_to", "msgsrej", "msgsdis")
_MSGSFR, _BYTES_FROM, _MSGSTO, _BYTES_TO, _MSGSREJ, _MSGSDIS = range(len(COLUMNS))


class CorruptStatistics(ValueError):
    """The statistics file exists but is not a statistics file of a known version."""


@dataclass(frozen=True)
class AgentStats:
    """The counters of one delivery agent (sizes in bytes)."""

    name: str
    msgsfr: int = 0
    bytes_from: int = 0
    msgsto: int = 0
    bytes_to: int = 0
    msgsrej: int = 0
    msgsdis: int = 0

    def counters(self) -> tuple[int, int, int, int, int, int]:
        return (
            self.msgsfr,
            self.bytes_from,
            self.msgsto,
            self.bytes_to,
            self.msgsrej,
            self.msgsdis,
        )


@dataclass(frozen=True)
class StatsTable:
    """The statistics as read: counting period start and one row per agent (file order)."""

    since: float
    agents: tuple[AgentStats, ...]

    @property
    def total(self) -> AgentStats:
        sums = [sum(column) for column in zip(*(a.counters() for a in self.agents), strict=True)]
        return AgentStats("", *sums) if sums else AgentStats("")

    def agent(self, name: str) -> AgentStats:
        """The counters of ``name`` (zeros if it has none)."""
        for row in self.agents:
            if row.name == name:
                return row
        return AgentStats(name)


# -- the file --------------------------------------------------------------------------------


def _parse(data: bytes) -> tuple[float, dict[str, list[int]]]:
    line = data.split(b"\n", 1)[0]
    try:
        doc = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptStatistics(f"not a statistics file: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != STATS_VERSION:
        raise CorruptStatistics("not a statistics file of a known version")
    since, agents = doc.get("since"), doc.get("agents")
    if (
        isinstance(since, bool)
        or not isinstance(since, int | float)
        or not isinstance(agents, dict)
    ):
        raise CorruptStatistics("malformed statistics file")
    table: dict[str, list[int]] = {}
    for name, row in agents.items():
        if (
            not isinstance(row, list)
            or len(row) != len(COLUMNS)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in row)
        ):
            raise CorruptStatistics(f"malformed counters for {name!r}")
        table[name] = row
    return float(since), table


def _serialise(since: float, agents: dict[str, list[int]]) -> bytes:
    doc: dict[str, Any] = {"v": STATS_VERSION, "since": since, "agents": agents}
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    offset = 0
    while offset < len(data):
        offset += os.pwrite(fd, data[offset:], offset)
    os.ftruncate(fd, len(data))


@contextlib.contextmanager
def _locked(path: Path, *, write: bool) -> Iterator[int | None]:
    """The file's descriptor under ``flock`` (None when reading a missing file)."""
    flags = (os.O_RDWR | os.O_CREAT) if write else os.O_RDONLY
    try:
        fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    except FileNotFoundError:
        if write:
            raise
        yield None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _since_of_empty(fd: int) -> float:
    """An empty file's counting period starts when it was emptied (or created)."""
    return os.fstat(fd).st_mtime


def _table(fd: int) -> StatsTable:
    data = _read_all(fd)
    if not data:
        return StatsTable(_since_of_empty(fd), ())
    since, agents = _parse(data)
    return StatsTable(since, tuple(AgentStats(n, *row) for n, row in agents.items()))


# -- the recorder and reader -----------------------------------------------------------------


class Statistics:
    """Records into, and reads, the statistics file at ``path``; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        flush_interval: float = 1.0,
        max_pending: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, list[int]] = {}
        self._pending_events = 0
        self._last_flush = clock()
        self._pid = os.getpid()

    # -- recording --

    def _add(self, agent: str, column: int, size_column: int | None, size: int) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent owns what was pending
                self._pending.clear()
                self._pending_events = 0
                self._pid = os.getpid()
            row = self._pending.get(agent)
            if row is None:
                row = self._pending[agent] = [0] * len(COLUMNS)
            row[column] += 1
            if size_column is not None:
                row[size_column] += max(0, size)
            self._pending_events += 1
            due = (
                self._pending_events >= self.max_pending
                or self._clock() - self._last_flush >= self.flush_interval
            )
        if due:
            self.flush()

    def record_received(self, agent: str, size: int) -> None:
        """A message of ``size`` bytes was received from ``agent`` (``msgsfr``, ``bytes_from``)."""
        self._add(agent, _MSGSFR, _BYTES_FROM, size)

    def record_sent(self, agent: str, size: int) -> None:
        """A message of ``size`` bytes was delivered by ``agent`` (``msgsto``, ``bytes_to``)."""
        self._add(agent, _MSGSTO, _BYTES_TO, size)

    def record_rejected(self, agent: str) -> None:
        """A message from ``agent`` was rejected (``msgsrej``)."""
        self._add(agent, _MSGSREJ, None, 0)

    def record_discarded(self, agent: str) -> None:
        """A message from ``agent`` was accepted and discarded (``msgsdis``)."""
        self._add(agent, _MSGSDIS, None, 0)

    @property
    def pending_events(self) -> int:
        """Events recorded but not yet written to the file."""
        with self._lock:
            return self._pending_events

    def flush(self) -> None:
        """Add the pending increments to the file (creating it if needed).

        On an I/O error the increments stay pending (and the error is raised), so they are
        written by a later flush.
        """
        with self._lock:
            self._last_flush = self._clock()
            if self._pid != os.getpid():
                self._pending.clear()
                self._pending_events = 0
                self._pid = os.getpid()
            if not self._pending:
                return
            pending = self._pending
            self._pending = {}
            self._pending_events = 0
            try:
                self._apply(pending)
            except BaseException:
                for agent, row in pending.items():  # put them back for the next flush
                    mine = self._pending.setdefault(agent, [0] * len(COLUMNS))
                    for i, value in enumerate(row):
                        mine[i] += value
                    self._pending_events += 1
                raise

    def _apply(self, pending: dict[str, list[int]]) -> None:
        with _locked(self.path, write=True) as fd:
            assert fd is not None
            data = _read_all(fd)
            if data:
                try:
                    since, agents = _parse(data)
                except CorruptStatistics as exc:
                    log.warning("%s: %s; counting from zero", self.path, exc)
                    since, agents = time.time(), {}
            else:
                since, agents = _since_of_empty(fd), {}
            for agent, row in pending.items():
                total = agents.setdefault(agent, [0] * len(COLUMNS))
                for i, value in enumerate(row):
                    total[i] += value
            _write_all(fd, _serialise(since, agents))

    def close(self) -> None:
        """Flush what is pending (call at shutdown)."""
        self.flush()

    def __enter__(self) -> Statistics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading --

    def read(self) -> StatsTable:
        """The totals in the file (not including this object's unflushed increments).

        A missing file reads as no counts since now; an empty one as no counts since it was
        emptied.  Raises :class:`CorruptStatistics` for a file that is not a statistics file.
        """
        with _locked(self.path, write=False) as fd:
            if fd is None:
                return StatsTable(time.time(), ())
            return _table(fd)

    def read_and_reset(self) -> StatsTable:
        """Read the totals and empty the file, atomically with respect to writers."""
        with _locked(self.path, write=True) as fd:
            assert fd is not None
            table = _table(fd)
            os.ftruncate(fd, 0)
        return table


# -- output ----------------------------------------------------------------------------------


def _kbytes(size: int) -> int:
    return (size + 1023) // 1024


def _printable(name: str) -> str:
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def format_stats(table: StatsTable) -> Iterator[str]:
    """The human-readable ``mailstats`` report (lines without newlines)."""
    yield f"Statistics from {time.ctime(table.since)}"
    yield " M   msgsfr  bytes_from   msgsto    bytes_to  msgsrej msgsdis  Mailer"

    def row(label: str, a: AgentStats) -> str:
        return (
            f"{label:>2} {a.msgsfr:8d} {_kbytes(a.bytes_from):10d}K {a.msgsto:8d} "
            f"{_kbytes(a.bytes_to):10d}K {a.msgsrej:8d} {a.msgsdis:7d}"
        )

    for index, agent in enumerate(table.agents):
        yield f"{row(str(index), agent)}  {_printable(agent.name)}"
    yield " " + "=" * 60
    yield row("T", table.total)


def format_stats_program(table: StatsTable, *, now: float | None = None) -> Iterator[str]:
    """The program-readable report (``mailstats -p``): a line with the start of the period
    and the current time, then one line per agent and a total line, fields separated by
    blanks, sizes in kilobytes, the agent name last."""
    yield f"{int(table.since)} {int(time.time() if now is None else now)}"
    for index, agent in enumerate(table.agents):
        counts = " ".join(
            f"{_kbytes(v) if i in (_BYTES_FROM, _BYTES_TO) else v:8d}"
            for i, v in enumerate(agent.counters())
        )
        yield f"{index:2d} {counts}  {_printable(agent.name)}"
    total = " ".join(
        f"{_kbytes(v) if i in (_BYTES_FROM, _BYTES_TO) else v:8d}"
        for i, v in enumerate(table.total.counters())
    )
    yield f" T {total}"
