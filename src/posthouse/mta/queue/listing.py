"""The ``mailq`` listing of the mail queue (``posthouse mailq``, ``sendmail -bp``).

The format follows sendmail's (see the administration chapter, section 12.7)::

                    Mail Queue (2 requests)
    ----Queue-ID---- --Size-- -----Q-Time----- ------------Sender/Recipient------------
    01hf3k2m9q8r7s6t     1442 Tue Aug 24 10:12 <blaise@example.com>
                              (Deferred: 4.4.1 Connection refused by host1.corp.com)
                                               <corcoran@host1.corp.com>
    01hf3k2mb2c3d4e5*     871 Tue Aug 24 10:15 <root@example.com>
                                               <postmaster@example.com> (\\alice)
    01hf3k2mc7d8e9f0      512 Tue Aug 24 10:16 (no control file)
    -- 3 Kbytes in 3 requests.

Columns: the 16-character queue id, a flag character, the size in bytes, the time the message
entered the queue (``ls``-style: the year instead of the time of day for messages more than
half a year from ``now``) and the sender.  Below it come the recipients that still matter:
pending, deferred and failed ones (delivered ones only with ``verbose``).  A recipient that
came from alias or forward expansion is shown as the envelope recipient it came from, with the
expanded destination in parentheses.  A recipient's last error is shown on the line before it
as ``(Deferred: reason)`` / ``(Failed: reason)``, once for a run of recipients with the same
status line.  Damaged entries (no control file, no data file, corrupt control file) show their
problem in parentheses instead of (or, if the envelope could be read, below) the sender.

The flag ``*`` marks an entry whose control file another process holds locked right now,
i.e. a message being delivered or having its control file rewritten (sendmail's meaning).
Probing with a non-blocking ``flock`` would itself hold a lock for a moment and could make a
concurrent queue run skip the message (its non-blocking claim would fail), so
:func:`scan_queue` instead reads the kernel's lock table ``/proc/locks`` once and matches the
inode numbers of the control files, which ``os.scandir`` provides without a ``stat`` call.
Inodes are matched without the device number (on btrfs subvolumes and some overlay set-ups the
two disagree), so in theory a file on another filesystem locked with the same inode number could
mark an entry; the flag is informational only.  Where ``/proc/locks`` does not exist no entry is
flagged.

Cost: the listing streams.  :func:`scan_queue` reads the directory once (names, file types and
inode numbers, no ``stat``) for the request count of the title line, the lock flags and the
entries; :func:`format_queue` is a generator over the store's
:meth:`~posthouse.mta.queue.store.QueueStore.list_entries` of that scan (per entry one control file
read and one ``lstat`` of the data file; data files are never opened), and formats each queue
time once per second of arrival: about 20 µs per entry.

Everything taken from the queue (addresses, error texts from remote servers) is printed with
control characters escaped, so a hostile message cannot send escape sequences to the
administrator's terminal.

:func:`format_queue` is pure (it formats what it is given); :func:`scan_queue` and
:func:`list_queue` read the queue directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path

from posthouse.mta.destinations import shown
from posthouse.mta.queue.ids import QUEUE_ID_LENGTH
from posthouse.mta.queue.store import (
    QueueEntry,
    QueueFiles,
    QueueStore,
    RecipientState,
    scan_queue_files,
)

__all__ = [
    "EMPTY_QUEUE",
    "HEADER",
    "MESSAGE_COLUMN",
    "SENDER_COLUMN",
    "QueueScan",
    "format_queue",
    "format_time",
    "list_queue",
    "locked_inodes",
    "scan_queue",
]

QID_WIDTH = QUEUE_ID_LENGTH  # 16
SIZE_WIDTH = 8
TIME_WIDTH = 16
#: Column of status lines such as ``(Deferred: reason)``: below the size.
MESSAGE_COLUMN = QID_WIDTH + 1 + SIZE_WIDTH + 1
#: Column of the sender and the recipients.
SENDER_COLUMN = MESSAGE_COLUMN + TIME_WIDTH + 1

HEADER = " ".join(
    (
        "----Queue-ID----" + "-" * (QID_WIDTH - 16),
        "--Size--",
        "-----Q-Time-----",
        "------------Sender/Recipient------------",
    )
)
TITLE_INDENT = " " * 16
EMPTY_QUEUE = "Mail queue is empty"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HALF_YEAR = 365.2425 * 86400 / 2
_MESSAGE_PAD = " " * MESSAGE_COLUMN
_SENDER_PAD = " " * SENDER_COLUMN
_SHOWN = frozenset(("pending", "deferred", "failed"))


def _safe(text: str) -> str:
    """``text`` with non-printable characters (controls, lone surrogates) escaped."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def format_time(when: float, now: float) -> str:
    """Sixteen characters: ``Tue Aug 24 10:12``, or ``Tue Aug 24  2021`` if more than half a
    year away from ``now`` (as ``ls -l`` does); local time, English names.  A time the C
    library cannot represent (a damaged control file may hold any number) gives ``?``."""
    try:
        tm = time.localtime(when)
    except (OverflowError, OSError, ValueError):
        return f"{'?':<{TIME_WIDTH}}"
    head = f"{_DAYS[tm.tm_wday]} {_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d}"
    if abs(now - when) > _HALF_YEAR:
        return f"{head}  {tm.tm_year:4d}"
    return f"{head} {tm.tm_hour:02d}:{tm.tm_min:02d}"


