"""A crash at any moment loses no acknowledged message.

Client sessions send messages while the server is killed with SIGKILL in the
middle; after a restart every message that was answered 250 is in a mailbox
(counted by Message-ID): delivered locally, and relayed to a next hop.
"""

from __future__ import annotations

import re
import signal
import smtplib
import threading
from collections.abc import Callable

from tests.e2e.conftest import Server, wait_until

Factory = Callable[..., Server]


def load_until_killed(
    server: Server,
    *,
    sessions: int,
    per_session: int,
    kill_after: int,
    tag: str,
    recipient: Callable[[int], str],
    size: Callable[[int], int] = lambda _number: 5000,
) -> set[str]:
    """Send from ``sessions`` threads until the server is SIGKILLed after ``kill_after``
    acknowledged messages; returns the Message-IDs that were answered 250."""
    acknowledged: set[str] = set()
    lock = threading.Lock()
    killed = threading.Event()

    def client(index: int) -> None:
        try:
            connection = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30)
            connection.ehlo("load.test")
        except OSError:
            return
        for number in range(per_session):
            message_id = f"<{tag}-{index}-{number}@load.test>"
            body = (
                f"Message-ID: {message_id}\r\nSubject: {tag} {index}/{number}\r\n\r\n"
                + "x" * size(number)
                + "\r\n"
            )
            try:
                connection.sendmail("load@example.test", [recipient(number)], body)
            except (smtplib.SMTPException, OSError):
                return
            with lock:
                acknowledged.add(message_id)
                if len(acknowledged) >= kill_after and not killed.is_set():
                    killed.set()
                    server.process.send_signal(signal.SIGKILL)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert killed.is_set(), "the load finished before the kill"
    server.process.wait(timeout=30)
    assert len(acknowledged) >= kill_after
    return acknowledged


def message_ids(servers_mboxes: list[tuple[Server, str]], tag: str) -> set[str]:
    found: set[str] = set()
    pattern = re.compile(rb"<" + tag.encode() + rb"-\d+-\d+@load\.test>")
    for server, user in servers_mboxes:
        path = server.mbox(user)
        if path.exists():
            found.update(m.decode() for m in pattern.findall(path.read_bytes()))
    return found


def test_sigkill_mid_load_loses_no_acknowledged_message(server_factory: Factory) -> None:
    server = server_factory()
    users = ("alice", "bob", "carol")
    acknowledged = load_until_killed(
        server,
        sessions=20,
        per_session=100,
        kill_after=700,
        tag="crash",
        recipient=lambda number: f"{users[number % 3]}@example.test",
    )
    restarted = server_factory(home=server.home)

    def delivered() -> set[str]:
        return message_ids([(restarted, user) for user in users], "crash")

    wait_until(lambda: acknowledged <= delivered(), timeout=120, what="every acknowledged message")


def test_sigkill_of_a_relay_loses_no_acknowledged_message(server_factory: Factory) -> None:
    """The same for relayed mail: small messages go through cut-through (the next hop has them
    before the 250), large ones through the queue; after SIGKILL and a restart of the relay,
    the next hop ends up with every acknowledged message."""
    remote = server_factory(hostname="mx.remote.test", mail={"local_domains": ["remote.test"]})
    route = f'\n[[route]]\ndomain = "remote.test"\nto = "127.0.0.1:{remote.smtp_port}"\n'
    trusted = {"trusted_networks": ["127.0.0.0/8"]}
    relay = server_factory(hostname="relay.example.test", mail=trusted, extra=route)
    acknowledged = load_until_killed(
        relay,
        sessions=10,
        per_session=50,
        kill_after=250,
        tag="relay",
        recipient=lambda _number: "bob@remote.test",
        size=lambda number: 70_000 if number % 10 == 0 else 5000,  # over 64 KiB: queued first
    )
    server_factory(home=relay.home, hostname="relay.example.test", mail=trusted, extra=route)

    def delivered() -> set[str]:
        return message_ids([(remote, "bob")], "relay")

    wait_until(lambda: acknowledged <= delivered(), timeout=120, what="every acknowledged message")
    assert any(m.split("-")[2].startswith("0@") for m in acknowledged)  # a queued one too
