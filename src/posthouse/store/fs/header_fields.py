"""The header fields SEARCH looks in most, kept per message in the index (``header_fields``).

``SEARCH HEADER Subject word`` (and FROM, TO, CC, BCC, SUBJECT, which are HEADER searches)
on a 100,000-message mailbox would otherwise parse every cached header section.  With the
table it is one scan of a narrow table inside SQLite.

**One row per message, kept by SQLite.**  Triggers on ``messages`` give every message a row
(``searchable`` 0) when it is inserted and take it away when it is deleted, whatever process
or version of the code writes the index; the store's writers then fill the row
(`row_of`).  ``searchable`` is 1 when the message's cached header section is plain
(`content.plain_header`: its decoded text is its octets), and then the column of each of
:data:`INDEXED_FIELDS` holds that field's value unfolded (RFC 5322 §2.2.3: the CRLFs of
folds taken out) and ASCII-lower-cased, the values of a field that occurs more than once
joined by LF, or NULL when the field is absent.  No plain value holds CR or LF, so a needle
without them is in a field exactly when SQLite's ``instr`` finds it in the column: the
case-insensitive substring match of RFC 3501 §6.4.4, what `content.header_contains` does on
the header section.  ``searchable`` 0 (no cached header, or one whose decoded text may
differ from its octets): the caller searches the message itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from posthouse.store.content import plain_header

__all__ = [
    "INDEXED_FIELDS",
    "SCHEMA",
    "indexed",
    "insert_rows",
    "refill",
    "row_of",
    "search",
    "unsearchable",
]

#: The fields with a column: those the SEARCH keys name (RFC 3501 §6.4.4) and those clients
#: look for with HEADER (threading, lists).
INDEXED_FIELDS = (
    "bcc",
    "cc",
    "from",
    "in-reply-to",
    "list-id",
    "message-id",
    "references",
    "reply-to",
    "sender",
    "subject",
    "to",
)
_NONE = (None,) * len(INDEXED_FIELDS)
_NAMES = {name.encode("ascii"): i for i, name in enumerate(INDEXED_FIELDS)}
_COLUMNS = ", ".join(f'"{name}" BLOB' for name in INDEXED_FIELDS)
_INSERT = f"INSERT OR REPLACE INTO header_fields VALUES (?, ?{', ?' * len(INDEXED_FIELDS)})"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS header_fields (
    uid INTEGER PRIMARY KEY,
    searchable INTEGER NOT NULL,
    {_COLUMNS}
);
CREATE INDEX IF NOT EXISTS header_fields_unsearchable ON header_fields (uid)
    WHERE searchable = 0;
CREATE TRIGGER IF NOT EXISTS header_fields_added AFTER INSERT ON messages BEGIN
    INSERT OR IGNORE INTO header_fields (uid, searchable) VALUES (new.uid, 0);
END;
CREATE TRIGGER IF NOT EXISTS header_fields_removed AFTER DELETE ON messages BEGIN
    DELETE FROM header_fields WHERE uid = old.uid;
END;
"""


def indexed(field: str) -> bool:
    return field.lower() in INDEXED_FIELDS


def row_of(uid: int, header: bytes | None) -> tuple[Any, ...]:
    """The ``header_fields`` row of a message whose cached header section is ``header``."""
    if header is None or not plain_header(header):
        return (uid, 0, *_NONE)
    values: list[list[bytes] | None] = [None] * len(INDEXED_FIELDS)
    current: list[bytes] | None = None
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current[-1] += line  # unfolded: the CRLF out, the white space kept
            continue
        name, colon, value = line.partition(b":")
        at = _NAMES.get(name.lower()) if colon else None
        if at is None:
            current = None
            continue
        current = values[at]
        if current is None:
            current = values[at] = []
        current.append(value)
    return (uid, 1, *(None if v is None else b"\n".join(v).lower() for v in values))


def insert_rows(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    """Put rows made by `row_of` in place of the messages' rows."""
    conn.executemany(_INSERT, rows)


def refill(conn: sqlite3.Connection) -> None:
    """Every message's row made anew from its cached header (a migrated or reconstructed
    index); inside a write transaction."""
    rows = conn.execute(
        "SELECT m.uid, c.header FROM messages m LEFT JOIN cache c ON c.uid = m.uid"
    ).fetchall()
    conn.execute("DELETE FROM header_fields")
    insert_rows(conn, (row_of(uid, header) for uid, header in rows))


def unsearchable(conn: sqlite3.Connection, low: int, high: int) -> list[int]:
    """The UIDs in ``low:high`` whose header the table cannot answer for."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT uid FROM header_fields WHERE searchable = 0 AND uid BETWEEN ? AND ?",
            (low, high),
        )
    ]


def search(
    conn: sqlite3.Connection, field: str, lowered_needle: bytes, low: int, high: int
) -> list[int]:
    """The UIDs in ``low:high`` whose indexed ``field`` contains the (lower-case) needle
    (of the searchable messages only; see `unsearchable`)."""
    if b"\r" in lowered_needle or b"\n" in lowered_needle:
        return []  # no plain value holds a line end
    column = INDEXED_FIELDS[INDEXED_FIELDS.index(field.lower())]
    return [
        row[0]
        for row in conn.execute(
            f'SELECT uid FROM header_fields WHERE uid BETWEEN ? AND ? AND instr("{column}", ?) > 0',
            (low, high, lowered_needle),
        )
    ]