def _time_formatter(now: float) -> Callable[[float], str]:
    """:func:`format_time` against ``now``, remembering each second it has formatted (the
    messages of a queue tend to share their minutes)."""
    near: dict[float, str] = {}
    far: dict[float, str] = {}

    def cached(when: float) -> str:
        seen = far if abs(now - when) > _HALF_YEAR else near
        second = when // 1  # what time.localtime() looks at
        text = seen.get(second)
        if text is None:
            text = seen[second] = format_time(when, now)
        return text

    return cached


def _status_line(rcpt: RecipientState, qtime: Callable[[float], str], verbose: bool) -> str | None:
    status = rcpt.status
    if status == "pending" and rcpt.last_error is None and not (verbose and rcpt.attempts):
        return None
    text = status.capitalize()
    if rcpt.last_error:
        text += ": " + _safe(rcpt.last_error)
    if verbose:
        details = []
        if rcpt.attempts:
            details.append(f"{rcpt.attempts} attempt{'s' if rcpt.attempts != 1 else ''}")
        if status in ("pending", "deferred") and rcpt.next_attempt > 0:
            details.append("next " + qtime(rcpt.next_attempt).strip())
        if details:
            text += "; " + ", ".join(details)
    return f"{_MESSAGE_PAD}({text})"


def _recipient_line(rcpt: RecipientState) -> str:
    original = rcpt.original
    if original is None or original == rcpt.address:
        return f"{_SENDER_PAD}<{_safe(rcpt.address)}>"
    return f"{_SENDER_PAD}<{_safe(original)}> ({_safe(shown(rcpt.kind, rcpt.address))})"


def _verbose_line(entry: QueueEntry) -> str:
    envelope = entry.envelope
    assert envelope is not None
    info = [f"Client: {_safe(envelope.client_address or 'local')}"]
    if envelope.helo:
        info.append(f"HELO: {_safe(envelope.helo)}")
    if envelope.auth_user:
        info.append(f"Auth: {_safe(envelope.auth_user)}")
    info.append(f"Protocol: {_safe(envelope.protocol)}")
    return _MESSAGE_PAD + "  ".join(info)


def _entry_lines(
    entry: QueueEntry, flag: str, qtime: Callable[[float], str], verbose: bool
) -> list[str]:
    envelope = entry.envelope
    qid = f"{entry.queue_id:<{QID_WIDTH}}{flag}"
    if envelope is None:
        problem = _safe(entry.problem or "?")
        return [f"{qid}{entry.data_size:>{SIZE_WIDTH}} {qtime(entry.mtime)} ({problem})"]
    lines = [
        f"{qid}{envelope.size:>{SIZE_WIDTH}} {qtime(envelope.received_at)} "
        f"<{_safe(envelope.sender)}>"
    ]
    if entry.problem is not None:
        lines.append(f"{_MESSAGE_PAD}({_safe(entry.problem)})")
    if verbose:
        lines.append(_verbose_line(entry))
    previous: str | None = None
    for rcpt in envelope.recipients:
        if not verbose and rcpt.status not in _SHOWN:
            continue
        status = _status_line(rcpt, qtime, verbose)
        if status is not None and status != previous:
            lines.append(status)
        previous = status
        lines.append(_recipient_line(rcpt))
    return lines


