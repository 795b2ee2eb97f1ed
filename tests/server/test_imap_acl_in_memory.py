"""The RFC 4314 ACL commands' responses, transcript by transcript (in-memory connection, real
store): the ACL, LISTRIGHTS and MYRIGHTS data, and which refusals are BAD and which NO."""

from __future__ import annotations

from pathlib import Path

from posthouse.store.acl import MAX_ENTRIES
from posthouse.store.service import MailStore
from tests.server.test_imap_in_memory import Client, scenario


def test_acl_transcripts_and_refusals(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store)
        await client.login()
        assert await client.command(b'a SETACL INBOX "group:mail team" lr') == [
            b"a NO [CANNOT] Invalid identifier: no spaces or control characters in an"
            b" identifier: 'group:mail team'\r\n"
        ]
        assert (await client.command(b"b SETACL INBOX fred lrz"))[-1] == (
            b"b BAD unknown right 'z'\r\n"
        )
        assert (await client.command(b"c SETACL INBOX -fred +cd"))[
            -1
        ] == b"c OK SETACL completed\r\n"
        assert await client.command(b"d GETACL INBOX") == [
            b'* ACL "INBOX" alice lrswipkxtecda -fred kxtecd\r\n',
            b"d OK GETACL completed\r\n",
        ]
        assert await client.command(b"e MYRIGHTS inbox") == [
            b'* MYRIGHTS "INBOX" lrswipkxtecda\r\n',
            b"e OK MYRIGHTS completed\r\n",
        ]
        assert await client.command(b'f LISTRIGHTS INBOX "nil"') == [
            b'* LISTRIGHTS "INBOX" "nil" p l r s w i k x t e c d a 0 1 2 3 4 5 6 7 8 9\r\n',
            b"f OK LISTRIGHTS completed\r\n",
        ]
        full = "".join(f"user{n}\tl\t" for n in range(MAX_ENTRIES - 1))
        await store.backend.set_acl("user.alice", "alice\tlrswipkxtea\t" + full)
        assert (await client.command(b"g SETACL INBOX one.more l"))[-1] == (
            b"g NO [LIMIT] an ACL holds at most 1000 entries\r\n"
        )
        await store.backend.set_acl("user.alice", "alice\tlrswipkxtea\tfred\t")
        assert (await client.command(b"h GETACL INBOX"))[-1].startswith(b"h NO ")
        assert (await client.command(b"i MYRIGHTS INBOX.nothing"))[-1] == (
            b"i NO [NONEXISTENT] mailbox INBOX.nothing does not exist\r\n"
        )
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)
