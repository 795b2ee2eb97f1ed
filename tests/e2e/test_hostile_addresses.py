"""Hostile addresses end to end: a quoted local part that looks like a program, a file, a
mailbox escape or an include is a mailbox at its domain, never anything else.

Each case goes through a real ``posthouse serve`` whose client (127.0.0.1) is outside the
trusted networks: as a sender whose mail bounces (the bounce must go to the quoted remote
address as given), as a recipient relayed by an authenticated client, and at a local domain.
The next hop for ``evil.example`` is an SMTP sink that records the exact ``RCPT TO`` it got.
"""

from __future__ import annotations

import asyncio
import smtplib
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, Server, wait_until
from tests.mta.smtp_sink import Received, SMTPSink

Factory = Callable[..., Server]


class ThreadedSink:
    """An :class:`SMTPSink` on its own event loop in a thread, for tests without a loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sink = SMTPSink()

    def __enter__(self) -> ThreadedSink:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sink.__aenter__(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        exit_sink = self.sink.__aexit__(None, None, None)
        asyncio.run_coroutine_threadsafe(exit_sink, self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()

    @property
    def port(self) -> int:
        return self.sink.port

    def messages(self) -> list[Received]:
        return list(self.sink.messages)


@pytest.fixture
def sink() -> Iterator[ThreadedSink]:
    with ThreadedSink() as running:
        yield running


@pytest.fixture
def trap() -> Iterator[Path]:
    """A short directory (local parts are at most 64 octets) where nothing may appear."""
    with tempfile.TemporaryDirectory(prefix="ph") as name:
        yield Path(name)


def hostile_local_parts(tmp: Path) -> list[str]:
    """Quoted local parts (RFC 5321 form) that an older posthouse turned into a program run,
    a file written, a spool mailbox created or an include file read."""
    return [
        f'"|touch {tmp}/ran-program"',
        f'"|id>{tmp}/ran-id;#"',
        f'"{tmp}/written-file"',
        '"\\\\carol"',  # \carol, quoted as RFC 5321 requires
        '":include:/etc/passwd"',
    ]


def start(server_factory: Factory, sink: ThreadedSink, tmp: Path) -> Server:
    aliases_route = f'\n[[route]]\ndomain = "evil.example"\nto = "127.0.0.1:{sink.port}"\n'
    server = server_factory(
        extra=aliases_route,
        # 127.0.0.1 is outside the trusted networks: an untrusted Internet client.
        mail={"trusted_networks": ["10.9.9.0/24"]},
    )
    (server.home / "data" / "etc" / "aliases").write_text("broken: nosuchuser\n")
    assert server.cli("newaliases").returncode == 0
    return server


def nothing_ran(server: Server, tmp: Path) -> None:
    assert not (tmp / "ran-program").exists()
    assert not list(tmp.glob("ran-id*"))
    assert not list(tmp.glob("written-file*"))
    spool = server.home / "data" / "spool" / "mail"
    assert not [p.name for p in spool.iterdir() if "@" in p.name or p.name.startswith("\\")]
    assert server.messages("carol") == []


@pytest.mark.parametrize("authenticated", [False, True], ids=["untrusted", "authenticated"])
def test_quoted_senders_get_their_bounce_at_the_quoted_remote_address(
    server_factory: Factory, sink: ThreadedSink, trap: Path, authenticated: bool
) -> None:
    server = start(server_factory, sink, trap)
    senders = [f"{local}@evil.example" for local in hostile_local_parts(trap)]
    port = server.ports["submission"] if authenticated else server.smtp_port
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("attacker.example")
        if authenticated:
            client.login("alice", PASSWORD)
        for sender in senders:
            assert client.docmd(f"MAIL FROM:<{sender}>")[0] == 250
            assert client.docmd("RCPT TO:<broken@example.test>")[0] == 250
            assert client.data(b"Subject: bounce me\r\n\r\nhello")[0] == 250
    # Every bounce reaches the sink, addressed exactly as the sender was given.
    wait_until(lambda: len(sink.messages()) >= len(senders), what="the bounces to arrive")
    received = sorted(rcpt for message in sink.messages() for rcpt in message.recipients)
    assert received == sorted(senders)
    assert all(message.sender == "" for message in sink.messages())
    nothing_ran(server, trap)


def test_quoted_recipients_are_relayed_as_given(
    server_factory: Factory, sink: ThreadedSink, trap: Path
) -> None:
    server = start(server_factory, sink, trap)
    recipients = [f"{local}@evil.example" for local in hostile_local_parts(trap)]
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as client:
        client.ehlo("alice.example")
        client.login("alice", PASSWORD)
        assert client.docmd("MAIL FROM:<alice@example.test>")[0] == 250
        for recipient in recipients:
            assert client.docmd(f"RCPT TO:<{recipient}>")[0] == 250
        assert client.data(b"Subject: relayed\r\n\r\nhello")[0] == 250
    wait_until(lambda: bool(sink.messages()), what="the relayed message")
    received = sorted(rcpt for message in sink.messages() for rcpt in message.recipients)
    assert received == sorted(recipients)
    nothing_ran(server, trap)


def test_untrusted_client_cannot_relay_hostile_recipients(
    server_factory: Factory, sink: ThreadedSink, trap: Path
) -> None:
    server = start(server_factory, sink, trap)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.ehlo("attacker.example")
        assert client.docmd("MAIL FROM:<x@attacker.example>")[0] == 250
        for local in hostile_local_parts(trap):
            code, text = client.docmd(f"RCPT TO:<{local}@evil.example>")
            assert (code, text[:5]) == (554, b"5.7.1"), text
    assert sink.messages() == []
    nothing_ran(server, trap)


def test_quoted_local_parts_at_a_local_domain_are_unknown_users(
    server_factory: Factory, sink: ThreadedSink, trap: Path
) -> None:
    server = start(server_factory, sink, trap)
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as client:
        client.ehlo("alice.example")
        client.login("alice", PASSWORD)
        assert client.docmd("MAIL FROM:<alice@example.test>")[0] == 250
        for local in hostile_local_parts(trap):
            code, _text = client.docmd(f"RCPT TO:<{local}@example.test>")
            assert code == 550
        # A plain local part in quotes is still the user.
        assert client.docmd('RCPT TO:<"bob"@example.test>')[0] == 250
        assert client.data(b"Subject: quoted\r\n\r\nfor bob")[0] == 250
    assert b"for bob" in server.wait_for_messages("bob", 1)[0]
    nothing_ran(server, trap)
