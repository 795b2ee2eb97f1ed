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
of two: a client follows SELECT with ``FETCH 1:* (UID FLAGS)``).  The copy is two lists in
UID order, the UIDs and the `MessageMeta` rows, so a UID range is two bisections and a
slice.  Only mailboxes of :data:`MIN_MESSAGES` or more are kept, at most :data:`MAX_MAILBOXES` per
process (the least recently used is dropped).  The copy is only read and refreshed inside a
read transaction: a write transaction's uncommitted rows never reach it.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from operator import attrgetter
from typing import Any

from posthouse.store.backend import MessageMeta
from posthouse.store.flags import FLAG_SETS
from posthouse.store.uidset import UidSet

__all__ = ["MAX_MAILBOXES", "MIN_MESSAGES", "MetadataCache", "meta_of_row"]

MIN_MESSAGES = 2000
MAX_MAILBOXES = 16
ROW_COLUMNS = "uid, modseq, sysflags, keywords, idate, tzmin, size"
_UID = attrgetter("uid")


def meta_of_row(row: tuple[Any, ...]) -> MessageMeta:
    """A message's metadata, with the shared flags, from a row of ``ROW_COLUMNS`` (and the
    cached blobs, if the row has them)."""
    flags = FLAG_SETS[row[2]]
    if row[3]:
        flags = flags | frozenset(row[3].split(" "))
    return MessageMeta(row[0], row[1], flags, *row[4:])


def _metas_of_rows(rows: Iterable[tuple[Any, ...]]) -> list[MessageMeta]:
    """`meta_of_row` for many rows of ``ROW_COLUMNS``, without a call per row."""
    return [
        MessageMeta(
            uid,
            modseq,
            FLAG_SETS[sysflags] | frozenset(keywords.split(" "))
            if keywords
            else FLAG_SETS[sysflags],
            idate,
            tzmin,
            size,
        )
        for uid, modseq, sysflags, keywords, idate, tzmin, size in rows
    ]


class _Mailbox:
    """The metadata in UID order: ``uids[i]`` is ``metas[i].uid``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.modseq = 0
        self.uids: list[int] = []
        self.metas: list[MessageMeta] = []

    def refresh(self, conn: sqlite3.Connection, highestmodseq: int, messages: int) -> None:
        if self.modseq == highestmodseq:
            return
        if self.modseq != 0:
            self._catch_up(conn)
        if self.modseq == 0 or len(self.uids) != messages:  # new, or an index rebuilt
            self.metas = _metas_of_rows(
                conn.execute(f"SELECT {ROW_COLUMNS} FROM messages ORDER BY uid")
            )
            self.uids = list(map(_UID, self.metas))
        self.modseq = highestmodseq

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """The rows changed and the UIDs expunged since the copy's MODSEQ."""
        changed = _metas_of_rows(
            conn.execute(
                f"SELECT {ROW_COLUMNS} FROM messages WHERE modseq > ? ORDER BY uid", (self.modseq,)
            )
        )
        gone = {
            uid
            for (uid,) in conn.execute("SELECT uid FROM expunged WHERE modseq > ?", (self.modseq,))
        }
        uids, metas = self.uids, self.metas
        added: list[MessageMeta] = []
        for meta in changed:
            at = bisect.bisect_left(uids, meta.uid)
            if at < len(uids) and uids[at] == meta.uid:
                metas[at] = meta
            else:
                added.append(meta)
        if gone:
            metas = [meta for meta in metas if meta.uid not in gone]
        if added:  # new messages: above every UID but after a reconstruct
            metas = metas + added
            if uids and added[0].uid < uids[-1]:
                metas.sort(key=_UID)
        if gone or added:
            self.metas, self.uids = metas, list(map(_UID, metas))

    def select(self, uids: UidSet) -> list[MessageMeta]:
        result: list[MessageMeta] = []
        for low, high in uids.ranges:
            start = bisect.bisect_left(self.uids, low)
            end = bisect.bisect_right(self.uids, high)
            result += self.metas[start:end]
        return result


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
            return entry.select(uids)

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
