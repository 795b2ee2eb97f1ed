"""An in-process copy of big mailboxes' message metadata, kept valid by HIGHESTMODSEQ.

``FETCH 1:* (UID FLAGS)`` on a 100,000-message mailbox reads every row of its index; a
client (or imaptest, or a sync tool) asks that again and again.  Every committed change to a
mailbox's messages raises its HIGHESTMODSEQ (appends, flag changes, expunges, private seen
changes), so a copy taken at HIGHESTMODSEQ *m* is exact for as long as the index still says
*m*, in whatever process the changes were made.  When the index has moved on, the copy
catches up with the rows whose MODSEQ is above *m* and the tombstones above *m*: the
CONDSTORE/QRESYNC machinery read from the other side.  A copy whose count then differs
from the index's (an index ``reconstruct`` rebuilt from damage) is read anew.

SELECT makes the copy and takes the snapshot's UIDs from it (one scan of the index instead
of two: a client follows SELECT with ``FETCH 1:* (UID FLAGS)``).  The copy is columns in
UID order (UIDs and flags; MODSEQs, internal dates and sizes read when a fetch first needs
them), so a UID range is two bisections and a slice of each column, and
``FETCH 1:* (UID FLAGS)`` takes the columns as they are (`MetadataCache.fetch_columns`).
Only mailboxes of :data:`MIN_MESSAGES` or more are kept, at most :data:`MAX_MAILBOXES` per
process (the least recently used is dropped).  The copy is only read and refreshed inside a
read transaction: a write transaction's uncommitted rows never reach it.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
from array import array
from collections import OrderedDict
from operator import itemgetter
from typing import Any

from posthouse.store.backend import FlagColumns, MessageMeta
from posthouse.store.flags import FLAG_SETS
from posthouse.store.uidset import UidSet

__all__ = ["MAX_MAILBOXES", "MIN_MESSAGES", "MetadataCache", "meta_of_row"]

MIN_MESSAGES = 2000
MAX_MAILBOXES = 16
ROW_COLUMNS = "uid, modseq, sysflags, keywords, idate, tzmin, size"
_FLAG_BITS = (len(FLAG_SETS) - 1).bit_length()  # the system flags' bits
_FLAG_MASK = (1 << _FLAG_BITS) - 1
_PACKED_SQL = f"SELECT uid << {_FLAG_BITS} | sysflags FROM messages ORDER BY uid"
_FIRST = itemgetter(0)


def meta_of_row(row: tuple[Any, ...]) -> MessageMeta:
    """A message's metadata, with the shared flags, from a row of ``ROW_COLUMNS`` (and the
    cached blobs, if the row has them)."""
    flags = FLAG_SETS[row[2]]
    if row[3]:
        flags = flags | frozenset(row[3].split(" "))
    return MessageMeta(row[0], row[1], flags, *row[4:])


class _Mailbox:
    """The metadata in UID order as columns: ``uids[i]`` and ``flags[i]`` and, once a fetch
    has needed them, ``modseqs[i]`` and ``rest[i]`` (internal date, zone, size) are one
    message's.  Columns of shared objects, not a tuple per message: cheap to make and to
    slice, and nothing for the garbage collector to walk; each column read in one scan."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.modseq = 0
        self.uids: list[int] = []
        self.flags: list[frozenset[str]] = []
        self.modseqs: list[int] | None = None
        self.rest: list[tuple[int, int, int]] | None = None

    def refresh(self, conn: sqlite3.Connection, highestmodseq: int, messages: int) -> None:
        if self.modseq == highestmodseq:
            return
        if self.modseq != 0:
            self._catch_up(conn)
        if self.modseq == 0 or len(self.uids) != messages:  # new, or an index rebuilt
            # One integer per row, taken apart in Python: a column fewer for sqlite3 to
            # convert, and no row tuples kept alive for the garbage collector to walk.
            packed = list(map(_FIRST, conn.execute(_PACKED_SQL)))
            uids = [value >> _FLAG_BITS for value in packed]
            flags = [FLAG_SETS[value & _FLAG_MASK] for value in packed]
            for uid, bits, words in conn.execute(  # keywords are rare: apart, from a scan in C
                "SELECT uid, sysflags, keywords FROM messages WHERE keywords != ''"
            ):
                flags[bisect.bisect_left(uids, uid)] = _flags(bits, words)
            self.uids, self.flags, self.modseqs, self.rest = uids, flags, None, None
        self.modseq = highestmodseq

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """The rows changed and the UIDs expunged since the copy's MODSEQ."""
        changed = conn.execute(
            f"SELECT {ROW_COLUMNS} FROM messages WHERE modseq > ? ORDER BY uid", (self.modseq,)
        ).fetchall()
        gone = {
            uid
            for (uid,) in conn.execute("SELECT uid FROM expunged WHERE modseq > ?", (self.modseq,))
        }
        uids = self.uids
        added: list[tuple[Any, ...]] = []
        for row in changed:
            at = bisect.bisect_left(uids, row[0])
            if at < len(uids) and uids[at] == row[0]:
                self.flags[at] = _flags(row[2], row[3])
                if self.modseqs is not None:
                    self.modseqs[at] = row[1]
                if self.rest is not None:
                    self.rest[at] = (row[4], row[5], row[6])
            else:
                added.append(row)
        if gone:
            self._take([i for i, uid in enumerate(uids) if uid not in gone])
        if added:  # new messages: above every UID but after a reconstruct
            unordered = bool(self.uids) and added[0][0] < self.uids[-1]
            self.uids += [row[0] for row in added]
            self.flags += [_flags(row[2], row[3]) for row in added]
            if self.modseqs is not None:
                self.modseqs += [row[1] for row in added]
            if self.rest is not None:
                self.rest += [(row[4], row[5], row[6]) for row in added]
            if unordered:
                self._take(sorted(range(len(self.uids)), key=self.uids.__getitem__))

    def _take(self, order: list[int]) -> None:
        """Keep the messages at the positions ``order``, in that order."""
        self.uids = [self.uids[i] for i in order]
        self.flags = [self.flags[i] for i in order]
        if self.modseqs is not None:
            self.modseqs = [self.modseqs[i] for i in order]
        if self.rest is not None:
            self.rest = [self.rest[i] for i in order]

    def _read(self, conn: sqlite3.Connection, columns: str) -> list[Any]:
        """A column (or columns) of every message, in UID order: inside the read
        transaction of the refresh, so that it lines up with ``uids``."""
        rows = conn.execute(f"SELECT {columns} FROM messages ORDER BY uid").fetchall()
        if len(rows) != len(self.uids):
            raise AssertionError("a column read outside the transaction of its refresh")
        return rows

    def _modseqs(self, conn: sqlite3.Connection) -> list[int]:
        if self.modseqs is None:
            self.modseqs = [row[0] for row in self._read(conn, "modseq")]
        return self.modseqs

    def _spans(self, uids: UidSet) -> list[slice]:
        return [
            slice(bisect.bisect_left(self.uids, low), bisect.bisect_right(self.uids, high))
            for low, high in uids.ranges
        ]

    def columns(self, conn: sqlite3.Connection, uids: UidSet, modseqs: bool) -> FlagColumns:
        result = FlagColumns([], [], [] if modseqs else None)
        for span in self._spans(uids):
            result.uids.extend(self.uids[span])
            result.flags.extend(self.flags[span])
            if result.modseqs is not None:
                result.modseqs.extend(self._modseqs(conn)[span])
        return result

    def select(self, conn: sqlite3.Connection, uids: UidSet) -> list[MessageMeta]:
        modseqs = self._modseqs(conn)
        if self.rest is None:  # the first fetch that needs more than UID, MODSEQ and FLAGS
            self.rest = self._read(conn, "idate, tzmin, size")
        result: list[MessageMeta] = []
        for span in self._spans(uids):
            result += [
                MessageMeta(uid, modseq, flags, *rest)
                for uid, modseq, flags, rest in zip(
                    self.uids[span], modseqs[span], self.flags[span], self.rest[span], strict=True
                )
            ]
        return result


