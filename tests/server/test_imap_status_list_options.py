"""STATUS DELETED (RFC 9051 §6.3.11) and SIZE (RFC 8438 STATUS=SIZE); LIST-EXTENDED's
RECURSIVEMATCH and REMOTE selection options (RFC 5258 §3.1, §3.5)."""

from __future__ import annotations

from pathlib import Path

from posthouse.store.service import MailStore
from tests.server.test_imap_in_memory import Client, message, scenario


async def append(client: Client, text: bytes, flags: bytes = b"") -> None:
    client.memory.send(b"a APPEND INBOX (%s) {%d+}\r\n%s\r\n" % (flags, len(text), text))
    assert (await client.until(b"a"))[-1].startswith(b"a OK")


def test_status_deleted_and_size(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store)
        await client.login()
        assert b" STATUS=SIZE" in (await client.command(b"c CAPABILITY"))[0]
        one, two, three = message("one"), message("two"), message("three")
        await append(client, one, b"\\Deleted")
        await append(client, two, b"\\Seen")
        await append(client, three, b"\\Deleted \\Seen")
        lines = await client.command(b"s STATUS INBOX (MESSAGES DELETED SIZE UNSEEN)")
        total = len(one) + len(two) + len(three)
        assert lines[0] == b'* STATUS "INBOX" (MESSAGES 3 DELETED 2 SIZE %d UNSEEN 1)\r\n' % total
        await client.command(b"x SELECT INBOX")
        await client.command(b"e EXPUNGE")
        lines = await client.command(b"t STATUS INBOX (DELETED SIZE)")
        assert lines[0] == b'* STATUS "INBOX" (DELETED 0 SIZE %d)\r\n' % len(two)
        lines = await client.command(b'l LIST "" "INBOX" RETURN (STATUS (DELETED))')
        assert lines[1] == b'* STATUS "INBOX" (DELETED 0)\r\n'
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)


def test_list_recursivematch_and_remote(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store)
        await client.login()
        for name in (b"INBOX.Work", b"INBOX.Work.Done", b"INBOX.Play"):
            assert (await client.command(b"c CREATE " + name))[-1].startswith(b"c OK")
        for name in (b"INBOX", b"INBOX.Sent", b"INBOX.Drafts", b"INBOX.Trash", b"INBOX.Junk"):
            await client.command(b"u UNSUBSCRIBE " + name)
        await client.command(b"s SUBSCRIBE INBOX.Work.Done")
        await client.command(b"s SUBSCRIBE INBOX.Gone.Child")  # does not exist
        await client.command(b"s SUBSCRIBE INBOX.Play")
        lines = await client.command(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" "INBOX.%"')
        # RFC 5258 §3.5: a parent of a subscribed mailbox is returned with CHILDINFO.
        assert lines == [
            b'* LIST (\\NonExistent) "." "INBOX.Gone" ("CHILDINFO" ("SUBSCRIBED"))\r\n',
            b'* LIST (\\HasNoChildren \\Subscribed) "." "INBOX.Play"\r\n',
            b'* LIST (\\HasChildren) "." "INBOX.Work" ("CHILDINFO" ("SUBSCRIBED"))\r\n',
            b"a OK LIST completed\r\n",
        ]
        lines = await client.command(b'b LIST (SUBSCRIBED) "" "INBOX.*"')
        assert lines == [  # §3.4: a subscribed name that does not exist is \NonExistent
            b'* LIST (\\NonExistent \\Subscribed) "." "INBOX.Gone.Child"\r\n',
            b'* LIST (\\HasNoChildren \\Subscribed) "." "INBOX.Play"\r\n',
            b'* LIST (\\HasNoChildren \\Subscribed) "." "INBOX.Work.Done"\r\n',
            b"b OK LIST completed\r\n",
        ]
        lines = await client.command(b'c LIST (RECURSIVEMATCH) "" "%"')
        assert lines[-1].startswith(b"c BAD ")  # §3: RECURSIVEMATCH needs another option
        lines = await client.command(b'd LIST (REMOTE) "" "INBOX.P%"')
        assert lines == [
            b'* LIST (\\HasNoChildren) "." "INBOX.Play"\r\n',
            b"d OK LIST completed\r\n",
        ]
        lines = await client.command(b'e LIST (REMOTE SUBSCRIBED RECURSIVEMATCH) "" "INBOX.W%"')
        assert (
            lines[0] == b'* LIST (\\HasChildren) "." "INBOX.Work" ("CHILDINFO" ("SUBSCRIBED"))\r\n'
        )
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)


def test_a_pattern_over_the_limits_is_no_limit_not_a_server_bug(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store)
        await client.login()
        for tag, selection in ((b"a", b""), (b"b", b"(SUBSCRIBED) "), (b"c", b"(SUBSCRIBED)")):
            if tag == b"c":
                lines = await client.command(b'c LSUB "" "' + b"%" * 30 + b'"')
            else:
                lines = await client.command(
                    tag + b" LIST " + selection + b'"" "' + b"%" * 30 + b'"'
                )
            assert lines == [tag + b" NO [LIMIT] a LIST pattern holds at most 20 wildcards\r\n"]
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)
