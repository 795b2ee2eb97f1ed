"""Rebuilding a mailbox folder's index from its message files (chapter 12.5.5, Cyrus's
``reconstruct``).

The message files (``UID.``) are the truth about which messages exist and their sizes;
the old index is kept for what the files cannot give (flags, keywords, internal dates, each
user's seen state, MODSEQs, UIDVALIDITY, UIDNEXT, expunge tombstones) wherever it survives:

* a healthy index (``PRAGMA quick_check`` passes) is corrected in place, under its write
  lock, so a running server waits and then reads the result;
* a damaged one (truncated, overwritten, not a database) gives up what rows it still can,
  is set aside as ``index.db.damaged-TIME`` and replaced by a new file (every open
  connection follows the path to it, :mod:`.sqlite`);
* a missing one is rebuilt from the files and the mailboxes list alone.

A file the index does not list appears (flags empty, internal date the file's mtime); it
keeps its UID unless that UID may have been seen before (below an intact index's UIDNEXT,
or expunged): then it gets a new one.  An index entry without a file is dropped, leaving a
tombstone (QRESYNC clients learn it VANISHED).  Temporary files of writers that are no
longer running are removed.  HIGHESTMODSEQ never goes backward: every change gets a MODSEQ
above all the old index holds, and when its state row is lost, above the current time in
seconds (no mailbox makes that many changes).  When UIDNEXT is lost with it, old UIDs could
come back, so the mailbox gets a new UIDVALIDITY, as RFC 3501 §2.3.1.1 requires.

The quota usage is not adjusted (the chapter: run ``imapquota -f`` afterwards).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posthouse.durable import sync_directory
from posthouse.store.backend import ReconstructReport
from posthouse.store.errors import StoreError
from posthouse.store.fs import header_fields
from posthouse.store.fs.index_schema import create_schema
from posthouse.store.fs.layout import TEMP_PREFIX, message_file_name
from posthouse.store.fs.metacache import ROW_COLUMNS
from posthouse.store.fs.sqlite import Database, open_read_only
from posthouse.store.uidset import MAX_UID

__all__ = ["reconstruct_folder"]

_MESSAGE_FILE = re.compile(r"([1-9][0-9]{0,9})\.\Z")
_TEMP_FILE = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")
_INDEX_FILES = ("index.db", "index.db-wal", "index.db-shm")
_ROW = tuple[int, int, int, str, int, int, int]  # uid, modseq, sysflags, keywords, idate, tz, size


@dataclass
class _Salvage:
    """What the old index still holds."""

    state: tuple[int, int, int] | None = None  # uidvalidity, uidnext, highestmodseq
    rows: dict[int, _ROW] = field(default_factory=dict)
    cache: list[tuple[int, bytes | None, bytes | None, bytes | None]] = field(default_factory=list)
    expunged: dict[int, int] = field(default_factory=dict)
    seen: list[tuple[str, str, int, int]] = field(default_factory=list)
    keywords: set[str] = field(default_factory=set)


@dataclass
class _Files:
    messages: dict[int, os.stat_result] = field(default_factory=dict)
    temporary: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)


def _scan(directory: Path) -> _Files:
    files = _Files()
    for entry in os.scandir(directory):
        match = _MESSAGE_FILE.match(entry.name)
        if match and int(match.group(1)) <= MAX_UID and entry.is_file(follow_symlinks=False):
            files.messages[int(match.group(1))] = entry.stat(follow_symlinks=False)
        elif entry.name.startswith(TEMP_PREFIX):
            files.temporary.append(entry.name)
        elif entry.name not in _INDEX_FILES and not entry.name.startswith("index.db."):
            files.strays.append(entry.name)
    return files


def _writer_gone(name: str) -> bool:
    """Whether the process that wrote temporary file ``name`` has ended."""
    match = _TEMP_FILE.match(name)
    if not match:
        return True
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def _rows(conn: sqlite3.Connection, sql: str) -> list[tuple[Any, ...]]:
    """The rows of ``sql``; from a damaged database, those it gives up to the first error."""
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.Error:
        rows: list[tuple[Any, ...]] = []
        with contextlib.suppress(sqlite3.Error):
            rows.extend(conn.execute(sql))
        return rows


def _salvage(conn: sqlite3.Connection, damaged_uids: Iterable[int] | None = None) -> _Salvage:
    """What the old index holds.  For a damaged index (``damaged_uids``: the UIDs of the
    message files) every value is checked, the rows of those UIDs are also looked up one by
    one, past the pages a whole-table read stops at, and the cached blobs are kept."""
    found = _Salvage()
    for row in _rows(conn, "SELECT uidvalidity, uidnext, highestmodseq FROM state"):
        found.state = (int(row[0]), int(row[1]), int(row[2]))
    sql = f"SELECT {ROW_COLUMNS} FROM messages"
    if damaged_uids is None:  # an intact index: written by the store, the types are right
        found.rows = {row[0]: row for row in _rows(conn, sql)}
    else:
        for row in _rows(conn, sql):
            _add_row(found, row)
        for uid in damaged_uids:
            if uid not in found.rows:
                for row in _rows(conn, sql + f" WHERE uid = {int(uid)}"):
                    _add_row(found, row)
        found.cache = _rows(conn, "SELECT uid, envelope, bodystructure, header FROM cache")
    for row in _rows(conn, "SELECT uid, modseq FROM expunged"):
        found.expunged[int(row[0])] = int(row[1])
    for row in _rows(conn, "SELECT user, uids, recent_uid, modseq FROM seen"):
        found.seen.append(row)
    for row in _rows(conn, "SELECT name FROM keywords"):
        found.keywords.add(str(row[0]))
    return found


def _add_row(found: _Salvage, row: tuple[Any, ...]) -> None:
    uid, modseq, sysflags, keywords, idate, tzmin, size = row
    if isinstance(uid, int) and 1 <= uid <= MAX_UID:
        row = (uid, int(modseq), int(sysflags), str(keywords), int(idate), int(tzmin), int(size))
        found.rows[uid] = row


def _healthy(path: Path, mailbox_id: str) -> bool:
    """Whether the index at ``path`` is an intact database of this mailbox."""
    if not path.exists():
        return False
    try:
        conn = open_read_only(path)
    except sqlite3.Error:
        return False
    try:
        if conn.execute("PRAGMA quick_check").fetchone() != ("ok",):
            return False
        row = conn.execute("SELECT mailbox_id FROM state").fetchone()
        return row is not None and row[0] == mailbox_id
    except sqlite3.Error:
        return False
    finally:
        conn.close()


@dataclass
class _Plan:
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    rows: list[_ROW]
    tombstones: dict[int, int]
    renumbered: list[tuple[int, int]]
    report: ReconstructReport
    changed: bool


def _plan(
    name: str, salvage: _Salvage, files: _Files, intact: bool, new_uidvalidity: Callable[[], int]
) -> _Plan:
    modseqs = [salvage.state[2] if salvage.state else 0]
    modseqs += [row[1] for row in salvage.rows.values()] + list(salvage.expunged.values())
    modseqs += [int(seen[3]) for seen in salvage.seen]
    if salvage.state is None:
        modseqs.append(int(time.time()))
        uidvalidity = new_uidvalidity()
    else:
        uidvalidity = salvage.state[0]
    modseq = max(modseqs) + 1
    old_uidnext = salvage.state[1] if salvage.state else 1
    rows: list[_ROW] = []
    appeared: list[int] = []
    resized: list[int] = []
    renumber: list[int] = []
    for uid in sorted(files.messages):
        stat = files.messages[uid]
        old = salvage.rows.get(uid)
        if old is not None:
            if old[6] != stat.st_size:  # the file is the truth about the size
                old = (*old[:1], modseq, *old[2:6], stat.st_size)
                resized.append(uid)
            rows.append(old)
        elif (intact and uid < old_uidnext) or uid in salvage.expunged:
            renumber.append(uid)  # clients may have seen this UID: a new one
        else:
            rows.append((uid, modseq, 0, "", int(stat.st_mtime), 0, stat.st_size))
            appeared.append(uid)
    next_uid = max([old_uidnext, *(row[0] + 1 for row in rows)])
    renumbered = []
    for uid in renumber:
        stat = files.messages[uid]
        rows.append((next_uid, modseq, 0, "", int(stat.st_mtime), 0, stat.st_size))
        renumbered.append((uid, next_uid))
        next_uid += 1
    if next_uid - 1 > MAX_UID:
        raise StoreError(f"{name}: the mailbox has used up its UIDs", temporary=False)
    dropped = sorted(set(salvage.rows) - set(files.messages))
    tombstones = dict(salvage.expunged)
    tombstones.update((uid, modseq) for uid in dropped)
    changed = bool(appeared or renumbered or dropped or resized) or not intact
    report = ReconstructReport(
        name=name,
        messages=len(rows),
        kept=len(rows) - len(appeared) - len(renumbered),
        appeared=tuple(appeared) + tuple(new for _, new in renumbered),
        dropped=tuple(dropped),
        renumbered=tuple(renumbered),
        uidvalidity=uidvalidity if salvage.state is None else None,
    )
    return _Plan(
        uidvalidity,
        next_uid,
        modseq if changed else max(modseqs),
        sorted(rows),
        tombstones,
        renumbered,
        report,
        changed,
    )


def _fill(conn: sqlite3.Connection, mailbox_id: str, plan: _Plan, salvage: _Salvage) -> None:
    """Write the planned index into ``conn`` (inside a transaction)."""
    for table in ("state", "messages", "expunged", "seen", "keywords"):
        conn.execute(f"DELETE FROM {table}")
    kept = {row[0] for row in plan.rows}
    conn.execute(
        "DELETE FROM cache WHERE uid NOT IN (SELECT value FROM json_each(?))", (_json(kept),)
    )
    conn.execute(
        "INSERT INTO state VALUES (1, ?, ?, ?, ?, ?, ?, 0)",
        (
            mailbox_id,
            plan.uidvalidity,
            plan.uidnext,
            plan.highestmodseq,
            len(plan.rows),
            sum(row[6] for row in plan.rows),
        ),
    )
    conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)", plan.rows)
    conn.executemany("INSERT OR REPLACE INTO expunged VALUES (?, ?)", plan.tombstones.items())
    conn.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)", salvage.seen)
    words = set(salvage.keywords)
    for row in plan.rows:
        if row[3]:
            words.update(row[3].split(" "))
    conn.executemany("INSERT OR IGNORE INTO keywords VALUES (?)", [(w,) for w in words])


def _json(uids: set[int]) -> str:
    return "[" + ",".join(map(str, uids)) + "]"


def _renumber(directory: Path, plan: _Plan) -> None:
    for old, new in plan.renumbered:
        os.rename(directory / message_file_name(old), directory / message_file_name(new))
    if plan.renumbered:
        sync_directory(directory)


def reconstruct_folder(
    directory: Path, mailbox_id: str, name: str, new_uidvalidity: Callable[[], int]
) -> ReconstructReport:
    """Rebuild the index of the mailbox folder ``directory`` (see the module docstring);
    ``new_uidvalidity`` gives the UIDVALIDITY to take if the index's state is lost."""
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True)
        sync_directory(directory.parent)
    path = directory / "index.db"
    if _healthy(path, mailbox_id):
        database = Database(path, schema=create_schema)
        try:
            with database.write() as conn:
                files = _scan(directory)
                salvage = _salvage(conn)
                plan = _plan(name, salvage, files, True, new_uidvalidity)
                if plan.changed:
                    _renumber(directory, plan)
                    _fill(conn, mailbox_id, plan, salvage)
                    header_fields.refill(conn)
        finally:
            database.close()
        replaced = None
    else:
        salvage = _Salvage()
        files = _scan(directory)
        if path.exists():
            with contextlib.suppress(sqlite3.Error):
                old = open_read_only(path)
                try:  # a file shorter than its header says is read as far as it goes
                    old.execute("PRAGMA writable_schema=ON")
                    salvage = _salvage(old, files.messages)
                finally:
                    old.close()
            if salvage.state is not None and not _same_mailbox(path, mailbox_id):
                salvage = _Salvage()  # another mailbox's index: nothing of it applies here
        plan = _plan(name, salvage, files, False, new_uidvalidity)
        replaced = _replace(directory, mailbox_id, plan, salvage)
    removed = []
    for temp in files.temporary:
        if _writer_gone(temp):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / temp)
            removed.append(temp)
    report = plan.report
    report.temporary_removed = tuple(removed)
    report.strays = tuple(sorted(files.strays))
    report.damaged_index = replaced
    report.changed = plan.changed or bool(removed)
    return report


