"""Quota roots and their limits, in ``quota/quota.db`` (chapter 12.5.8, RFC 9208 STORAGE).

One row per root under the configuration directory's ``quota/``: its name and its limit in
kilobytes.  Removing the row lifts the limit (``SETQUOTA root ()``); the mailboxes then
count towards the next root above, if any.  Which root limits a mailbox is computed from
the names (:mod:`posthouse.store.quota_roots`), never stored per mailbox.

**Usage is not stored here.**  Each mailbox's index keeps its own message bytes, changed in
the same transaction as the messages (:mod:`.index`); a root's usage is the sum over the
mailboxes it limits, counted when asked (:meth:`FsBackend.quota
<posthouse.store.fs.backend.FsBackend.quota>`).  So an append or expunge writes only its own
mailbox's index, never a database every process shares, and usage can never drift from the
messages: a crash, a rename, a ``reconstruct`` or a restored mailboxes list leaves nothing
to repair.  ``imapquota -f`` still recounts each index's bytes row by row.  A database
written before this held ``used_bytes`` per root; the column is ignored.

**Why rows of one database, not one file per root** (Cyrus's ``quotalegacy``): a crash
during a rewrite of a root's file could lose the limit itself.  The administrator's
"remove the quota file" of the chapter is ``SETQUOTA root ()`` (or ``cyradm``'s
``setquota root none``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from posthouse.store.fs.mailboxes import prefix_bounds
from posthouse.store.fs.sqlite import Database
from posthouse.store.names import children_prefix
from posthouse.store.quota_roots import candidate_roots

__all__ = ["QuotaRoots", "RootLimit"]


@dataclass(frozen=True)
class RootLimit:
    """A quota root and its limit in KB (None: no limit, the root only groups usage)."""

    root: str
    limit_kb: int | None


def _schema(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS roots (root TEXT PRIMARY KEY, limit_kb INTEGER) WITHOUT ROWID"
    )


class QuotaRoots:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = Database(path, schema=_schema)

    def get(self, root: str) -> RootLimit | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT limit_kb FROM roots WHERE root = ?", (root,)).fetchone()
        return RootLimit(root, row[0]) if row else None

    def limiting(self, name: str, *, exact: bool = False) -> tuple[RootLimit, list[str]] | None:
        """The root that limits mailbox ``name`` (with ``exact``: the root ``name`` itself)
        and the names of the roots below it, read together; None without such a root."""
        candidates = [name] if exact else candidate_roots(name)
        marks = ", ".join("?" * len(candidates))
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT root, limit_kb FROM roots WHERE root IN ({marks})"
                " ORDER BY length(root) DESC LIMIT 1",
                candidates,
            ).fetchone()
            if row is None:
                return None
            low, high = prefix_bounds(children_prefix(row[0]))
            lower = conn.execute(
                "SELECT root FROM roots WHERE root >= ? AND root < ?", (low, high)
            ).fetchall()
        return RootLimit(row[0], row[1]), [r[0] for r in lower]

    def list(self, prefix: str = "") -> list[RootLimit]:
        low, high = prefix_bounds(prefix)
        with self.db.read() as conn:
            if high is None:
                rows = conn.execute("SELECT root, limit_kb FROM roots ORDER BY root")
            else:
                rows = conn.execute(
                    "SELECT root, limit_kb FROM roots WHERE root >= ? AND root < ? ORDER BY root",
                    (low, high),
                )
            return [RootLimit(*row) for row in rows]

    def set_limit(self, root: str, limit_kb: int | None) -> None:
        """Create the root or change its limit."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO roots (root, limit_kb) VALUES (?, ?)"
                " ON CONFLICT(root) DO UPDATE SET limit_kb = excluded.limit_kb",
                (root, limit_kb),
            )

    def remove(self, root: str) -> bool:
        with self.db.write() as conn:
            return conn.execute("DELETE FROM roots WHERE root = ?", (root,)).rowcount > 0

    def rename(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Give roots new names (a renamed mailbox that is a root keeps its limit)."""
        with self.db.write() as conn:
            for old, new in pairs:
                conn.execute("UPDATE OR REPLACE roots SET root = ? WHERE root = ?", (new, old))
