"""Which messages were delivered to whom: duplicate delivery suppression (``deliver -e``).

Cyrus's deliver.db: a row per (Message-ID, recipient) delivered, under the IMAP
configuration directory, so that a message handed over twice (a forwarding loop, a
mailing list that sends the same message to two of a user's addresses, an MTA retrying
after a lost acknowledgement) is stored once.  A recipient is the mailbox written to
(``user.alice`` or ``user.alice.work``), not the folder asked for: a folder that admits no
posting sends the copy to the INBOX, and it is the INBOX that then holds it.  Rows older
than ``keep_seconds`` (three days, as Cyrus's ``cyr_expire -E`` default) are forgotten as
new ones are written.  A delivery is recorded only after it is durable, so a crash in
between can duplicate, never lose.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from posthouse.store.fs.sqlite import Database

__all__ = ["DeliveredLog"]

KEEP_SECONDS = 3 * 86400


def _schema(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS delivered (message_id TEXT NOT NULL,"
        " recipient TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (message_id, recipient))"
        " WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS delivered_at ON delivered (at)")


class DeliveredLog:
    """See the module docstring."""

    def __init__(self, path: Path, keep_seconds: float = KEEP_SECONDS) -> None:
        self.db = Database(path, schema=_schema)
        self.keep_seconds = keep_seconds

    def delivered(self, message_id: str, recipient: str) -> bool:
        """Whether ``message_id`` reached ``recipient`` within the last ``keep_seconds``."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT at FROM delivered WHERE message_id = ? AND recipient = ?",
                (message_id, recipient),
            ).fetchone()
        return row is not None and row[0] > time.time() - self.keep_seconds

    def record(self, message_id: str, recipients: Iterable[str]) -> None:
        now = time.time()
        with self.db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO delivered VALUES (?, ?, ?)",
                [(message_id, recipient, now) for recipient in recipients],
            )
            conn.execute("DELETE FROM delivered WHERE at < ?", (now - self.keep_seconds,))

    def close(self) -> None:
        self.db.close()
