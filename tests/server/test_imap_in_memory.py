"""IMAP sessions over an in-memory connection against a real file-system store: transcripts."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

from posthouse.auth.credentials import CredentialChecker
from posthouse.protocols.imap import engine as imap_engine
from posthouse.server.connection import Deadlines
from posthouse.server.imap.session import IMAPServices, IMAPSession
from posthouse.server.imap.views import prepared
from posthouse.store.backend import FlagChange, FlagMode, NewMessage
from posthouse.store.fs.backend import FsBackend
from posthouse.store.fs.layout import FsLayout
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.server.memory import MemoryClient
from tests.server.test_sessions_in_memory import Passwords

TIMEOUT = 60.0


def store_at(root: Path) -> MailStore:
    return MailStore(FsBackend(FsLayout(root / "imap", {"default": root / "spool"})))


class Client:
    """A scripted IMAP client over an in-memory connection."""

    def __init__(
        self, store: MailStore, *, plaintext: bool = True, deadlines: Deadlines | None = None
    ) -> None:
        self.memory = MemoryClient(deadlines=deadlines)
        services = IMAPServices(
            hostname="mail.example.test",
            credentials=cast(CredentialChecker, Passwords()),
            store=store,
            tls_context=None,
            local_domains=lambda domain: domain == "example.test",
        )
        settings = imap_engine.IMAPSettings(
            hostname="mail.example.test", plaintext_login_allowed=plaintext
        )
        self.session = IMAPSession(self.memory.connection, services, settings, asyncio.Event())
        self.task = asyncio.create_task(self.session.run())

    async def until(self, tag: bytes) -> list[bytes]:
        """Every line up to and including the tagged completion of ``tag``."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.memory.line(), TIMEOUT)
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    async def command(self, line: bytes) -> list[bytes]:
        self.memory.send(line + b"\r\n")
        return await self.until(line.split(b" ", 1)[0])

    async def login(self) -> None:
        await asyncio.wait_for(self.memory.line(), TIMEOUT)  # greeting
        assert (await self.command(b"l LOGIN alice secret"))[-1].startswith(b"l OK")


def scenario(body: Callable[[MailStore], Awaitable[None]], root: Path) -> None:
    async def main() -> None:
        store = store_at(root)
        await store.create_user("alice")
        try:
            await body(store)
        finally:
            await store.backend.close()

    asyncio.run(main())


def message(subject: str) -> bytes:
    return f"From: bob@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()


def test_select_append_fetch_transcript(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store)
        await client.login()
        lines = await client.command(b"s SELECT INBOX")
        assert lines[:3] == [
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
            b"* 0 EXISTS\r\n",
            b"* 0 RECENT\r\n",
        ]
        assert lines[-1] == b"s OK [READ-WRITE] SELECT completed\r\n"
        assert client.memory.connection.record.mailbox == "user.alice"
        assert client.memory.connection.record.user == "alice"
        client.memory.send(b"a APPEND INBOX (\\Seen) {%d}\r\n" % len(message("one")))
        assert (
            await asyncio.wait_for(client.memory.line(), TIMEOUT) == b"+ Ready for literal data\r\n"
        )
        client.memory.send(message("one") + b"\r\n")
        lines = await client.until(b"a")
        assert lines[:2] == [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"]
        assert re.fullmatch(rb"a OK \[APPENDUID \d+ 1\] APPEND completed\r\n", lines[-1])
        lines = await client.command(b"f FETCH 1 (UID FLAGS BODY[HEADER.FIELDS (SUBJECT)])")
        assert lines == [
            b"* 1 FETCH (UID 1 FLAGS (\\Recent \\Seen) BODY[HEADER.FIELDS (SUBJECT)] {16}\r\n",
            b"Subject: one\r\n",
            b"\r\n",
            b")\r\n",
            b"f OK FETCH completed\r\n",
        ]
        assert (await client.command(b"z LOGOUT"))[-1] == b"z OK LOGOUT completed\r\n"
        await client.task

    scenario(body, tmp_path)


def test_expunge_by_another_session_waits_for_a_command_that_may_tell_it(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        other = store.session("alice")
        now = dt.datetime.now(dt.UTC)
        await other.append("INBOX", [prepared(message(s), now, frozenset()) for s in "abc"])
        client = Client(store)
        await client.login()
        await client.command(b"s SELECT INBOX")
        opened = await other.select("INBOX")
        await other.store_flags(
            opened, UidSet.of([2]), FlagChange(FlagMode.ADD, frozenset({"\\Deleted"}))
        )
        await other.expunge(opened)
        lines = await client.command(b"f FETCH 1:3 (FLAGS)")
        assert not any(b"EXPUNGE" in line for line in lines)  # RFC 3501 §7.4.1
        assert [line.split(b" ")[1] for line in lines[:-1]] == [b"1", b"3"]  # 2 is gone
        lines = await client.command(b"s2 SEARCH ALL")
        assert lines == [b"* SEARCH 1 3\r\n", b"s2 OK SEARCH completed\r\n"]
        lines = await client.command(b"n NOOP")
        assert lines == [b"* 2 EXPUNGE\r\n", b"n OK NOOP completed\r\n"]
        lines = await client.command(b"s3 SEARCH ALL")
        assert lines == [b"* SEARCH 1 2\r\n", b"s3 OK SEARCH completed\r\n"]
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)


def test_idle_sees_a_message_appended_through_another_store_instance(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store)
        await client.login()
        await client.command(b"s SELECT INBOX")
        client.memory.send(b"i IDLE\r\n")
        assert await asyncio.wait_for(client.memory.line(), TIMEOUT) == b"+ idling\r\n"
        elsewhere = store_at(tmp_path)  # as another worker process would have it
        now = dt.datetime.now(dt.UTC)
        await elsewhere.deliver("alice", [prepared(message("news"), now, frozenset())])
        await elsewhere.backend.close()
        assert await asyncio.wait_for(client.memory.line(), TIMEOUT) == b"* 1 EXISTS\r\n"
        assert await asyncio.wait_for(client.memory.line(), TIMEOUT) == b"* 1 RECENT\r\n"
        client.memory.send(b"DONE\r\n")
        assert await client.until(b"i") == [b"i OK IDLE terminated\r\n"]
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)


