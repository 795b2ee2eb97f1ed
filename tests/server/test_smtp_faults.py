"""Faults and hostile clients against the real server layer (ListenerGroup, Connection,
SMTPSession) on a loopback socket: a full disk while spooling is 452 4.3.1 with nothing left
in the queue, an unreadable user database is 454 4.7.0 at AUTH and 451 4.3.0 at RCPT, and
the connection survives all three; AUTH failures are logged in a form fail2ban matches."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import errno
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from posthouse.app import Application, build_application, engine_settings, smtp_services_for
from posthouse.auth.users import User, UserDatabase
from posthouse.config.load import load_settings
from posthouse.config.schema import ListenerSection
from posthouse.mta.queue.scheduler import DeliveryScheduler
from posthouse.mta.queue.store import IncomingMessage, QueueStore
from posthouse.server.connection import Connection
from posthouse.server.limits import ConnectionLimiter
from posthouse.server.listener import ListenerGroup, ServiceSpec, bind_socket, socket_port
from posthouse.server.records import ConnectionRegistry
from posthouse.server.smtp import SMTPServices, SMTPSession

# fail2ban, config/filter.d/postfix.conf (the postfix-sasl jail is `filter = postfix[mode=auth]`):
#   _port     = (?::\d+)?
#   prefregex = ^%(__prefix_line)s<mdpr-<mode>> <F-CONTENT>.+</F-CONTENT>$
#   mdpr-auth = warning:
#   mdre-auth = ^[^[]*\[<HOST>\]%(_port)s: SASL ((?i)LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5)
#               authentication failed:(?! Connection lost to authentication server|
#               Invalid authentication mechanism)
# Copied with <HOST> as an IPv4 group, %(_port)s expanded, and the inline (?i), which Python
# 3.11 only accepts at the start, applied to the whole expression as older Pythons did.
FAIL2BAN_PREFIX = (
    r"^posthouse\[\d+\]: warning: (?P<content>.+)$"  # __prefix_line, _daemon=posthouse
)
FAIL2BAN_MDRE_AUTH = (
    r"^[^[]*\[(?P<host>(?:\d{1,3}\.){3}\d{1,3})\](?::\d+)?: SASL (LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5)"
    r" authentication failed:(?! Connection lost to authentication server"
    r"| Invalid authentication mechanism)"
)

LARGE = 300_000  # spills to the queue's data file (beyond 64 KiB held in memory)


def _settings(tmp_path: Path) -> Any:
    config = tmp_path / "posthouse.toml"
    config.write_text(
        f"""
[server]
hostname = "mail.example.test"
data_dir = "{tmp_path / "data"}"
run_as = ""

[mail]
local_domains = ["example.test"]
trusted_networks = []

