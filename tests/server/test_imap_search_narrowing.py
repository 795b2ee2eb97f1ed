"""SEARCH on a header key asks the store's cached-header search first and parses only the
candidates; encoded, 8-bit and folded subjects are still found exactly as before."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import cast

from posthouse.server.imap.views import prepared
from posthouse.store.fs.backend import FsBackend
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.server.test_imap_in_memory import Client, scenario

SUBJECTS = [
    b"nothing here",
    b"Quarterly REPORT",
    b"=?utf-8?q?W=C3=B6chentlicher_Report?=",  # the word only once decoded
    b"quarterly\r\n report, folded",  # "quarterly report" only once unfolded
    b"Stra\xc3\x9fe",  # 8-bit UTF-8: "STRASSE" matches it case-folded
    b"also nothing",
]


def test_header_search_narrows_through_the_store(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        now = dt.datetime.now(dt.UTC)
        other = store.session("alice")
        messages = [
            b"From: bob@example.test\r\nSubject: " + s + b"\r\n\r\nbody\r\n" for s in SUBJECTS
        ]
        await other.append("INBOX", [prepared(m, now, frozenset()) for m in messages])
        backend = cast(FsBackend, store.backend)
        narrowed: list[tuple[str, bytes]] = []
        headers_read: list[list[int]] = []
        search_headers, fetch = backend.search_headers, backend.fetch

        async def counted_search(
            mailbox_id: str, uids: UidSet, field: str, needle: bytes
        ) -> tuple[UidSet, UidSet]:
            narrowed.append((field, needle))
            return await search_headers(mailbox_id, uids, field, needle)

        async def counted_fetch(mailbox_id: str, uids: UidSet, **kw: object) -> object:
            if kw.get("cached"):
                headers_read.append(list(uids))
            return await fetch(mailbox_id, uids, **kw)  # type: ignore[arg-type]

        backend.search_headers = counted_search  # type: ignore[method-assign]
        backend.fetch = counted_fetch  # type: ignore[method-assign,assignment]
        client = Client(store)
        await client.login()
        await client.command(b"s SELECT INBOX")
        assert (await client.command(b"a SEARCH SUBJECT report"))[0] == b"* SEARCH 2 3 4\r\n"
        assert narrowed == [("SUBJECT", b"report")]
        # candidates only: the store's two matches and the two it cannot answer for
        assert headers_read == [[2, 3, 4, 5]]
        lines = await client.command(b'b SEARCH SUBJECT "quarterly report"')
        assert lines[0] == b"* SEARCH 2 4\r\n"
        assert (await client.command(b"c UID SEARCH SUBJECT strasse"))[0] == b"* SEARCH 5\r\n"
        lines = await client.command(b"d SEARCH SUBJECT report NOT SUBJECT quarterly")
        assert lines[0] == b"* SEARCH 3\r\n"
        assert len(narrowed) == 4
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)
