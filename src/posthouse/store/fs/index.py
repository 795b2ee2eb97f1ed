"""One mailbox's folder: its message files (``UID.``) and its index (``index.db``).

The index holds what Cyrus splits over cyrus.header, cyrus.index, cyrus.cache and
cyrus.seen: the mailbox's UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, message count and bytes (what
its quota root's usage sums, :mod:`.quota`); per message its UID, MODSEQ, flags and
keywords, internal date and size; the cached ENVELOPE/BODYSTRUCTURE/header blobs (a separate
table, so flag scans stay small); tombstones of expunged UIDs (QRESYNC); each user's private
seen set and recent mark.

**Tombstones are pruned.**  Beyond ``TOMBSTONE_LIMIT`` of them the older half goes in the
expunge's own transaction and the highest MODSEQ pruned is kept; a client resynchronising
from before it is told every UID that is gone (RFC 7162 §3.2.5.2), not a partial list.

**Durable before visible.**  An append writes each message to a temporary file in the
mailbox folder and ``fdatasync``\\ s it *before* taking the index's write lock.  Under the lock
it reads UIDNEXT, renames the files to ``UID.``, ``fsync``\\ s the folder once, inserts the rows
and commits (``synchronous=FULL``).  So the index never names a file that a crash could
lose; a crash before the commit leaves at most files without rows, which the next append
renames over (UIDNEXT did not move) or ``reconstruct`` reclaims.

**Group commit.**  Appends to one mailbox from several threads of a process queue up; the
thread that gets the commit lock takes every queued append and commits them together (one
folder ``fsync``, one index commit); the others find theirs done.  Between processes the
index's write lock (``BEGIN IMMEDIATE``) serialises, so UIDs are increasing and distinct.

Expunge commits first and unlinks the files afterwards (a crash leaves orphans, never a row
without its file).  A deleted mailbox is marked in its index before its files go, so a
writer in another process that still holds it open fails cleanly.  A mailbox moved to
another partition is marked *superseded* in its old index the same way
(:class:`IndexSuperseded`: look the mailbox up again).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import threading
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from posthouse.durable import sync_directory
from posthouse.store.backend import (
    AppendResult,
    Changes,
    ExpungeResult,
    FlagChange,
    FlagColumns,
    MailboxSnapshot,
    MailboxStatus,
    MessageMeta,
    NewMessage,
    StoreResult,
    Viewer,
)
from posthouse.store.content import header_contains
from posthouse.store.errors import MailboxNotFound, MessageNotFound, StoreError, StoreUnavailable
from posthouse.store.flags import (
    DELETED_BIT,
    SEEN_BIT,
    apply_bit,
    apply_change,
    split_flags,
)
from posthouse.store.fs import header_fields
from posthouse.store.fs.index_schema import create_schema
from posthouse.store.fs.layout import TEMP_PREFIX, message_file_name
from posthouse.store.fs.metacache import MetadataCache, meta_of_row
from posthouse.store.fs.sqlite import Database, WouldBlock, inline_active
from posthouse.store.uidset import MAX_UID, UidSet

__all__ = ["MAX_KEYWORDS", "IndexSuperseded", "MailboxIndex", "PreparedMessage", "sync_file"]

_log = logging.getLogger("posthouse.store")

#: Expunge tombstones kept for QRESYNC: beyond this many the older half is pruned.
TOMBSTONE_LIMIT = 20_000

MAX_KEYWORDS = 256
INLINE_MESSAGES = 1000  # a mailbox read in place (fs/sqlite.py inline_reads) at most this big
_WRITE_CHUNK = 1 << 20
SEEN_FLAG = frozenset({"\\Seen"})
DELETED, SUPERSEDED = 1, 2  # values of state.deleted


class IndexSuperseded(StoreUnavailable):
    """The mailbox has moved to another folder (another partition) since this index was
    opened: forget it and look the mailbox up again."""

    def __init__(self, mailbox_id: str) -> None:
        super().__init__("the mailbox is being moved to another partition; try again")
        self.mailbox_id = mailbox_id


@dataclass
class _State:
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    bytes: int


@dataclass(frozen=True)
class PreparedMessage:
    """A message whose bytes are durable in a temporary file of the mailbox folder."""

    temp: Path
    size: int
    internal_date: datetime
    flags: frozenset[str]
    envelope: bytes | None
    bodystructure: bytes | None
    header: bytes | None


@dataclass
class _Request:
    messages: Sequence[PreparedMessage]
    done: bool = False
    result: AppendResult | None = None
    error: BaseException | None = None
    renamed: int = 0


@dataclass
class _Seen:
    uids: UidSet = field(default_factory=UidSet)
    recent_uid: int = 0
    modseq: int = 0


def _to_columns(when: datetime) -> tuple[int, int]:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset = when.utcoffset() or timedelta(0)
    return int(when.timestamp()), int(offset.total_seconds() // 60)


class MailboxIndex:
    """One mailbox folder and its index, shared by the threads of a process."""

    def __init__(
        self, directory: Path, mailbox_id: str, metadata: MetadataCache | None = None
    ) -> None:
        self.dir = directory
        self.mailbox_id = mailbox_id
        self.metadata = metadata
        self.db = Database(directory / "index.db", schema=create_schema)
        self._commit_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[_Request] = []
        self.batches = 0  # commits made by this process (group-commit statistics)
        self.tombstone_limit = TOMBSTONE_LIMIT

    # -- creation and removal --

    @classmethod
    def create(
        cls,
        directory: Path,
        mailbox_id: str,
        uidvalidity: int,
        metadata: MetadataCache | None = None,
    ) -> MailboxIndex:
        fresh_parent = not directory.parent.exists()
        directory.mkdir(mode=0o700, parents=True)
        index = cls(directory, mailbox_id, metadata)
        with index.db.write() as conn:
            conn.execute(
                "INSERT INTO state VALUES (1, ?, ?, 1, 1, 0, 0, 0)", (mailbox_id, uidvalidity)
            )
        sync_directory(directory)
        sync_directory(directory.parent)
        if fresh_parent:
            sync_directory(directory.parent.parent)
        return index

    def mark_deleted(self, mark: int = DELETED) -> None:
        """Mark the index deleted (or :data:`SUPERSEDED`, or 0 to undo a superseding)."""
        with self.db.write() as conn:
            conn.execute("UPDATE state SET deleted = ?", (mark,))

    def check_live(self, conn: sqlite3.Connection) -> None:
        """:class:`MailboxNotFound` (or :class:`IndexSuperseded`) unless the mailbox is here."""
        self._state(conn)

    def remove_files(self) -> None:
        """Unlink the folder's files and the folder (after :meth:`mark_deleted`)."""
        self.db.close()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.dir):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            os.rmdir(self.dir)
            sync_directory(self.dir.parent)

    # -- reading --

    def _state(self, conn: sqlite3.Connection) -> _State:
        row = conn.execute(
            "SELECT uidvalidity, uidnext, highestmodseq, messages, bytes, deleted FROM state"
        ).fetchone()
        if row is not None and row[5] == SUPERSEDED:
            raise IndexSuperseded(self.mailbox_id)
        if row is None or row[5]:
            raise MailboxNotFound("the mailbox has been deleted")
        if row[3] > INLINE_MESSAGES and inline_active():
            raise WouldBlock("a big mailbox is read on a thread")
        return _State(*row[:5])

    @staticmethod
    def _seen(conn: sqlite3.Connection, user: str) -> _Seen:
        row = conn.execute(
            "SELECT uids, recent_uid, modseq FROM seen WHERE user = ?", (user,)
        ).fetchone()
        return _Seen(UidSet.parse(row[0]), row[1], row[2]) if row else _Seen()

    @staticmethod
    def _put_seen(conn: sqlite3.Connection, user: str, seen: _Seen) -> None:
        conn.execute(
            "INSERT INTO seen VALUES (?, ?, ?, ?) ON CONFLICT(user) DO UPDATE SET"
            " uids = excluded.uids, recent_uid = excluded.recent_uid, modseq = excluded.modseq",
            (user, str(seen.uids), seen.recent_uid, seen.modseq),
        )

    def _status(self, conn: sqlite3.Connection, viewer: Viewer) -> tuple[MailboxStatus, _Seen]:
        state = self._state(conn)
        seen = self._seen(conn, viewer.user)
        if viewer.private_seen:
            seen_count = sum(
                conn.execute(
                    "SELECT count(*) FROM messages WHERE uid BETWEEN ? AND ?", (low, high)
                ).fetchone()[0]
                for low, high in seen.uids.ranges
            )
            unseen = state.messages - seen_count
            deleted = conn.execute(
                "SELECT count(*) FROM messages WHERE sysflags & ?", (DELETED_BIT,)
            ).fetchone()[0]
        else:  # one pass for both counts
            unseen, deleted = conn.execute(
                "SELECT coalesce(sum(sysflags & ? = 0), 0), coalesce(sum(sysflags & ? != 0), 0)"
                " FROM messages",
                (SEEN_BIT, DELETED_BIT),
            ).fetchone()
        recent = conn.execute(
            "SELECT count(*) FROM messages WHERE uid > ?", (seen.recent_uid,)
        ).fetchone()[0]
        status = MailboxStatus(
            uidvalidity=state.uidvalidity,
            uidnext=state.uidnext,
            highestmodseq=state.highestmodseq,
            messages=state.messages,
            unseen=unseen,
            recent=recent,
            size=state.bytes,
            deleted=deleted,
        )
        return status, seen

    def status(self, viewer: Viewer) -> MailboxStatus:
        with self.db.read() as conn:
            return self._status(conn, viewer)[0]

    def stored_bytes(self) -> int:
        """The bytes of the messages as the state row keeps them (changed in the same
        transaction as the messages: what quota usage sums)."""
        with self.db.read() as conn:
            return self._state(conn).bytes

    def recount_bytes(self) -> int:
        """The sizes of the messages summed row by row (what ``imapquota -f`` trusts); the
        state row is corrected if it differs."""
        sql = "SELECT total(size) FROM messages"
        with self.db.read() as conn:
            stored = self._state(conn).bytes
            counted = int(conn.execute(sql).fetchone()[0])
        if counted == stored:
            return counted
        with self.db.write() as conn:
            self._state(conn)
            counted = int(conn.execute(sql).fetchone()[0])
            conn.execute("UPDATE state SET bytes = ?", (counted,))
        return counted

    def snapshot(self, viewer: Viewer) -> MailboxSnapshot:
        with self.db.read() as conn:
            status, seen = self._status(conn, viewer)
            uids = None
            if self.metadata is not None:  # a big mailbox: its copy, made now if need be
                uids = self.metadata.uids(
                    self.mailbox_id, conn, status.highestmodseq, status.messages
                )
            if uids is None:
                uids = array(
                    "L", (row[0] for row in conn.execute("SELECT uid FROM messages ORDER BY uid"))
                )
            keywords = tuple(row[0] for row in conn.execute("SELECT name FROM keywords"))
            if viewer.private_seen:
                first_unseen = next((uid for uid in uids if uid not in seen.uids), 0)
            else:
                row = conn.execute(
                    "SELECT min(uid) FROM messages WHERE sysflags & ? = 0", (SEEN_BIT,)
                ).fetchone()
                first_unseen = row[0] or 0
        return MailboxSnapshot(status, uids, keywords, first_unseen, seen.recent_uid)

    def claim_recent(self, user: str, up_to: int) -> int:
        with self.db.write() as conn:
            self._state(conn)
            seen = self._seen(conn, user)
            before = seen.recent_uid
            if up_to > before:
                seen.recent_uid = up_to
                self._put_seen(conn, user, seen)
        return before

    def _rows(
        self,
        conn: sqlite3.Connection,
        uids: UidSet,
        viewer: Viewer,
        cached: bool,
        state: _State | None = None,
    ) -> list[MessageMeta]:
        """The metadata of ``uids``: the hot path of ``FETCH 1:* (UID FLAGS)``.  With the
        ``state`` of a read transaction, big mailboxes are served from the process's copy."""
        seen = self._seen(conn, viewer.user) if viewer.private_seen else None
        if state is not None and self.metadata is not None and not cached:
            copy = self.metadata.fetch(
                self.mailbox_id, conn, state.highestmodseq, state.messages, uids
            )
            if copy is not None:
                return copy if seen is None else _with_private_seen(copy, seen)
        if cached:
            sql = (
                "SELECT m.uid, m.modseq, m.sysflags, m.keywords, m.idate, m.tzmin, m.size,"
                " c.envelope, c.bodystructure, c.header FROM messages m"
                " LEFT JOIN cache c ON c.uid = m.uid WHERE m.uid BETWEEN ? AND ? ORDER BY m.uid"
            )
        else:
            sql = (
                "SELECT uid, modseq, sysflags, keywords, idate, tzmin, size FROM messages"
                " WHERE uid BETWEEN ? AND ? ORDER BY uid"
            )
        result: list[MessageMeta] = []
        for low, high in uids.ranges:
            result += map(meta_of_row, conn.execute(sql, (low, high)))
        return result if seen is None else _with_private_seen(result, seen)

    def search_headers(self, uids: UidSet, field: str, needle: bytes) -> tuple[UidSet, UidSet]:
        lowered = needle.lower()
        matches: list[int] = []
        unsure: list[int] = []  # no cached header, or one whose decoded text may differ
        with self.db.read() as conn:
            self._state(conn)
            for low, high in uids.ranges:
                unsure_here = header_fields.unsearchable(conn, low, high)
                unsure += unsure_here
                if header_fields.indexed(field):
                    matches += header_fields.search(conn, field, lowered, low, high)
                    continue
                # Another field: SQLite narrows the rows down in C (the CRLFs taken out, so
                # that a needle across a folded line is found); Python checks the field.
                left_out = set(unsure_here)  # this range's only: no rescan per range
                for uid, header in conn.execute(
                    "SELECT uid, header FROM cache WHERE uid BETWEEN ? AND ?"
                    " AND instr(lower(replace(header, X'0D0A', '')), ?) > 0",
                    (low, high, lowered),
                ):
                    if uid not in left_out and header_contains(header, field, lowered):
                        matches.append(uid)
        return UidSet.of(matches), UidSet.of(unsure)

    def fetch(self, uids: UidSet, viewer: Viewer, cached: bool) -> list[MessageMeta]:
        with self.db.read() as conn:
            state = self._state(conn)
            return self._rows(conn, uids, viewer, cached, state)

    def fetch_flags(self, uids: UidSet, viewer: Viewer, modseqs: bool) -> FlagColumns:
        with self.db.read() as conn:
            state = self._state(conn)
            if self.metadata is not None and not viewer.private_seen:
                columns = self.metadata.fetch_columns(
                    self.mailbox_id,
                    conn,
                    state.highestmodseq,
                    state.messages,
                    uids,
                    modseqs=modseqs,
                )
                if columns is not None:
                    return columns
            metas = self._rows(conn, uids, viewer, False, state)
        return FlagColumns(
            [m.uid for m in metas],
            [m.flags for m in metas],
            [m.modseq for m in metas] if modseqs else None,
        )

    def store_cache(
        self, uid: int, envelope: bytes | None, bodystructure: bytes | None, header: bytes | None
    ) -> None:
        with self.db.write() as conn:
            self._state(conn)
            if not conn.execute("SELECT 1 FROM messages WHERE uid = ?", (uid,)).fetchone():
                raise MessageNotFound(f"no message with UID {uid}")
            conn.execute(
                "INSERT INTO cache VALUES (?, ?, ?, ?) ON CONFLICT(uid) DO UPDATE SET"
                " envelope = coalesce(excluded.envelope, envelope),"
                " bodystructure = coalesce(excluded.bodystructure, bodystructure),"
                " header = coalesce(excluded.header, header)",
                (uid, envelope, bodystructure, header),
            )
            if header is not None:
                header_fields.insert_rows(conn, [header_fields.row_of(uid, header)])

    def open_message(self, uid: int) -> BinaryIO:
        with self.db.read() as conn:
            self._state(conn)
            exists = conn.execute("SELECT 1 FROM messages WHERE uid = ?", (uid,)).fetchone()
        if not exists:
            raise MessageNotFound(f"no message with UID {uid}")
        try:
            return open(self.dir / message_file_name(uid), "rb")
        except FileNotFoundError as error:
            if self._still_listed(uid):  # not expunged meanwhile (rows go before files): lost
                _log.error("store: a message file is lost: %s", error)  # chapter 12.5.4: ERR
            raise MessageNotFound(f"message file of UID {uid} is missing") from None

    def _still_listed(self, uid: int) -> bool:
        try:
            with self.db.read() as conn:
                row = conn.execute("SELECT 1 FROM messages WHERE uid = ?", (uid,)).fetchone()
        except (OSError, sqlite3.Error, StoreError):
            return False  # the mailbox is being deleted
        return row is not None

    def changes_since(self, modseq: int, viewer: Viewer) -> Changes:
        with self.db.read() as conn:
            state = self._state(conn)
            seen = self._seen(conn, viewer.user) if viewer.private_seen else None
            if seen is not None and seen.modseq > modseq:
                uids = UidSet([(1, MAX_UID)])
            else:
                uids = UidSet.of(
                    row[0]
                    for row in conn.execute("SELECT uid FROM messages WHERE modseq > ?", (modseq,))
                )
            changed = self._rows(conn, uids, viewer, cached=False)
            vanished = self._vanished_since(conn, modseq, state)
        return Changes(state.highestmodseq, tuple(changed), vanished)

    @staticmethod
    def _vanished_since(conn: sqlite3.Connection, modseq: int, state: _State) -> UidSet:
        """The UIDs expunged after ``modseq``.  When tombstones after it were pruned, every
        UID below UIDNEXT that is not in the mailbox: a superset the caller narrows to the
        UIDs its client knows (RFC 7162 §3.2.5.2 and §3.2.10: VANISHED (EARLIER) may name
        UIDs the client never saw; it ignores them)."""
        row = conn.execute("SELECT modseq FROM pruned").fetchone()
        if row is not None and modseq < row[0]:
            existing = UidSet.of(r[0] for r in conn.execute("SELECT uid FROM messages"))
            below = UidSet([(1, state.uidnext - 1)]) if state.uidnext > 1 else UidSet.of([])
            return below.difference(existing)
        return UidSet.of(
            r[0] for r in conn.execute("SELECT uid FROM expunged WHERE modseq > ?", (modseq,))
        )

    def _prune_tombstones(self, conn: sqlite3.Connection) -> None:
        """Once there are more than ``tombstone_limit`` tombstones, prune all but the newest
        half (whole expunges at a time: their tombstones share a MODSEQ), and remember the
        highest MODSEQ pruned (see `_vanished_since`)."""
        count = conn.execute("SELECT count(*) FROM expunged").fetchone()[0]
        if count <= self.tombstone_limit:
            return
        keep = self.tombstone_limit // 2
        cut = conn.execute(
            "SELECT modseq FROM expunged ORDER BY modseq DESC LIMIT 1 OFFSET ?", (keep,)
        ).fetchone()[0]
        conn.execute("DELETE FROM expunged WHERE modseq <= ?", (cut,))
        conn.execute(
            "INSERT INTO pruned VALUES (1, ?) ON CONFLICT(one) DO UPDATE SET"
            " modseq = max(modseq, excluded.modseq)",
            (cut,),
        )

    # -- appending --

    def prepare(self, message: NewMessage, *, sync: bool = True) -> PreparedMessage:
        """Write ``message`` to a temporary file in the folder and make its bytes durable
        (unless ``sync`` is False: then the caller runs :func:`sync_file` on it before
        :meth:`commit`)."""
        temp = self.dir / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # deleted or moved: the caller looks the mailbox up again
            raise IndexSuperseded(self.mailbox_id) from None
        try:
            view = memoryview(message.content)
            while view:
                written = os.write(fd, view[:_WRITE_CHUNK])
                view = view[written:]
            if sync:
                os.fdatasync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        os.close(fd)
        return self._prepared(temp, len(message.content), message)

    def prepare_copy(self, source: Path, meta: MessageMeta) -> PreparedMessage:
        """A copy of an already durable message file (fetched with its cached blobs): a hard
        link, or a copy of the bytes across devices."""
        temp = self.dir / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        copy = NewMessage(
            b"", meta.internal_date, meta.flags, meta.envelope, meta.bodystructure, meta.header
        )
        try:
            os.link(source, temp)
        except OSError:
            return self.prepare(replace(copy, content=source.read_bytes()))
        return self._prepared(temp, meta.size, copy)

    @staticmethod
    def _prepared(temp: Path, size: int, message: NewMessage) -> PreparedMessage:
        return PreparedMessage(
            temp,
            size,
            message.internal_date,
            message.flags,
            message.envelope,
            message.bodystructure,
            message.header,
        )

    def commit(self, messages: Sequence[PreparedMessage]) -> AppendResult:
        """Make prepared messages visible, batched with concurrent callers (group commit)."""
        request = _Request(messages)
        with self._pending_lock:
            self._pending.append(request)
        with self._commit_lock:
            if not request.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                try:
                    self._commit_batch(batch)
                except BaseException as exc:
                    for other in batch:
                        other.error = exc
                finally:
                    for other in batch:
                        other.done = True
        if request.error is not None:
            for message in messages[request.renamed :]:
                with contextlib.suppress(OSError):
                    os.unlink(message.temp)
            raise request.error
        assert request.result is not None
        return request.result

    def _commit_batch(self, batch: list[_Request]) -> None:
        with self.db.write() as conn:
            state = self._state(conn)
            uid, modseq = state.uidnext, state.highestmodseq
            rows, cache_rows, field_rows, keywords, added_bytes = [], [], [], set(), 0
            for request in batch:
                modseq += 1
                uids = []
                for message in request.messages:
                    mask, words = split_flags(message.flags)
                    keywords.update(words)
                    idate, tzmin = _to_columns(message.internal_date)
                    os.rename(message.temp, self.dir / message_file_name(uid))
                    request.renamed += 1
                    rows.append((uid, modseq, mask, " ".join(words), idate, tzmin, message.size))
                    if message.envelope or message.bodystructure or message.header:
                        cache_rows.append(
                            (uid, message.envelope, message.bodystructure, message.header)
                        )
                    field_rows.append(header_fields.row_of(uid, message.header))
                    added_bytes += message.size
                    uids.append(uid)
                    uid += 1
                request.result = AppendResult(state.uidvalidity, tuple(uids), modseq)
            if uid - 1 > MAX_UID:
                raise StoreError("the mailbox has used up its UIDs", temporary=False)
            self._add_keywords(conn, keywords)
            sync_directory(self.dir)  # the new names are durable before the rows commit
            header_fields.insert_rows(conn, field_rows)  # first: the trigger then leaves them
            conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO cache VALUES (?, ?, ?, ?)", cache_rows)
            conn.execute(
                "UPDATE state SET uidnext = ?, highestmodseq = ?, messages = messages + ?,"
                " bytes = bytes + ?",
                (uid, modseq, len(rows), added_bytes),
            )
        self.batches += 1

    @staticmethod
    def _add_keywords(conn: sqlite3.Connection, keywords: Iterable[str]) -> None:
        new = [
            k
            for k in keywords
            if not conn.execute("SELECT 1 FROM keywords WHERE name = ?", (k,)).fetchone()
        ]
        if new:
            count = conn.execute("SELECT count(*) FROM keywords").fetchone()[0]
            if count + len(new) > MAX_KEYWORDS:
                raise StoreError(f"a mailbox holds at most {MAX_KEYWORDS} keywords")
            conn.executemany("INSERT OR IGNORE INTO keywords VALUES (?)", [(k,) for k in new])

    # -- changing --

    def store_flags(
        self, uids: UidSet, change: FlagChange, viewer: Viewer, unchanged_since: int | None
    ) -> StoreResult:
        mask, words = split_flags(change.flags)
        seen_bit = mask & SEEN_BIT if viewer.private_seen else 0
        if viewer.private_seen:
            mask &= ~SEEN_BIT
        with self.db.write() as conn:
            state = self._state(conn)
            seen = self._seen(conn, viewer.user)
            modseq = state.highestmodseq + 1
            self._add_keywords(conn, words)
            updates: list[tuple[int, str, int, int]] = []
            seen_add: list[int] = []
            seen_remove: list[int] = []
            failed: list[int] = []
            changed_uids: list[int] = []
            for low, high in uids.ranges:
                for uid, row_modseq, old_mask, old_words in conn.execute(
                    "SELECT uid, modseq, sysflags, keywords FROM messages"
                    " WHERE uid BETWEEN ? AND ?",
                    (low, high),
                ).fetchall():
                    effective = max(row_modseq, seen.modseq) if viewer.private_seen else row_modseq
                    if unchanged_since is not None and effective > unchanged_since:
                        failed.append(uid)
                        continue
                    new_mask, new_words = apply_change(
                        change.mode, old_mask, old_words, mask, words
                    )
                    if viewer.private_seen:
                        new_mask = (new_mask & ~SEEN_BIT) | (old_mask & SEEN_BIT)
                        was_seen = uid in seen.uids
                        now_seen = apply_bit(change.mode, was_seen, bool(seen_bit))
                        if now_seen != was_seen:
                            (seen_add if now_seen else seen_remove).append(uid)
                            changed_uids.append(uid)
                    if (new_mask, new_words) != (old_mask, old_words):
                        updates.append((modseq, new_words, new_mask, uid))
                        changed_uids.append(uid)
            if updates:
                conn.executemany(
                    "UPDATE messages SET modseq = ?, keywords = ?, sysflags = ? WHERE uid = ?",
                    updates,
                )
            if seen_add or seen_remove:
                seen.uids = seen.uids.union(UidSet.of(seen_add)).difference(UidSet.of(seen_remove))
                seen.modseq = modseq
                self._put_seen(conn, viewer.user, seen)
            if changed_uids:
                conn.execute("UPDATE state SET highestmodseq = ?", (modseq,))
            changed = self._rows(conn, UidSet.of(changed_uids), viewer, cached=False)
        modseqs = (state.highestmodseq, modseq) if changed_uids else None
        return StoreResult(tuple(changed), UidSet.of(failed), modseqs)

    def expunge(self, uids: UidSet | None, *, deleted_only: bool = True) -> ExpungeResult:
        """Remove messages (those flagged \\Deleted unless ``deleted_only`` is False, and in
        ``uids`` if given)."""
        with self.db.write() as conn:
            state = self._state(conn)
            modseq = state.highestmodseq + 1
            sql = "SELECT uid, size FROM messages"
            if deleted_only:
                sql += f" WHERE sysflags & {DELETED_BIT}"
            candidates = conn.execute(sql).fetchall()
            gone = [(uid, size) for uid, size in candidates if uids is None or uid in uids]
            if gone:
                conn.executemany("DELETE FROM messages WHERE uid = ?", [(u,) for u, _ in gone])
                conn.executemany("DELETE FROM cache WHERE uid = ?", [(u,) for u, _ in gone])
                conn.executemany(
                    "INSERT OR REPLACE INTO expunged VALUES (?, ?)", [(u, modseq) for u, _ in gone]
                )
                self._prune_tombstones(conn)
                conn.execute(
                    "UPDATE state SET highestmodseq = ?, messages = messages - ?,"
                    " bytes = bytes - ?",
                    (modseq, len(gone), sum(size for _, size in gone)),
                )
            else:
                modseq = state.highestmodseq
        for uid, _ in gone:  # after the commit: a crash leaves orphan files, not dangling rows
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir / message_file_name(uid))
        modseqs = (state.highestmodseq, modseq) if gone else None
        return ExpungeResult(UidSet.of(u for u, _ in gone), modseq, modseqs)

    def message_path(self, uid: int) -> Path:
        return self.dir / message_file_name(uid)


def _with_private_seen(metas: list[MessageMeta], seen: _Seen) -> list[MessageMeta]:
    """The metadata as a user with private seen state sees it (module docstring of
    :mod:`posthouse.store.backend`: \\Seen from the user's set, MODSEQ at least its change)."""
    result = []
    for meta in metas:
        flags = meta.flags | SEEN_FLAG if meta.uid in seen.uids else meta.flags - SEEN_FLAG
        result.append(meta._replace(flags=flags, modseq=max(meta.modseq, seen.modseq)))
    return result


def sync_file(path: Path) -> None:
    """``fdatasync`` a file written by :meth:`MailboxIndex.prepare` with ``sync=False``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