def test_errors_map_to_response_codes(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store)
        await client.login()
        assert (await client.command(b"a SELECT INBOX.none"))[-1] == (
            b"a NO [NONEXISTENT] mailbox INBOX.none does not exist\r\n"
        )
        assert (await client.command(b"b CREATE INBOX.Sent"))[-1].startswith(
            b"b NO [ALREADYEXISTS]"
        )
        assert (await client.command(b"c DELETE INBOX"))[-1].startswith(b"c NO [NOPERM]")
        assert (await client.command(b"d APPEND INBOX.none {1+}\r\nx"))[-1].startswith(
            b"d NO [TRYCREATE]"
        )
        assert (await client.command(b"e CREATE INBOX.a..b"))[-1].startswith(b"e NO [CANNOT]")
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)


def test_delivered_mail_gets_its_envelope_cached_at_the_first_fetch(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        now = dt.datetime.now(dt.UTC)
        await store.deliver("alice", [NewMessage(message("raw"), now)])  # nothing cached
        client = Client(store)
        await client.login()
        await client.command(b"s SELECT INBOX")
        lines = await client.command(b"f FETCH 1 (ENVELOPE BODYSTRUCTURE)")
        assert b'"raw"' in lines[0] and b'"TEXT" "PLAIN"' in lines[0]
        view = store.session("alice")
        opened = await view.select("INBOX", read_only=True)
        [meta] = await view.fetch(opened, UidSet.of([1]), cached=True)
        assert meta.envelope is not None and b'"raw"' in meta.envelope
        assert meta.bodystructure is not None
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)


def test_plaintext_login_is_refused_and_logged_as_a_protection_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store, plaintext=False)
        greeting = await asyncio.wait_for(client.memory.line(), TIMEOUT)
        assert b"LOGINDISABLED" in greeting
        lines = await client.command(b"l LOGIN alice secret")
        assert lines == [
            b"l NO [PRIVACYREQUIRED] Logins over plain text are disabled: use STARTTLS\r\n"
        ]
        await client.command(b"z LOGOUT")
        await client.task

    with caplog.at_level(logging.WARNING, logger="posthouse.imap"):
        scenario(body, tmp_path)
    assert "LOGIN over plain text from [192.0.2.7]:40000 refused" in caplog.text


def test_a_selected_mailbox_deleted_by_another_session_is_closed(tmp_path: Path) -> None:
    async def body(store: MailStore) -> None:
        other = store.session("alice")
        await other.create("INBOX.doomed")
        client = Client(store)
        await client.login()
        await client.command(b"s SELECT INBOX.doomed")
        await other.delete("INBOX.doomed")
        lines = await client.command(b"n NOOP")
        assert lines == [
            b"* OK [CLOSED] The selected mailbox was deleted\r\n",
            b"n OK NOOP completed\r\n",
        ]
        lines = await client.command(b"f FETCH 1 FLAGS")
        assert lines == [b"f BAD FETCH needs a selected mailbox\r\n"]
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)


def test_an_append_literal_is_a_transfer_not_a_command_line(tmp_path: Path) -> None:
    """A steady literal may take longer than the command timeout (it is held to the
    transfer rate instead); the command line itself is not."""

    async def body(store: MailStore) -> None:
        deadlines = Deadlines(command_timeout=0.3, data_timeout=0.3, min_rate=100.0)
        client = Client(store, deadlines=deadlines)
        await client.login()
        content = message("slow") + b"x" * (2000 - len(message("slow")))
        client.memory.send(b"a APPEND INBOX {2000}\r\n")
        assert (
            await asyncio.wait_for(client.memory.line(), TIMEOUT) == b"+ Ready for literal data\r\n"
        )
        for start in range(0, 2000, 200):  # 2,000 octets/s over a second: 20x the floor
            client.memory.send(content[start : start + 200])
            await asyncio.sleep(0.1)
        client.memory.send(b"\r\n")
        assert (await client.until(b"a"))[-1].startswith(b"a OK [APPENDUID")
        client.memory.send(b"b NOOP")  # a command line that stalls past its deadline
        assert await asyncio.wait_for(client.memory.line(), TIMEOUT) == b"* BYE Command timeout\r\n"
        await client.task

    scenario(body, tmp_path)


