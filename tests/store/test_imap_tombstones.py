"""Expunge tombstones are pruned (bounded), and a QRESYNC from before the pruning still
learns of every UID it knew that is gone: RFC 7162 §3.2.5.2's full VANISHED (EARLIER)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from pathlib import Path

import pytest

from posthouse.server.imap.views import prepared
from posthouse.store.backend import FlagChange, FlagMode
from posthouse.store.fs import index as fs_index
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.server.test_imap_in_memory import TIMEOUT, Client, message, scenario


def tombstones(root: Path) -> int:
    """The tombstones in every mailbox of the store (only the INBOX has any)."""
    total = 0
    for db in (root / "spool").glob("*/*/index.db"):
        with sqlite3.connect(db) as conn:
            total += int(conn.execute("SELECT count(*) FROM expunged").fetchone()[0])
    return total


async def expunge(store: MailStore, uids: list[int]) -> None:
    user = store.session("alice")
    opened = await user.select("INBOX")
    await user.store_flags(
        opened, UidSet.of(uids), FlagChange(FlagMode.ADD, frozenset({"\\Deleted"}))
    )
    await user.expunge(opened)


def test_tombstones_are_pruned_and_old_modseqs_get_every_vanished_uid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fs_index, "TOMBSTONE_LIMIT", 4)

    async def body(store: MailStore) -> None:
        alice = store.session("alice")
        now = dt.datetime.now(dt.UTC)
        await alice.append(
            "INBOX", [prepared(message(str(n)), now, frozenset()) for n in range(12)]
        )
        start = (await alice.status("INBOX")).highestmodseq
        await expunge(store, [1, 2])
        after_first = (await alice.status("INBOX")).highestmodseq
        await expunge(store, [3, 4])
        recent = (await alice.status("INBOX")).highestmodseq
        await expunge(store, [5, 6])  # six tombstones: over the limit, pruned to the newest
        assert tombstones(tmp_path) <= 4
        opened = await alice.select("INBOX")
        # From before the pruning: everything gone below UIDNEXT, nothing that exists.
        assert list((await alice.changes_since(opened, start)).vanished) == [1, 2, 3, 4, 5, 6]
        # The pruning went by whole expunges up to the second one: from after the first the
        # answer is the superset as well (UIDs 1 and 2 the client will ignore, §3.2.10).
        assert list((await alice.changes_since(opened, after_first)).vanished) == [1, 2, 3, 4, 5, 6]
        # From after it: the tombstones themselves, exactly.
        assert list((await alice.changes_since(opened, recent)).vanished) == [5, 6]

        # Over the wire: a QRESYNC client that knew UIDs 1:12 at the start.
        client = Client(store)
        await client.login()
        await client.command(b"e ENABLE QRESYNC")
        status = await alice.status("INBOX")
        lines = await client.command(
            b"s SELECT INBOX (QRESYNC (%d %d 2:12))" % (status.uidvalidity, start)
        )
        vanished = [line for line in lines if b"VANISHED" in line]
        assert vanished == [b"* VANISHED (EARLIER) 2:6\r\n"], lines
        assert lines[-1].startswith(b"s OK [READ-WRITE]")
        assert re.search(rb"\* 6 EXISTS", b"".join(lines))
        await client.command(b"z LOGOUT")
        await asyncio.wait_for(client.task, TIMEOUT)

    scenario(body, tmp_path)
