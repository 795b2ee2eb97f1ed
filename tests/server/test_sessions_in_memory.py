"""Transcripts of the SMTP and POP3 sessions over an in-memory connection (no sockets).

The session layer (server/session.py's driver, server/smtp.py, server/pop3.py) is run
directly on a `Connection` whose streams are in memory (memory.py): the greeting, a whole
mail transaction into alice's mailbox, pipelined commands answered in one write, STARTTLS
refused without TLS, the endings the driver imposes (idle timeout, command deadline,
shutdown) at their exact time on a virtual clock, and a POP3 login, RETR and QUIT.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from posthouse.app import Application, build_application, engine_settings, smtp_services_for
from posthouse.auth.credentials import CredentialChecker, LoginResult
from posthouse.config.load import load_settings
from posthouse.config.schema import ListenerSection
from posthouse.mta.queue.scheduler import DeliveryScheduler
from posthouse.protocols.pop3 import engine as pop3_engine
from posthouse.server.connection import Deadlines
from posthouse.server.pop3 import POP3Services, POP3Session
from posthouse.server.smtp import SMTPSession
from posthouse.store.maildrop import Maildrop, MaildropMessage
from tests.server.memory import MemoryClient, virtual_clock

HOST = "mail.example.test"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    config = tmp_path / "posthouse.toml"
    config.write_text(
        f"""
[server]
hostname = "{HOST}"
data_dir = "{tmp_path / "data"}"
run_as = ""

