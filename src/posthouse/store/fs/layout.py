"""Where the file-system store keeps things; the only place that turns ids into paths.

Under the IMAP configuration directory (chapter 12.5.5)::

    mailboxes.db        the mailboxes list (SQLite, one row per mailbox, sorted by name)
    quota/quota.db      quota roots and their limits (usage: summed from the indexes)
    user/U.sub          user U's subscriptions (U escaped, see user_file_stem)
    notify.counters     per-mailbox change counters, shared by every process (mmap)

Under each partition directory, one folder per mailbox, named by the mailbox's id (32 hex
digits, assigned at creation and kept across renames), fanned out by its first two digits::

    PARTITION/ab/ab12...ef/   UID. files (one per message), index.db (+ -wal, -shm)

Mailbox names never reach the file system: a path is built from an id that
:func:`check_mailbox_id` accepts (hex only) or from a user name escaped by
:func:`user_file_stem` (one path component, never ``.`` or ``..``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from posthouse.store.errors import UnknownPartition

__all__ = ["FsLayout", "check_mailbox_id", "message_file_name", "user_file_stem"]

_ID = re.compile(r"[0-9a-f]{32}\Z")
_SAFE = re.compile(r"[A-Za-z0-9_-]")
_MAX_STEM = 200
TEMP_PREFIX = ".tmp-"


def check_mailbox_id(mailbox_id: str) -> str:
    if not _ID.match(mailbox_id):
        raise ValueError(f"not a mailbox id: {mailbox_id!r}")
    return mailbox_id


def message_file_name(uid: int) -> str:
    """Cyrus's message file name: the UID and a dot."""
    if uid < 1:
        raise ValueError("UIDs start at 1")
    return f"{uid}."


def user_file_stem(user: str) -> str:
    """A file name stem for ``user``: letters, digits, ``_`` and ``-`` kept, every other
    character as ``%XX`` of its UTF-8 bytes; a SHA-256 digest if that would be too long."""
    stem = "".join(
        ch if _SAFE.match(ch) else "".join(f"%{b:02X}" for b in ch.encode("utf-8")) for ch in user
    )
    if not stem or len(stem) > _MAX_STEM:
        return "%" + hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()
    return stem


@dataclass(frozen=True)
class FsLayout:
    """The configuration directory and the partitions (name -> directory)."""

    config_dir: Path
    partitions: Mapping[str, Path]
    default_partition: str = "default"

    def __post_init__(self) -> None:
        if self.default_partition not in self.partitions:
            raise ValueError(f"the default partition {self.default_partition!r} has no path")

    @property
    def mailboxes_db(self) -> Path:
        return self.config_dir / "mailboxes.db"

    @property
    def quota_dir(self) -> Path:
        return self.config_dir / "quota"

    @property
    def user_dir(self) -> Path:
        return self.config_dir / "user"

    @property
    def counters_file(self) -> Path:
        return self.config_dir / "notify.counters"

    def partition_dir(self, partition: str) -> Path:
        try:
            return self.partitions[partition]
        except KeyError:
            known = ", ".join(sorted(self.partitions))
            raise UnknownPartition(
                f"no partition named {partition!r} (configured: {known})"
            ) from None

    def mailbox_dir(self, partition: str, mailbox_id: str) -> Path:
        check_mailbox_id(mailbox_id)
        return self.partition_dir(partition) / mailbox_id[:2] / mailbox_id

    def subscriptions_file(self, user: str) -> Path:
        return self.user_dir / f"{user_file_stem(user)}.sub"

    def user_lock_file(self, user: str, purpose: str) -> Path:
        return self.user_dir / f"{user_file_stem(user)}.{purpose}.lock"