def _same_mailbox(path: Path, mailbox_id: str) -> bool:
    try:
        conn = open_read_only(path)
        try:
            row = conn.execute("SELECT mailbox_id FROM state").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return True  # unreadable: what rows there are can only be this folder's
    return row is None or row[0] == mailbox_id


def _replace(directory: Path, mailbox_id: str, plan: _Plan, salvage: _Salvage) -> str | None:
    """Write the planned index to a new file and put it in place of the damaged one;
    returns the name the damaged file was set aside under (None if there was none)."""
    path = directory / "index.db"
    fresh = directory / "index.db.rebuild"
    for leftover in (fresh, directory / "index.db.rebuild-journal"):
        leftover.unlink(missing_ok=True)
    conn = sqlite3.connect(fresh, isolation_level=None)
    try:
        create_schema(conn)
        conn.execute("BEGIN")
        _fill(conn, mailbox_id, plan, salvage)
        conn.executemany(
            "INSERT OR IGNORE INTO cache SELECT ?, ?, ?, ? WHERE EXISTS"
            " (SELECT 1 FROM messages WHERE uid = ?)",
            [(*row, row[0]) for row in salvage.cache],
        )
        header_fields.refill(conn)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    fd = os.open(fresh, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    aside = None
    if path.exists():
        aside = f"index.db.damaged-{int(time.time())}"
        os.rename(path, directory / aside)
    for suffix in ("-wal", "-shm"):  # the damaged database's: never to be applied to the new
        (directory / f"index.db{suffix}").unlink(missing_ok=True)
    _renumber(directory, plan)
    os.rename(fresh, path)
    sync_directory(directory)
    return aside
