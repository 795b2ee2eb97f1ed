"""Backing up and restoring the IMAP mailboxes list as administrative operations
(chapter 12.5.5 advises hourly backups): see :mod:`posthouse.store.fs.mailboxes_backup`.

A restore refuses a damaged backup, refuses while the daemon runs (its processes hold the
list open), and refuses a backup naming mailboxes whose folders are gone unless forced.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from posthouse.admin.daemon import LSB_OK, STATUS_UNKNOWN, daemon_status
from posthouse.admin.errors import InputMissing, InvalidRequest, StorageFailure, Unavailable
from posthouse.admin.mailstore import as_store_owner
from posthouse.config.schema import Settings
from posthouse.imap_layout import store_layout
from posthouse.store.fs.mailboxes_backup import (
    BackupCheck,
    backup_list,
    check_backup,
    restore_list,
)

__all__ = ["BackupCheck", "Restored", "backup", "check", "restore"]

_SHOWN = 10


def backup(settings: Settings, target: Path) -> int:
    """Copy the mailboxes list to ``target``; returns how many mailboxes it holds."""
    try:
        return backup_list(store_layout(settings), target)
    except FileNotFoundError as exc:
        raise InputMissing(str(exc)) from exc
    except (OSError, sqlite3.Error) as exc:
        raise StorageFailure(f"cannot back up the mailboxes list to {target}: {exc}") from exc


def check(settings: Settings, source: Path) -> BackupCheck:
    """Check ``source`` as a backup of this store's mailboxes list."""
    if not source.is_file():
        raise InputMissing(f"{source}: no such file")
    return check_backup(store_layout(settings), source)


def _some(names: tuple[str, ...]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


@dataclass(frozen=True)
class Restored:
    check: BackupCheck
    kept: Path | None  # where the replaced list is


def restore(settings: Settings, source: Path, *, force: bool = False) -> Restored:
    """Put the backup ``source`` in place of the mailboxes list, after checking it."""
    status = daemon_status(settings)
    if status.code in (LSB_OK, STATUS_UNKNOWN):
        raise Unavailable(f"{status.message}; stop it first (posthouse stop)")
    found = check(settings, source)
    if found.problems:
        raise InvalidRequest(f"{source} is damaged, nothing restored: " + "; ".join(found.problems))
    if found.missing and not force:
        raise InvalidRequest(
            f"{source} names {len(found.missing)} mailbox(es) whose files are gone:"
            f" {_some(found.missing)}; nothing restored (--force restores it anyway,"
            " then reconstruct gives those mailboxes empty indexes)"
        )
    try:
        with as_store_owner(settings):
            kept = restore_list(store_layout(settings), source)
    except (OSError, sqlite3.Error) as exc:
        raise StorageFailure(f"cannot restore the mailboxes list: {exc}") from exc
    return Restored(found, kept)
