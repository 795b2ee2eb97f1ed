"""Moving a mailbox's folder to another partition (chapter 12.5.9), crash-safe.

The mailbox is whole in one place or the other at every instant; the mailboxes list's
``partition`` column says which.  The steps, each durable before the next:

1. an intent record ``moves/ID`` in the configuration directory (``ID FROM TO``), locked
   (``flock``) by the mover for as long as it works;
2. under the old index's write lock (nobody changes the mailbox meanwhile), every message
   file and a copy of the index (SQLite's backup API) are written to the new folder and
   ``fsync``\\ ed, then the old index is marked *superseded* (processes that hold it open
   look the mailbox up again instead of writing to it);
3. the mailboxes list switches the partition (one transaction: the commit point);
4. the old folder is removed, then the intent record.

:func:`recover_moves` finishes or undoes what a crash interrupted, from the intent records
whose mover is gone (their lock is free): before the switch the new folder is removed and
the old index unmarked; after it, the old folder is removed.  The backend runs it whenever
it opens the store.  ``STEPS`` names the points between the steps, for tests that crash
the move at each of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from posthouse.durable import sync_directory
from posthouse.store.backend import MailboxRecord
from posthouse.store.errors import MailboxNotFound, StoreError
from posthouse.store.fs.index import SUPERSEDED, MailboxIndex
from posthouse.store.fs.layout import TEMP_PREFIX, FsLayout, check_mailbox_id
from posthouse.store.fs.mailboxes import MailboxList

__all__ = ["STEPS", "move_folder", "recover_moves"]

STEPS = ("intent", "copied", "superseded", "switched", "removed")
_INDEX_FILES = ("index.db", "index.db-wal", "index.db-shm")


def _intent_dir(layout: FsLayout) -> Path:
    return layout.config_dir / "moves"


def _copy_file(source: Path, target: Path) -> None:
    """A durable copy of a message file (a hard link within one file system)."""
    try:
        os.link(source, target)
        return
    except OSError:
        pass
    with open(source, "rb") as reader, open(target, "xb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
        writer.flush()
        os.fdatasync(writer.fileno())


def _copy_index(source: Path, target: Path) -> None:
    """A consistent copy of an index database, durable in WAL mode like the original."""
    reader = sqlite3.connect(source)
    writer = sqlite3.connect(target)
    try:
        reader.backup(writer)
        writer.execute("PRAGMA journal_mode=WAL")
    finally:
        writer.close()
        reader.close()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_folder(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
        sync_directory(directory.parent)


def move_folder(
    layout: FsLayout,
    mailboxes: MailboxList,
    index: MailboxIndex,
    record: MailboxRecord,
    partition: str,
    crash: Callable[[str], None] = lambda step: None,
) -> MailboxRecord:
    """Move ``record``'s folder (opened as ``index``) to ``partition``; returns the record
    as the list now holds it.  ``crash(step)`` is called after each step (tests)."""
    old_dir = index.dir
    new_dir = layout.mailbox_dir(partition, record.id)
    intents = _intent_dir(layout)
    intents.mkdir(mode=0o700, exist_ok=True)
    intent = intents / record.id
    fd = os.open(intent, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{record.id} {record.partition} {partition}\n".encode())
        os.fsync(fd)
        sync_directory(intents)
        crash("intent")
        with index.db.write() as conn:
            index.check_live(conn)
            new_dir.mkdir(mode=0o700, parents=True)
            for entry in os.scandir(old_dir):
                if entry.name in _INDEX_FILES or entry.name.startswith(TEMP_PREFIX):
                    continue
                _copy_file(Path(entry.path), new_dir / entry.name)
            _copy_index(old_dir / "index.db", new_dir / "index.db")
            sync_directory(new_dir)
            sync_directory(new_dir.parent)
            sync_directory(new_dir.parent.parent)
            crash("copied")
            conn.execute("UPDATE state SET deleted = ?", (SUPERSEDED,))
        crash("superseded")
        with mailboxes.db.write() as conn:
            current = mailboxes.get(conn, record.name)
            if current is None or current.id != record.id:
                raise MailboxNotFound(f"mailbox {record.name} was deleted meanwhile")
            mailboxes.update(conn, record.name, "partition", partition)
            moved = mailboxes.get(conn, record.name)
        crash("switched")
        index.db.close()
        _remove_folder(old_dir)
        crash("removed")
        intent.unlink()
        sync_directory(intents)
    finally:
        os.close(fd)
    assert moved is not None
    return moved


def recover_moves(layout: FsLayout, mailboxes: MailboxList) -> list[str]:
    """Finish or undo the moves a crash interrupted; returns the ids of those mailboxes."""
    intents = _intent_dir(layout)
    try:
        entries = list(os.scandir(intents))
    except FileNotFoundError:
        return []
    recovered = []
    for entry in entries:
        fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its mover is still at work
            _recover(layout, mailboxes, Path(entry.path))
            recovered.append(entry.name)
        finally:
            os.close(fd)
    return recovered


def _recover(layout: FsLayout, mailboxes: MailboxList, intent: Path) -> None:
    fields = intent.read_text("ascii", "replace").split()
    if len(fields) != 3:  # the crash came before the record was durable: nothing moved yet
        intent.unlink()
        return
    mailbox_id, source, target = check_mailbox_id(fields[0]), fields[1], fields[2]
    record = mailboxes.by_id(mailbox_id)
    old_dir = layout.mailbox_dir(source, mailbox_id)
    new_dir = layout.mailbox_dir(target, mailbox_id)
    if record is None:  # deleted since: neither folder is wanted
        _remove_folder(new_dir)
        _remove_folder(old_dir)
    elif record.partition == target:  # switched: the new folder is the mailbox
        _remove_folder(old_dir)
    elif record.partition == source:  # not switched: the old folder still is
        _remove_folder(new_dir)
        if (old_dir / "index.db").exists():
            old = MailboxIndex(old_dir, mailbox_id)
            with contextlib.suppress(StoreError):
                old.mark_deleted(0)
            old.db.close()
    else:
        raise StoreError(f"mailbox {mailbox_id} is on neither {source} nor {target}")
    intent.unlink()
    sync_directory(intent.parent)
