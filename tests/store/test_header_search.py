"""The store's cached-header search: needles across folded lines, and the headers it
leaves to the caller because their decoded text may differ from their octets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posthouse.store.backend import NewMessage
from posthouse.store.content import plain_header
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import WHEN, open_store


@pytest.mark.parametrize(
    ("header", "plain"),
    [
        (b"Subject: report\r\n\tfolded\r\n\r\n", True),
        (b"Subject: =?utf-8?q?report?=\r\n\r\n", False),
        (b"Subject: Stra\xc3\x9fe\r\n\r\n", False),
        (b"Subject: caf\xe9\r\n\r\n", False),
        (b"Subject: a\x00b\r\n\r\n", False),
        (b"Subject: a\nX-Other: b\r\n\r\n", False),
        (b"Subject: a\rX-Other: b\r\n\r\n", False),
    ],
)
def test_plain_headers_are_ascii_without_encoded_words_nul_or_bare_line_ends(
    header: bytes, plain: bool
) -> None:
    assert plain_header(header) is plain


def test_a_needle_across_a_fold_is_found_and_unsure_headers_are_left_to_the_caller(
    tmp_path: Path,
) -> None:
    store: MailStore = open_store(tmp_path)

    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")

        def cached(subject: bytes) -> NewMessage:
            header = b"From: a@example.org\r\nSubject: " + subject + b"\r\n\r\n"
            return NewMessage(header + b"body\r\n", WHEN, header=header)

        subjects = [b"weekly\r\n report", b"=?us-ascii?q?weekly_report?=", b"w\xc3\xb6chentlich"]
        await hansen.append("INBOX", [cached(s) for s in subjects])
        opened = await hansen.select("INBOX")
        hits, unsure = await hansen.search_headers(
            opened, UidSet([(1, 10)]), "subject", b"weekly report"
        )
        assert (hits, unsure) == (UidSet.of([1]), UidSet.of([2, 3]))
        await store.backend.close()

    asyncio.run(main())
