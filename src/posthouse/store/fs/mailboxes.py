"""The mailboxes list: one row per mailbox in ``mailboxes.db``, kept sorted by name.

The table is keyed by name (a ``WITHOUT ROWID`` B-tree, so the list is stored sorted, as
the chapter's mailboxes file is) and holds what Cyrus keeps there (partition, ACL; a
mailbox's quota root is not stored but found from its name, see
:mod:`posthouse.store.quota_roots`) plus the mailbox's id, UIDVALIDITY, creation time and
SPECIAL-USE attribute.  Every change is one transaction under the database's write lock,
so a subtree rename or a user's deletion is all or nothing.  UIDVALIDITY values come from
a counter kept in the same database: a mailbox created again under an old name never
reuses an old UIDVALIDITY.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from posthouse.store.backend import MailboxRecord
from posthouse.store.fs.layout import check_mailbox_id
from posthouse.store.fs.sqlite import Database

__all__ = ["MailboxList"]

_COLUMNS = "id, name, partition, acl, uidvalidity, created_at, special_use"


def _schema(conn: sqlite3.Connection) -> None:
    conn.executescript(
        """
        CREATE TABLE IF NOT EXISTS mailboxes (
            name TEXT PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            partition TEXT NOT NULL,
            acl TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            created_at REAL NOT NULL,
            special_use TEXT NOT NULL DEFAULT ''
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        """
    )


def _record(row: tuple[str, str, str, str, int, float, str]) -> MailboxRecord:
    return MailboxRecord(
        id=check_mailbox_id(row[0]),
        name=row[1],
        partition=row[2],
        acl=row[3],
        uidvalidity=row[4],
        created_at=row[5],
        special_use=row[6],
    )


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """``name >= low AND name < high`` selects the names starting with ``prefix``."""
    if not prefix:
        return "", None
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


class MailboxList:
    """The mailboxes list database."""

    def __init__(self, path: Path) -> None:
        self.db = Database(path, schema=_schema)

    def get(self, conn: sqlite3.Connection, name: str) -> MailboxRecord | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM mailboxes WHERE name = ?", (name,)).fetchone()
        return _record(row) if row else None

    def lookup(self, name: str) -> MailboxRecord | None:
        with self.db.read() as conn:
            return self.get(conn, name)

    def by_id(self, mailbox_id: str) -> MailboxRecord | None:
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
        return _record(row) if row else None

    def under(self, conn: sqlite3.Connection, prefix: str) -> list[MailboxRecord]:
        low, high = prefix_bounds(prefix)
        if high is None:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM mailboxes ORDER BY name")
        else:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM mailboxes WHERE name >= ? AND name < ? ORDER BY name",
                (low, high),
            )
        return [_record(row) for row in rows]

    def list(self, prefix: str = "") -> list[MailboxRecord]:
        with self.db.read() as conn:
            return self.under(conn, prefix)

    @staticmethod
    def next_uidvalidity(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM counters WHERE name = 'uidvalidity'").fetchone()
        value = max(int(time.time()), (row[0] if row else 0) + 1) % 2**32 or 1
        conn.execute(
            "INSERT INTO counters VALUES ('uidvalidity', ?)"
            " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (value,),
        )
        return value

    @staticmethod
    def insert(conn: sqlite3.Connection, record: MailboxRecord) -> None:
        conn.execute(
            f"INSERT INTO mailboxes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.name,
                record.partition,
                record.acl,
                record.uidvalidity,
                record.created_at,
                record.special_use,
            ),
        )

    @staticmethod
    def remove(conn: sqlite3.Connection, names: Iterable[str]) -> None:
        conn.executemany("DELETE FROM mailboxes WHERE name = ?", [(n,) for n in names])

    @staticmethod
    def rename(conn: sqlite3.Connection, pairs: Iterable[tuple[str, str]]) -> None:
        """Rename in two passes, through names no mailbox can have (NUL), so a target that
        is also a source (``a.b.b`` -> ``a.b``) never collides half-way."""
        pairs = list(pairs)
        parked = [("\0" + str(i), old) for i, (old, _) in enumerate(pairs)]
        conn.executemany("UPDATE mailboxes SET name = ? WHERE name = ?", parked)
        final = [(new, "\0" + str(i)) for i, (_, new) in enumerate(pairs)]
        conn.executemany("UPDATE mailboxes SET name = ? WHERE name = ?", final)

    @staticmethod
    def update(conn: sqlite3.Connection, name: str, column: str, value: str | None) -> None:
        if column not in ("acl", "partition"):
            raise ValueError(column)
        conn.execute(f"UPDATE mailboxes SET {column} = ? WHERE name = ?", (value, name))
