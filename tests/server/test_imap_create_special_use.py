"""RFC 6154 §3 CREATE-SPECIAL-USE: CREATE ... (USE (...)) gives a mailbox its special uses;
an unknown use, a virtual one (\\All, \\Flagged) or one the user has already is NO [USEATTR]
and creates nothing."""

from __future__ import annotations

from pathlib import Path

from posthouse.store.service import MailStore
from tests.server.test_imap_in_memory import Client, scenario


def test_create_with_special_use(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store)
        await client.login()
        capability = await client.command(b"c CAPABILITY")
        assert b" CREATE-SPECIAL-USE" in capability[0]
        lines = await client.command(b"a CREATE INBOX.Archived (USE (\\Archive \\archive))")
        assert lines == [b"a OK CREATE completed\r\n"]
        lines = await client.command(b"b CREATE INBOX.Sent2 (USE (\\Sent))")
        assert lines[-1].startswith(b"b NO [USEATTR] \\Sent is already the use of")
        lines = await client.command(b"d CREATE INBOX.Imp (USE (\\Important))")
        assert lines[-1].startswith(b"d NO [USEATTR] \\Important is not a special use")
        lines = await client.command(b"e CREATE INBOX.Every (USE (\\All))")
        assert lines[-1].startswith(b"e NO [USEATTR]")
        lines = await client.command(b"f CREATE INBOX.Old (USE (\\Archive))")
        assert lines[-1].startswith(b"f NO [USEATTR] \\Archive is already")
        assert (await client.command(b"g DELETE INBOX.Trash"))[-1] == b"g OK DELETE completed\r\n"
        lines = await client.command(b"h CREATE INBOX.Bin (USE (\\Trash \\Junk))")
        assert lines[-1].startswith(b"h NO [USEATTR] \\Junk is already")
        lines = await client.command(b"i CREATE INBOX.Bin (USE (\\Trash))")
        assert lines == [b"i OK CREATE completed\r\n"]
        lines = await client.command(b'l LIST (SPECIAL-USE) "" "*"')
        assert sorted(lines[:-1]) == [
            b'* LIST (\\Archive \\HasNoChildren) "." "INBOX.Archived"\r\n',
            b'* LIST (\\Drafts \\HasNoChildren) "." "INBOX.Drafts"\r\n',
            b'* LIST (\\HasNoChildren \\Junk) "." "INBOX.Junk"\r\n',
            b'* LIST (\\HasNoChildren \\Sent) "." "INBOX.Sent"\r\n',
            b'* LIST (\\HasNoChildren \\Trash) "." "INBOX.Bin"\r\n',
        ]
        lines = await client.command(b'm LIST "" "INBOX.*"')
        names = {line.rsplit(b" ", 1)[1].strip().strip(b'"') for line in lines[:-1]}
        assert b"INBOX.Bin" in names
        assert {b"INBOX.Sent2", b"INBOX.Imp", b"INBOX.Every", b"INBOX.Old"}.isdisjoint(names)
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)