[smtp]
auth_failure_delay_seconds = 0.0
""",
        encoding="utf-8",
    )
    return load_settings(config)


class FullDisk:
    """A queue store whose data writes fail with ENOSPC beyond ``room`` bytes (a seam for
    the disk filling up while a large message is spooled)."""

    def __init__(self, real: QueueStore, room: int) -> None:
        self.real = real
        self.room = room
        self.messages: list[IncomingMessage] = []

    def new_message(self, *args: Any, **kwargs: Any) -> IncomingMessage:
        incoming = self.real.new_message(*args, **kwargs)
        write = incoming.write

        def limited(data: bytes | bytearray | memoryview) -> None:
            if incoming.size + len(data) > self.room:
                raise OSError(errno.ENOSPC, "No space left on device")
            write(data)

        setattr(incoming, "write", limited)  # noqa: B010 - the injected fault
        self.messages.append(incoming)
        return incoming

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> bytes:
        data = b""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 30)
            assert line, f"connection closed after {data!r}"
            data += line
            if line[3:4] == b" ":
                return data

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        return await self.reply()


@asynccontextmanager
async def serving(
    app: Application, adjust: Callable[[SMTPServices], SMTPServices]
) -> AsyncIterator[Client]:
    """The SMTP listener of ``app`` on a kernel-chosen loopback port, and a client of it."""
    scheduler = DeliveryScheduler(app.delivery, app.queue)
    services = adjust(smtp_services_for(app, scheduler, None))
    settings_for = engine_settings(app, ListenerSection(protocol="smtp"), tls=False)
    group = ListenerGroup(
        ConnectionLimiter(100, 10), ConnectionRegistry(app.settings.paths.proc_dir)
    )

    async def handler(connection: Connection) -> None:
        await SMTPSession(connection, services, settings_for(connection), group.stopping).run()

    sock = bind_socket("127.0.0.1", 0)
    await group.start(
        ServiceSpec(
            name="smtp", sock=sock, handler=handler, idle_timeout=30.0, refusal=lambda r: b""
        )
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", socket_port(sock))
    client = Client(reader, writer)
    try:
        assert (await client.reply()).startswith(b"220 ")
        yield client
    finally:
        writer.close()
        await group.shutdown(5)
        group.registry.close()


@pytest.fixture
def app(tmp_path: Path) -> Any:
    application = build_application(_settings(tmp_path))
    application.users.database.add("alice", "right-password")
    yield application
    application.close()


def test_a_full_disk_while_spooling_is_452_and_leaves_nothing_in_the_queue(
    app: Application,
) -> None:
    queue_dir = app.settings.paths.queue_dir
    before = set(queue_dir.iterdir())
    disk = FullDisk(app.queue, room=150_000)

    async def scenario() -> None:
        adjust = lambda s: dataclasses.replace(s, queue=cast(QueueStore, disk))  # noqa: E731
        async with serving(app, adjust) as client:
            await client.command(b"EHLO client.example.org")
            assert (await client.command(b"MAIL FROM:<a@example.org>")).startswith(b"250")
            assert (await client.command(b"RCPT TO:<alice@example.test>")).startswith(b"250")
            assert (await client.command(b"DATA")).startswith(b"354")
            body = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (LARGE // 1000)
            reply = await client.command(body + b".")
            assert reply.startswith(b"452 4.3.1"), reply
            # The connection is fine: the next transaction is taken.
            assert (await client.command(b"RSET")).startswith(b"250")
            assert (await client.command(b"NOOP")).startswith(b"250")

    asyncio.run(scenario())
    assert disk.messages, "the message went through the injected store"
    assert set(queue_dir.iterdir()) == before  # no data file, no control file, no temp file


class UnreadableUsers(UserDatabase):
    def get(self, name: str) -> User | None:
        raise sqlite3.OperationalError("unable to open database file")


def test_an_unreadable_user_database_is_a_temporary_error_not_a_dropped_connection(
    app: Application, tmp_path: Path
) -> None:
    broken = UnreadableUsers(tmp_path / "broken-users.db")
    app.users.database = broken
    app.users._found.clear()

    async def scenario() -> None:
        async with serving(app, lambda s: s) as client:
            await client.command(b"EHLO client.example.org")
            auth = base64.b64encode(b"\0alice\0right-password")
            reply = await client.command(b"AUTH PLAIN " + auth)
            assert reply.startswith(b"454 4.7.0"), reply
            assert (await client.command(b"MAIL FROM:<a@example.org>")).startswith(b"250")
            reply = await client.command(b"RCPT TO:<alice@example.test>")
            assert reply.startswith(b"451 4.3.0"), reply
            assert (await client.command(b"QUIT")).startswith(b"221")

    asyncio.run(scenario())
    broken.close()


def test_auth_failures_are_logged_as_fail2ban_postfix_sasl_matches(
    app: Application, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="posthouse")

    async def scenario() -> None:
        async with serving(app, lambda s: s) as client:
            await client.command(b"EHLO client.example.org")
            wrong = base64.b64encode(b"\0alice\0guess")
            assert (await client.command(b"AUTH PLAIN " + wrong)).startswith(b"535 5.7.8")
            right = base64.b64encode(b"\0alice\0right-password")
            assert (await client.command(b"AUTH PLAIN " + right)).startswith(b"235")

    asyncio.run(scenario())
    lines = [f"posthouse[4242]: {r.getMessage()}" for r in caplog.records if "SASL" in r.message]
    assert len(lines) == 1, lines
    prefix = re.match(FAIL2BAN_PREFIX, lines[0])
    assert prefix is not None, lines[0]
    found = re.search(FAIL2BAN_MDRE_AUTH, prefix.group("content"), re.IGNORECASE)
    assert found is not None, lines[0]
    assert found.group("host") == "127.0.0.1"
    assert "guess" not in lines[0]  # never the password
    successes = [r.getMessage() for r in caplog.records if "sasl_method=PLAIN" in r.message]
    assert successes == ["client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=alice"]