@dataclass
class _Tally:
    """Entries listed so far and their bytes, for the last line."""

    listed: int = 0
    total_bytes: int = 0


def _body(
    entries: Iterable[QueueEntry],
    qtime: Callable[[float], str],
    verbose: bool,
    locked: Container[str],
    tally: _Tally,
) -> Iterator[str]:
    for entry in entries:
        flag = "*" if entry.queue_id in locked else " "
        yield from _entry_lines(entry, flag, qtime, verbose)
        tally.listed += 1
        tally.total_bytes += entry.envelope.size if entry.envelope is not None else entry.data_size


def _framed(lines: Iterator[str], count: int | None, tally: _Tally) -> Iterator[str]:
    """Title and header, the entries' ``lines``, then the totals (or the empty-queue line)."""
    first = next(lines, None)
    if first is None:
        yield EMPTY_QUEUE
        return
    if count is None:
        yield f"{TITLE_INDENT}Mail Queue"
    else:
        yield f"{TITLE_INDENT}Mail Queue ({count} request{'s' if count != 1 else ''})"
    yield HEADER
    yield first
    yield from lines
    listed = tally.listed
    kbytes = (tally.total_bytes + 1023) // 1024
    yield f"-- {kbytes} Kbytes in {listed} request{'s' if listed != 1 else ''}."


def format_queue(
    entries: Iterable[QueueEntry],
    *,
    now: float | None = None,
    verbose: bool = False,
    count: int | None = None,
    locked: Container[str] = frozenset(),
) -> Iterator[str]:
    """Lines (without newlines) of the ``mailq`` listing of ``entries``, streaming.

    ``count`` is the number of requests for the title line (taken from ``len(entries)`` if
    ``entries`` is sized; the title has no count otherwise); the last line gives the number
    actually listed and their total size.  ``locked`` holds the ids to flag with ``*``.
    ``verbose`` adds the client address, HELO name, authenticated user and protocol of each
    message, delivered recipients, and the attempts and next attempt time of each recipient.
    An empty queue gives the single line ``Mail queue is empty``.
    """
    if count is None and isinstance(entries, Sized):
        count = len(entries)
    qtime = _time_formatter(time.time() if now is None else now)
    tally = _Tally()
    yield from _framed(_body(entries, qtime, verbose, locked, tally), count, tally)


# -- reading the queue directory -------------------------------------------------------------


def locked_inodes(proc_locks: Path = Path("/proc/locks")) -> frozenset[int]:
    """Inode numbers of files someone holds an ``flock`` on (granted locks, not waiters),
    from the kernel's lock table; empty where the table cannot be read."""
    try:
        text = proc_locks.read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    inodes = set()
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2163123 0 EOF"; waiters have "->" after "1:".
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        inode = fields[5].rpartition(":")[2]  # MAJOR:MINOR:INODE, the device is not used
        if inode.isdigit():
            inodes.add(int(inode))
    return frozenset(inodes)


@dataclass(frozen=True)
class QueueScan:
    """What one cheap scan of the queue directory tells: its entries (ids with a control or a
    data file, as :meth:`QueueStore.list_entries` lists them), how many there are, and which of
    them have a control file that is locked by some process."""

    files: QueueFiles
    locked: frozenset[str]

    @property
    def count(self) -> int:
        return len(self.files.ids)


def scan_queue(directory: Path, *, proc_locks: Path = Path("/proc/locks")) -> QueueScan:
    """Scan the queue in ``directory`` and find the locked entries (one ``readdir`` pass, no
    ``stat`` calls); a directory that does not exist is an empty queue."""
    inodes = locked_inodes(proc_locks)
    try:
        files = scan_queue_files(directory)
    except FileNotFoundError:
        files = QueueFiles([], {})
    locked = (
        frozenset(qid for qid, inode in files.controls.items() if inode in inodes)
        if inodes
        else frozenset()
    )
    return QueueScan(files, locked)


# -- the listing ------------------------------------------------------------------------------


def list_queue(
    store: QueueStore, *, now: float | None = None, verbose: bool = False
) -> Iterator[str]:
    """The complete ``mailq`` listing of ``store`` (what ``posthouse mailq`` prints)."""
    scan = scan_queue(store.directory)
    entries = store.list_entries(scan.files)
    yield from format_queue(entries, now=now, verbose=verbose, count=scan.count, locked=scan.locked)
