"""The tables of a mailbox's ``index.db`` (what Cyrus splits over cyrus.header, cyrus.index,
cyrus.cache and cyrus.seen), versioned with ``PRAGMA user_version``.

``state`` (one row): the mailbox's id, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, message count,
bytes, and the mark a deletion leaves.  ``messages``: per UID its MODSEQ, system flags (bit
mask), keywords, internal date (seconds and zone offset) and size.  ``cache``: the ENVELOPE,
BODYSTRUCTURE and header blobs, apart so flag scans stay small.  ``expunged``: tombstones
(UID, MODSEQ) for QRESYNC; ``pruned`` (at most one row): the highest MODSEQ of the
tombstones pruned so far (Cyrus's deletedmodseq; an index without it has pruned none).
``seen``: each user's private seen UIDs, recent mark and the MODSEQ of their last change.
``keywords``: the keywords in use (FLAGS, PERMANENTFLAGS).  ``header_fields``: per message the
header fields SEARCH looks in most (:mod:`.header_fields`).

Format 2 added ``header_fields``; an index of format 1 is brought to 2 when it is opened.
"""

from __future__ import annotations

import sqlite3

from posthouse.store.errors import StoreError
from posthouse.store.fs import header_fields

__all__ = ["INDEX_VERSION", "create_schema"]

INDEX_VERSION = 2


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(
        """
        CREATE TABLE IF NOT EXISTS state (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            mailbox_id TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            uidnext INTEGER NOT NULL,
            highestmodseq INTEGER NOT NULL,
            messages INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS messages (
            uid INTEGER PRIMARY KEY,
            modseq INTEGER NOT NULL,
            sysflags INTEGER NOT NULL,
            keywords TEXT NOT NULL,
            idate INTEGER NOT NULL,
            tzmin INTEGER NOT NULL,
            size INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS messages_modseq ON messages (modseq);
        CREATE TABLE IF NOT EXISTS cache (
            uid INTEGER PRIMARY KEY,
            envelope BLOB,
            bodystructure BLOB,
            header BLOB
        );
        CREATE TABLE IF NOT EXISTS expunged (uid INTEGER PRIMARY KEY, modseq INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged (modseq);
        CREATE TABLE IF NOT EXISTS pruned (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            modseq INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS seen (
            user TEXT PRIMARY KEY,
            uids TEXT NOT NULL DEFAULT '',
            recent_uid INTEGER NOT NULL DEFAULT 0,
            modseq INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS keywords (name TEXT PRIMARY KEY COLLATE NOCASE) WITHOUT ROWID;
        """
        + header_fields.SCHEMA
    )
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        conn.execute(f"PRAGMA user_version = {INDEX_VERSION}")
    elif version == 1:
        _migrate_from_1(conn)
    elif version != INDEX_VERSION:
        raise StoreError(f"mailbox index format {version} is not {INDEX_VERSION}", temporary=False)


def _migrate_from_1(conn: sqlite3.Connection) -> None:
    """Format 1 to 2: every message's ``header_fields`` row from its cached header, under
    the write lock (another process may be opening the same index)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] == 1:
            header_fields.refill(conn)
            conn.execute("PRAGMA user_version = 2")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