[mail]
local_domains = ["example.test"]
trusted_networks = []
""",
        encoding="utf-8",
    )
    application = build_application(load_settings(config))
    application.users.database.add("alice", "right-password")
    yield application
    application.close()


def smtp_session(
    app: Application, client: MemoryClient, stopping: asyncio.Event, **engine: Any
) -> SMTPSession:
    services = smtp_services_for(app, DeliveryScheduler(app.delivery, app.queue), None)
    settings_for = engine_settings(app, ListenerSection(protocol="smtp"), tls=False)
    settings = dataclasses.replace(settings_for(client.connection), **engine)
    return SMTPSession(client.connection, services, settings, stopping)


# --- SMTP ---------------------------------------------------------------------------------


def test_smtp_greeting_and_a_whole_mail_transaction(app: Application) -> None:
    async def scenario() -> None:
        client = MemoryClient()
        session = asyncio.create_task(smtp_session(app, client, asyncio.Event()).run())
        assert await client.reply() == f"220 {HOST} ESMTP posthouse\r\n".encode()
        ehlo = await client.command(b"EHLO client.example.org")
        assert ehlo.startswith(f"250-{HOST}\r\n".encode()) and b"250-PIPELINING\r\n" in ehlo
        assert await client.command(b"MAIL FROM:<bob@example.org>") == b"250 2.1.0 Sender ok\r\n"
        assert await client.command(b"RCPT TO:<alice@example.test>") == (
            b"250 2.1.5 Recipient ok\r\n"
        )
        assert (await client.command(b"DATA")).startswith(b"354 ")
        done = await client.command(b"Subject: hello\r\n\r\n..dotted line\r\nbye\r\n.")
        assert done.startswith(b"250 2.0.0 Ok: queued as "), done
        assert await client.command(b"QUIT") == f"221 2.0.0 {HOST} closing connection\r\n".encode()
        await session

    asyncio.run(scenario())
    mbox = (app.settings.paths.spool_dir / "alice").read_bytes()
    assert b"From bob@example.org " in mbox
    assert b"\nSubject: hello\n\n.dotted line\nbye\n" in mbox


def test_smtp_pipelined_commands_are_answered_in_one_write(app: Application) -> None:
    async def scenario() -> None:
        client = MemoryClient()
        session = asyncio.create_task(smtp_session(app, client, asyncio.Event()).run())
        await client.reply()
        await client.command(b"EHLO client.example.org")
        writes = len(client.writes)
        client.send(
            b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nRSET\r\nNOOP\r\n"
        )
        replies = [await client.reply() for _ in range(5)]
        assert [r[:4] for r in replies] == [b"250 ", b"250 ", b"550 ", b"250 ", b"250 "]
        assert len(client.writes) == writes + 1  # all five replies in one write
        client.eof()
        await session

    asyncio.run(scenario())


def test_smtp_starttls_is_refused_without_a_certificate(app: Application) -> None:
    async def scenario() -> None:
        client = MemoryClient()
        session = smtp_session(app, client, asyncio.Event(), starttls_available=True)
        task = asyncio.create_task(session.run())
        await client.reply()
        assert b"250-STARTTLS\r\n" in await client.command(b"EHLO client.example.org")
        assert await client.command(b"STARTTLS") == (
            b"454 4.7.0 TLS not available due to temporary reason\r\n"
        )
        assert await client.command(b"NOOP") == b"250 2.0.0 Ok\r\n"  # still in plaintext
        client.eof()
        await task

    asyncio.run(scenario())


def test_smtp_idle_timeout_ends_the_session_at_its_time(app: Application) -> None:
    async def scenario() -> tuple[bytes, float]:
        client = MemoryClient(idle_timeout=300.0)
        task = asyncio.create_task(smtp_session(app, client, asyncio.Event()).run())
        await client.reply()
        start = asyncio.get_running_loop().time()
        reply = await client.reply()
        await task
        return reply, asyncio.get_running_loop().time() - start

    reply, waited = virtual_clock(scenario())
    assert reply == f"421 4.4.2 {HOST} Timeout, closing\r\n".encode()
    assert waited == pytest.approx(300.0)


def test_smtp_command_deadline_ends_a_trickled_command(app: Application) -> None:
    async def scenario() -> tuple[bytes, float]:
        client = MemoryClient(idle_timeout=300.0, deadlines=Deadlines(command_timeout=20.0))
        task = asyncio.create_task(smtp_session(app, client, asyncio.Event()).run())
        await client.reply()
        start = asyncio.get_running_loop().time()
        client.send(b"EHLO client.exa")  # never finished
        reply = await client.reply()
        await task
        return reply, asyncio.get_running_loop().time() - start

    reply, waited = virtual_clock(scenario())
    assert reply == f"421 4.4.2 {HOST} Timeout, closing\r\n".encode()
    assert waited == pytest.approx(20.0)


def test_smtp_shutdown_lets_the_transaction_finish_then_says_so(app: Application) -> None:
    async def scenario() -> None:
        client = MemoryClient()
        stopping = asyncio.Event()
        task = asyncio.create_task(smtp_session(app, client, stopping).run())
        await client.reply()
        await client.command(b"EHLO client.example.org")
        await client.command(b"MAIL FROM:<bob@example.org>")
        stopping.set()  # the server is stopping: the transaction in flight goes on
        assert (await client.command(b"RCPT TO:<alice@example.test>")).startswith(b"250 ")
        assert (await client.command(b"DATA")).startswith(b"354 ")
        assert (await client.command(b"Subject: last\r\n\r\nlast\r\n.")).startswith(b"250 ")
        assert await client.reply() == f"421 4.3.2 {HOST} Service shutting down\r\n".encode()
        await task

    asyncio.run(scenario())


def test_smtp_idle_session_is_ended_by_a_shutdown(app: Application) -> None:
    async def scenario() -> bytes:
        client = MemoryClient()
        stopping = asyncio.Event()
        stopping.set()
        task = asyncio.create_task(smtp_session(app, client, stopping).run())
        await task
        return client.output

    assert virtual_clock(scenario()) == (
        f"220 {HOST} ESMTP posthouse\r\n421 4.3.2 {HOST} Service shutting down\r\n".encode()
    )


# --- POP3 ---------------------------------------------------------------------------------

MESSAGES = (b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\n.dot\r\nsecond\r\n")


class MemoryMaildrop:
    """A `Maildrop` in memory that records what it was asked to do."""

    def __init__(self) -> None:
        self.deleted: list[int] = []
        self.closed = False

    @property
    def messages(self) -> Sequence[MaildropMessage]:
        return [
            MaildropMessage(n, f"uid-{n}", len(m), dot_free=b"\n." not in m)
            for n, m in enumerate(MESSAGES, 1)
        ]

    def read(self, number: int) -> Iterator[bytes]:
        return iter((MESSAGES[number - 1],))

    def commit_deletions(self, numbers: Collection[int]) -> None:
        self.deleted = sorted(numbers)

    def close(self) -> None:
        self.closed = True


class Passwords:
    """The credential check of one user, alice, with the password ``secret``."""

    async def check_password(
        self, user: str, password: str, *, protocol: str, client: str
    ) -> LoginResult:
        if (user, password) == ("alice", "secret"):
            return LoginResult(True, "", None, "alice")
        return LoginResult(False, "authentication failed", "AUTH")


def pop3_session(
    client: MemoryClient, stopping: asyncio.Event, drop: MemoryMaildrop
) -> POP3Session:
    services = POP3Services(
        hostname=HOST,
        credentials=cast(CredentialChecker, Passwords()),
        open_maildrop=lambda user: cast(Maildrop, drop),
        tls_context=None,
        local_domains=lambda domain: domain == "example.test",
    )
    settings = pop3_engine.POP3Settings(hostname=HOST, plaintext_login_allowed=True)
    return POP3Session(client.connection, services, settings, stopping)


def test_pop3_login_retr_dele_quit() -> None:
    drop = MemoryMaildrop()

    async def scenario() -> None:
        client = MemoryClient()
        task = asyncio.create_task(pop3_session(client, asyncio.Event(), drop).run())
        assert await client.line() == b"+OK POP3 server ready\r\n"
        client.send(b"USER alice@example.test\r\nPASS wrong\r\n")
        assert await client.line() == b"+OK send PASS\r\n"
        assert await client.line() == b"-ERR [AUTH] authentication failed\r\n"
        client.send(b"USER alice\r\nPASS secret\r\nSTAT\r\n")
        assert await client.line() == b"+OK send PASS\r\n"
        sizes = sum(map(len, MESSAGES))
        assert await client.line() == f"+OK maildrop has 2 messages ({sizes} octets)\r\n".encode()
        assert await client.line() == f"+OK 2 {sizes}\r\n".encode()
        client.send(b"RETR 2\r\nDELE 1\r\nQUIT\r\n")
        retr = [await client.line() for _ in range(5)]
        assert retr == [
            f"+OK {len(MESSAGES[1])} octets\r\n".encode(),
            b"Subject: two\r\n",
            b"\r\n",
            b"..dot\r\n",  # byte-stuffed (RFC 1939 §3)
            b"second\r\n",
        ]
        assert await client.line() == b".\r\n"
        assert await client.line() == b"+OK message 1 deleted\r\n"
        assert await client.line() == f"+OK {HOST} POP3 server signing off\r\n".encode()
        await task

    asyncio.run(scenario())
    assert drop.deleted == [1]
    assert drop.closed


def test_pop3_idle_timeout_and_shutdown_replies() -> None:
    async def idle() -> tuple[bytes, float]:
        client = MemoryClient(idle_timeout=600.0)
        task = asyncio.create_task(pop3_session(client, asyncio.Event(), MemoryMaildrop()).run())
        await client.line()
        start = asyncio.get_running_loop().time()
        line = await client.line()
        await task
        return line, asyncio.get_running_loop().time() - start

    async def shutdown() -> bytes:
        client = MemoryClient()
        stopping = asyncio.Event()
        stopping.set()
        await pop3_session(client, stopping, MemoryMaildrop()).run()
        return client.output

    line, waited = virtual_clock(idle())
    assert line == b"-ERR autologout timer expired\r\n"
    assert waited == pytest.approx(600.0)
    assert virtual_clock(shutdown()) == (
        b"+OK POP3 server ready\r\n-ERR [SYS/TEMP] server shutting down\r\n"
    )
