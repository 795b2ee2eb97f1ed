"""Quota roots and their usage, in ``quota/quota.db`` (chapter 12.5.8, RFC 9208 STORAGE).

One row per root: its limit in kilobytes (NULL: none) and the bytes its mailboxes use.
Usage is adjusted right after each committed change of a mailbox that names the root (a
second transaction: a crash in between leaves usage off by that change, which
``imapquota -f`` recomputes from the mailbox indexes, where each mailbox's byte count is
exact).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from posthouse.store.backend import QuotaUsage
from posthouse.store.fs.sqlite import Database

__all__ = ["QuotaRoots"]


def _schema(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS roots (root TEXT PRIMARY KEY,"
        " limit_kb INTEGER, used_bytes INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
    )


class QuotaRoots:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = Database(path, schema=_schema)

    def get(self, root: str) -> QuotaUsage | None:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT limit_kb, used_bytes FROM roots WHERE root = ?", (root,)
            ).fetchone()
        return QuotaUsage(root, row[0], row[1]) if row else None

    def set(self, root: str, limit_kb: int | None, used_bytes: int) -> QuotaUsage:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO roots VALUES (?, ?, ?) ON CONFLICT(root) DO UPDATE"
                " SET limit_kb = excluded.limit_kb, used_bytes = excluded.used_bytes",
                (root, limit_kb, used_bytes),
            )
        return QuotaUsage(root, limit_kb, used_bytes)

    def remove(self, root: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM roots WHERE root = ?", (root,))

    def add_usage(self, root: str, delta: int) -> None:
        if delta:
            with self.db.write() as conn:
                conn.execute(
                    "UPDATE roots SET used_bytes = max(0, used_bytes + ?) WHERE root = ?",
                    (delta, root),
                )
