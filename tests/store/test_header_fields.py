"""The index's ``header_fields`` table: one row per message whatever writes the index
(append, expunge, cached blobs computed later, reconstruct, a writer that knows nothing of
the table), a search of an indexed field finding exactly what a parse of the cached header
finds, and an index of format 1 brought to format 2 when it is opened."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from posthouse.store.backend import FlagChange, FlagMode, NewMessage
from posthouse.store.content import header_contains, plain_header
from posthouse.store.fs import header_fields
from posthouse.store.fs.backend import FsBackend
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import WHEN, message, open_store, run

EVERYTHING = UidSet([(1, 10_000)])
HEADERS = [
    b"From: Bob <bob@example.org>\r\nSubject: Weekly Report\r\n\r\n",
    b"Subject: weekly\r\n\treport, folded\r\nTo: a@example.org,\r\n b@example.org\r\n\r\n",
    b"SUBJECT:no space\r\nsubject: twice REPORT\r\nCc: carol@example.org\r\n\r\n",
    b"X-Subject: report\r\nSubject : not the field\r\nMessage-ID: <1@example.org>\r\n\r\n",
    b"References: <a@x>\r\n <b@x>\r\nIn-Reply-To: <b@x>\r\nList-Id: <list.example.org>\r\n\r\n",
    b"Subject: =?utf-8?q?report?=\r\n\r\n",  # decoded text may differ: left to the caller
    b"Subject: Stra\xc3\x9fe report\r\n\r\n",
    b"Sender: s@example.org\r\nReply-To: r@example.org\r\nBcc: hidden@example.org\r\n\r\n",
]
NEEDLES = [b"report", b"weekly report", b"REPORT", b"example.org", b"<b@x>", b"", b"x\r\ny", b" "]


def backend_of(store: MailStore) -> FsBackend:
    assert isinstance(store.backend, FsBackend)
    return store.backend


def index_path(root: Path) -> Path:
    store = open_store(root)
    record = run(store.backend.get_mailbox("user.hansen"))
    assert record is not None
    path = backend_of(store).layout.mailbox_dir(record.partition, record.id) / "index.db"
    run(store.backend.close())
    return path


def consistent(path: Path) -> int:
    """Assert that every message has the row its cached header gives, and no other row is
    there; returns the number of rows."""
    conn = sqlite3.connect(path)
    try:
        wanted = [
            header_fields.row_of(uid, header)
            for uid, header in conn.execute(
                "SELECT m.uid, c.header FROM messages m LEFT JOIN cache c ON c.uid = m.uid"
                " ORDER BY m.uid"
            )
        ]
        got = conn.execute("SELECT * FROM header_fields ORDER BY uid").fetchall()
    finally:
        conn.close()
    assert got == wanted
    return len(got)


def with_header(header: bytes) -> NewMessage:
    return NewMessage(header + b"body\r\n", WHEN, header=header)


def test_a_search_of_an_indexed_field_finds_what_a_parse_of_the_header_finds(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)

    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.append("INBOX", [with_header(h) for h in HEADERS] + [message(99)])
        opened = await hansen.select("INBOX")
        left = {uid for uid, h in enumerate(HEADERS, 1) if not plain_header(h)}
        left.add(len(HEADERS) + 1)  # no cached header
        for field in header_fields.INDEXED_FIELDS:
            assert header_fields.indexed(field.upper())
            for needle in NEEDLES:
                hits, unsure = await hansen.search_headers(opened, EVERYTHING, field, needle)
                wanted = [
                    uid
                    for uid, h in enumerate(HEADERS, 1)
                    if uid not in left and header_contains(h, field, needle.lower())
                ]
                assert (list(hits), set(unsure)) == (wanted, left), (field, needle)
        await store.backend.close()

    run(main())


def test_every_message_has_its_row_through_appends_expunges_and_blobs_cached_later(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)

    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.append("INBOX", [with_header(h) for h in HEADERS])
        await store.deliver("hansen", [message(1), message(2)])  # no cached header
        opened = await hansen.select("INBOX")
        await hansen.store_cache(opened, 9, header=b"Subject: later\r\n\r\n")
        delete = FlagChange(FlagMode.ADD, frozenset({"\\Deleted"}))
        await hansen.store_flags(opened, UidSet.of([1, 6]), delete)
        await hansen.expunge(opened)
        hits, unsure = await hansen.search_headers(opened, EVERYTHING, "Subject", b"later")
        assert (hits, unsure) == (UidSet.of([9]), UidSet.of([7, 10]))
        await store.backend.close()

    run(main())
    assert consistent(index_path(tmp_path)) == len(HEADERS) + 2 - 2


def test_a_writer_that_knows_nothing_of_the_table_leaves_its_messages_to_the_caller(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    run(store.session("hansen").append("INBOX", [with_header(HEADERS[0])] * 2))
    run(store.backend.close())
    path = index_path(tmp_path)
    conn = sqlite3.connect(path, isolation_level=None)  # as format-1 code writes
    conn.execute("INSERT INTO messages VALUES (3, 9, 0, '', 0, 0, 10)")
    conn.execute("INSERT INTO cache VALUES (3, NULL, NULL, ?)", (HEADERS[0],))
    conn.execute("UPDATE state SET uidnext = 4, highestmodseq = 9, messages = 3")
    conn.execute("DELETE FROM messages WHERE uid = 1")
    conn.execute("UPDATE state SET messages = 2")
    conn.close()

    async def main() -> None:
        hansen = store.session("hansen")
        opened = await hansen.select("INBOX")
        hits, unsure = await hansen.search_headers(opened, EVERYTHING, "subject", b"report")
        assert (hits, unsure) == (UidSet.of([2]), UidSet.of([3]))
        await store.backend.close()

    store = open_store(tmp_path)
    run(main())


def test_an_index_of_format_1_gets_its_rows_when_opened(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    run(store.session("hansen").append("INBOX", [with_header(h) for h in HEADERS]))
    run(store.deliver("hansen", [message(1)]))
    run(store.backend.close())
    path = index_path(tmp_path)
    conn = sqlite3.connect(path, isolation_level=None)  # back to format 1
    for trigger in ("header_fields_added", "header_fields_removed"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    conn.execute("DROP TABLE IF EXISTS header_fields")
    conn.execute("PRAGMA user_version = 1")
    conn.close()

    async def main() -> None:
        hansen = store.session("hansen")
        opened = await hansen.select("INBOX")
        hits, unsure = await hansen.search_headers(opened, EVERYTHING, "subject", b"report")
        assert (hits, unsure) == (UidSet.of([1, 2, 3]), UidSet.of([6, 7, 9]))
        await store.backend.close()

    store = open_store(tmp_path)
    run(main())
    assert consistent(path) == len(HEADERS) + 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    conn.close()


@pytest.mark.parametrize("damaged", [False, True])
def test_reconstruct_gives_every_message_its_row(tmp_path: Path, damaged: bool) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    run(store.session("hansen").append("INBOX", [with_header(h) for h in HEADERS]))
    run(store.backend.close())
    path = index_path(tmp_path)
    if damaged:  # rebuilt in a new file from what the old one holds
        with open(path, "r+b") as file:
            file.seek(0)
            file.write(b"garbage" * 20)
    else:  # corrected in place: a message the index does not list
        os.link(path.parent / "1.", path.parent / "50.")
    store = open_store(tmp_path)
    [report] = run(store.reconstruct("user.hansen"))
    run(store.backend.close())
    assert report.changed
    assert consistent(path) == len(HEADERS) + (0 if damaged else 1)