def test_header_searches_and_fetches_use_the_cached_header_others_read_messages(
    tmp_path: Path,
) -> None:
    async def body(store: MailStore) -> None:
        now = dt.datetime.now(dt.UTC)
        other = store.session("alice")
        await other.append("INBOX", [prepared(message(s), now, frozenset()) for s in "xyz"])
        reads: list[int] = []
        backend = cast(FsBackend, store.backend)
        original = backend.read_message

        async def counted(mailbox_id: str, uid: int) -> bytes:
            reads.append(uid)
            return await original(mailbox_id, uid)

        backend.read_message = counted  # type: ignore[method-assign]
        client = Client(store)
        await client.login()
        await client.command(b"s SELECT INBOX")
        assert (await client.command(b"a SEARCH SUBJECT y"))[0] == b"* SEARCH 2\r\n"
        assert (await client.command(b"b SORT (SUBJECT) UTF-8 ALL"))[0] == b"* SORT 1 2 3\r\n"
        lines = await client.command(b"h FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert lines[:2] == [
            b"* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {14}\r\n",
            b"Subject: y\r\n",
        ]
        assert reads == []
        assert (await client.command(b'c SEARCH BODY "of z"'))[0] == b"* SEARCH 3\r\n"
        assert reads == [1, 2, 3]
        lines = await client.command(b"t FETCH 2 (BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
        assert b"body of y" in b"".join(lines) and reads == [1, 2, 3, 2]
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)


@pytest.mark.parametrize("copied", [False, True])
def test_metadata_fetches_write_what_the_general_fetch_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copied: bool
) -> None:
    """The block-written metadata FETCH (messages.py) against the general FETCH writer, on
    a mailbox with \\Recent and older messages, keywords, UID sets with holes, and messages
    another session expunged that this one has not been told of; ``copied``: from the
    process's metadata copy (metacache.py) rather than the index."""
    from posthouse.server.imap import messages
    from posthouse.store.fs.metacache import MetadataCache

    async def body(store: MailStore) -> None:
        assert isinstance(store.backend, FsBackend)
        if copied:
            store.backend.metadata = MetadataCache(min_messages=1)
        other = store.session("alice")
        now = dt.datetime.now(dt.UTC)
        seen = frozenset({"\\Seen"})
        await other.append("INBOX", [prepared(message(f"{n}"), now, seen) for n in range(20)])
        client = Client(store)
        await client.login()
        await client.command(b"s SELECT INBOX")  # 1..20 are \Recent in this session
        await other.append(
            "INBOX", [prepared(message(f"{n}"), now, frozenset()) for n in range(20)]
        )
        opened = await other.select("INBOX")
        before_changes = opened.snapshot.status.highestmodseq
        await other.store_flags(
            opened, UidSet.of([3, 4, 25]), FlagChange(FlagMode.ADD, frozenset({"$Work", "NonJunk"}))
        )
        await other.store_flags(
            opened, UidSet.of([5, 6, 7, 30]), FlagChange(FlagMode.ADD, frozenset({"\\Deleted"}))
        )
        assert (await client.command(b"n NOOP"))[-1] == b"n OK NOOP completed\r\n"  # 21..40
        await other.expunge(opened)  # not told until a NOOP: 5, 6, 7, 30 keep their numbers
        commands = [
            b"FETCH 1:* (UID FLAGS)",
            b"FETCH 2,4:9,12:15,38:* (FLAGS UID RFC822.SIZE MODSEQ)",
            b"FETCH 1:* (UID FLAGS) (CHANGEDSINCE %d)" % before_changes,
            b"NOOP",  # the expunges told: UID FETCH may tell them too (RFC 3501 §7.4.1)
            b"UID FETCH 2:6,9,22:31 (FLAGS)",
            b"UID FETCH 1:* (INTERNALDATE FLAGS)",
        ]
        for number, command in enumerate(commands):
            if command == b"NOOP":
                assert b"* 7 EXPUNGE\r\n" in await client.command(b"n2 NOOP")
                continue
            fast = await client.command(b"f%d " % number + command)
            monkeypatch.setattr(messages, "metadata_only", lambda items: False)
            general = await client.command(b"f%d " % number + command)
            monkeypatch.undo()
            assert fast[-1].endswith(b"OK FETCH completed\r\n") or fast[-1].endswith(
                b"OK UID FETCH completed\r\n"
            )
            assert len(fast) > 3
            assert fast == general, command
        await client.command(b"z LOGOUT")
        await client.task

    scenario(body, tmp_path)
