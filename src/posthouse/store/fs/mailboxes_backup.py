"""Backing up and restoring the mailboxes list (chapter 12.5.5: it holds the ACLs, which
nothing else can rebuild, so back it up often, even hourly).

:func:`backup_list` copies ``mailboxes.db`` with SQLite's online backup API: a consistent
copy while the server runs and writes, made durable (temporary file, ``fsync``, rename).
:func:`check_backup` reads a backup without trusting it: SQLite's integrity check, the
table and its columns, every row (a mailbox id, a valid name, a configured partition, a
UIDVALIDITY), and then whether each mailbox's folder exists in its partition and which
folders of the partitions no row names (mailboxes created after the backup).
:func:`restore_list` puts a checked backup in place of the list, keeping the list it
replaces beside it (``mailboxes.db.before-restore-TIME``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from posthouse.durable import sync_directory
from posthouse.store.fs.layout import FsLayout
from posthouse.store.fs.sqlite import open_read_only
from posthouse.store.names import InvalidName, check_name

__all__ = ["BackupCheck", "backup_list", "check_backup", "restore_list"]

_ID = re.compile(r"[0-9a-f]{32}\Z")
_COLUMNS = {
    "id",
    "name",
    "partition",
    "acl",
    "uidvalidity",
    "created_at",
    "special_use",
}
_MAX_PROBLEMS = 20


@dataclass(frozen=True)
class BackupCheck:
    """What :func:`check_backup` found."""

    mailboxes: int
    problems: tuple[str, ...]  # the backup is damaged: never restore it
    missing: tuple[str, ...]  # names whose folder is not in their partition
    unlisted: tuple[str, ...]  # folders (partition/id) that no row of the backup names


def _copy(source: Path, target: Path) -> int:
    """A consistent, durable copy of database ``source`` at ``target``; returns its rows."""
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    reader = open_read_only(source)
    writer = sqlite3.connect(temporary)
    try:
        reader.backup(writer)
        writer.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        count: int = writer.execute("SELECT count(*) FROM mailboxes").fetchone()[0]
    finally:
        writer.close()
        reader.close()
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)
    sync_directory(target.parent)
    return count


def backup_list(layout: FsLayout, target: Path) -> int:
    """Copy the mailboxes list to ``target`` (safe while the server runs); returns the
    number of mailboxes copied."""
    if not layout.mailboxes_db.exists():
        raise FileNotFoundError(f"{layout.mailboxes_db}: no mailboxes list here")
    return _copy(layout.mailboxes_db, target)


def check_backup(layout: FsLayout, backup: Path) -> BackupCheck:
    """Read ``backup`` as a mailboxes list and check it (see the module docstring)."""
    problems: list[str] = []
    rows: list[tuple[object, ...]] = []
    try:
        conn = open_read_only(backup)
        try:
            verdict = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
            if verdict != ["ok"]:
                problems += [f"integrity check: {line}" for line in verdict]
            columns = {row[1] for row in conn.execute("PRAGMA table_info(mailboxes)")}
            if columns != _COLUMNS:
                problems.append("no mailboxes table with the columns posthouse writes")
            else:
                rows = conn.execute(
                    "SELECT id, name, partition, uidvalidity FROM mailboxes"
                ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        problems.append(f"not a readable SQLite database: {exc}")
    listed: set[tuple[str, str]] = set()
    missing: list[str] = []
    for mailbox_id, name, partition, uidvalidity in rows:
        where = f"mailbox {name!r}"
        if not isinstance(mailbox_id, str) or not _ID.match(mailbox_id):
            problems.append(f"{where}: {mailbox_id!r} is not a mailbox id")
            continue
        try:
            check_name(str(name))
        except InvalidName as exc:
            problems.append(f"{where}: {exc}")
        if not isinstance(uidvalidity, int) or not 0 < uidvalidity < 2**32:
            problems.append(f"{where}: UIDVALIDITY {uidvalidity!r} is out of range")
        if partition not in layout.partitions:
            problems.append(f"{where}: partition {partition!r} is not configured")
            continue
        listed.add((str(partition), mailbox_id))
        if not (layout.mailbox_dir(str(partition), mailbox_id) / "index.db").exists():
            missing.append(str(name))
    unlisted = [
        f"{partition}/{entry.name}"
        for partition, directory in layout.partitions.items()
        if directory.is_dir()
        for fan in directory.iterdir()
        if fan.is_dir()
        for entry in fan.iterdir()
        if _ID.match(entry.name) and (partition, entry.name) not in listed
    ]
    return BackupCheck(
        len(rows), tuple(problems[:_MAX_PROBLEMS]), tuple(sorted(missing)), tuple(sorted(unlisted))
    )


def restore_list(layout: FsLayout, backup: Path) -> Path | None:
    """Put ``backup`` (checked, the server stopped) in place of the mailboxes list; returns
    where the replaced list was kept (None if there was none)."""
    current = layout.mailboxes_db
    incoming = current.with_name("mailboxes.db.restore")
    _copy(backup, incoming)
    kept = None
    if current.exists():
        kept = current.with_name(f"mailboxes.db.before-restore-{int(time.time())}")
        _copy(current, kept)
    os.replace(incoming, current)
    for suffix in ("-wal", "-shm"):  # the replaced list's: never to be applied to this one
        current.with_name(current.name + suffix).unlink(missing_ok=True)
    sync_directory(current.parent)
    return kept
