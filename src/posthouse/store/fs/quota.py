"""Quota roots and their usage, in ``quota/quota.db`` (chapter 12.5.8, RFC 9208 STORAGE).

One row per root under the configuration directory's ``quota/``: its name, its limit in
kilobytes and the bytes its mailboxes use.  Removing the row lifts the limit (``SETQUOTA
root ()``); the mailboxes then count towards the next root above, if any.  Which root limits
a mailbox is computed from the names (:mod:`posthouse.store.quota_roots`), never stored per
mailbox.

**Why rows of one database, not one file per root** (Cyrus's ``quotalegacy``): usage
changes with every append, copy and expunge, from every server process at once.  Here that
is one ``UPDATE`` in a write-ahead-logged transaction under SQLite's cross-process lock,
the same durability rule as the mailbox indexes; per-root files would need a lock file, a
rewrite and a rename with a directory ``fsync`` per message, and a crash during a rewrite
could lose the limit itself.  The administrator's "remove the quota file" of the chapter is
``SETQUOTA root ()`` (or ``cyradm``'s ``setquota root none``), and ``imapquota -f``
recomputes every usage from the mailbox indexes, as the chapter has it.

Usage is adjusted right after each committed change of a mailbox (a second transaction: a
crash in between leaves usage off by that change, which ``imapquota -f`` repairs from the
indexes, where each message's size is exact).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

from posthouse.store.backend import QuotaUsage
from posthouse.store.fs.mailboxes import prefix_bounds
from posthouse.store.fs.sqlite import Database
from posthouse.store.quota_roots import candidate_roots

__all__ = ["QuotaRoots"]


def _schema(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS roots (root TEXT PRIMARY KEY,"
        " limit_kb INTEGER, used_bytes INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
    )


def _nearest_sql(name: str) -> tuple[str, list[str]]:
    """A subquery naming the root that limits mailbox ``name`` (longest matching name)."""
    candidates = candidate_roots(name)
    marks = ", ".join("?" * len(candidates))
    return (
        f"SELECT root FROM roots WHERE root IN ({marks}) ORDER BY length(root) DESC LIMIT 1",
        candidates,
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

    def nearest(self, name: str) -> QuotaUsage | None:
        """The root that limits mailbox ``name``, with its usage, or None."""
        sql, candidates = _nearest_sql(name)
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT root, limit_kb, used_bytes FROM roots WHERE root = ({sql})", candidates
            ).fetchone()
        return QuotaUsage(row[0], row[1], row[2]) if row else None

    def list(self, prefix: str = "") -> list[QuotaUsage]:
        low, high = prefix_bounds(prefix)
        with self.db.read() as conn:
            if high is None:
                rows = conn.execute("SELECT root, limit_kb, used_bytes FROM roots ORDER BY root")
            else:
                rows = conn.execute(
                    "SELECT root, limit_kb, used_bytes FROM roots"
                    " WHERE root >= ? AND root < ? ORDER BY root",
                    (low, high),
                )
            return [QuotaUsage(*row) for row in rows]

    def set_limit(self, root: str, limit_kb: int | None) -> bool:
        """Create the root or change its limit; True when it is new (usage still 0)."""
        with self.db.write() as conn:
            cursor = conn.execute("UPDATE roots SET limit_kb = ? WHERE root = ?", (limit_kb, root))
            if cursor.rowcount:
                return False
            conn.execute("INSERT INTO roots VALUES (?, ?, 0)", (root, limit_kb))
            return True

    def remove(self, root: str) -> bool:
        with self.db.write() as conn:
            return conn.execute("DELETE FROM roots WHERE root = ?", (root,)).rowcount > 0

    def rename(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Give roots new names (a renamed mailbox that is a root keeps its limit)."""
        with self.db.write() as conn:
            for old, new in pairs:
                conn.execute("UPDATE OR REPLACE roots SET root = ? WHERE root = ?", (new, old))

    def add_usage(self, name: str, delta: int) -> None:
        """Add ``delta`` bytes to the root that limits mailbox ``name`` (if any).  The root is
        looked up first without the write lock: most mailboxes have none."""
        if not delta:
            return
        root = self.nearest(name)
        if root is not None:
            with self.db.write() as conn:
                conn.execute(
                    "UPDATE roots SET used_bytes = max(0, used_bytes + ?) WHERE root = ?",
                    (delta, root.root),
                )

    def set_usage(self, used: Mapping[str, int]) -> None:
        """Replace the usage of these roots (those that still exist) in one transaction."""
        with self.db.write() as conn:
            conn.executemany(
                "UPDATE roots SET used_bytes = ? WHERE root = ?",
                [(size, root) for root, size in used.items()],
            )