def _flags(sysflags: int, keywords: str) -> frozenset[str]:
    """A message's flags from its system flag bits and keywords (shared sets when no
    keywords)."""
    return FLAG_SETS[sysflags] | frozenset(keywords.split(" ")) if keywords else FLAG_SETS[sysflags]


class MetadataCache:
    """The copies one process keeps (see the module docstring)."""

    def __init__(self, *, max_mailboxes: int = MAX_MAILBOXES, min_messages: int = MIN_MESSAGES):
        self.max_mailboxes = max_mailboxes
        self.min_messages = min_messages
        self._lock = threading.Lock()
        self._mailboxes: OrderedDict[str, _Mailbox] = OrderedDict()

    def fetch(
        self,
        mailbox_id: str,
        conn: sqlite3.Connection,
        highestmodseq: int,
        messages: int,
        uids: UidSet,
    ) -> list[MessageMeta] | None:
        """The metadata of ``uids`` (shared flags) from the copy, brought up to
        ``highestmodseq`` first; None for a mailbox too small to keep.  Call inside a read
        transaction of the mailbox's index."""
        entry = self._entry(mailbox_id, messages)
        if entry is None:
            return None
        with entry.lock:
            entry.refresh(conn, highestmodseq, messages)
            return entry.select(conn, uids)

    def fetch_columns(
        self,
        mailbox_id: str,
        conn: sqlite3.Connection,
        highestmodseq: int,
        messages: int,
        uids: UidSet,
        *,
        modseqs: bool,
    ) -> FlagColumns | None:
        """`fetch` as columns of UIDs, flags and (if asked for) MODSEQs
        (``FETCH 1:* (UID FLAGS)``)."""
        entry = self._entry(mailbox_id, messages)
        if entry is None:
            return None
        with entry.lock:
            entry.refresh(conn, highestmodseq, messages)
            return entry.columns(conn, uids, modseqs)

    def uids(
        self, mailbox_id: str, conn: sqlite3.Connection, highestmodseq: int, messages: int
    ) -> array[int] | None:
        """Every UID of the mailbox, ascending, from the copy (made now if there is none:
        SELECT is followed by ``FETCH 1:* (UID FLAGS)``); None for a mailbox too small to
        keep.  Call inside a read transaction of the mailbox's index."""
        entry = self._entry(mailbox_id, messages)
        if entry is None:
            return None
        with entry.lock:
            entry.refresh(conn, highestmodseq, messages)
            return array("L", entry.uids)

    def _entry(self, mailbox_id: str, messages: int) -> _Mailbox | None:
        if messages < self.min_messages:
            return None
        with self._lock:
            entry = self._mailboxes.get(mailbox_id)
            if entry is None:
                entry = self._mailboxes[mailbox_id] = _Mailbox()
            self._mailboxes.move_to_end(mailbox_id)
            while len(self._mailboxes) > self.max_mailboxes:
                self._mailboxes.popitem(last=False)
        return entry

    def forget(self, mailbox_id: str) -> None:
        with self._lock:
            self._mailboxes.pop(mailbox_id, None)
