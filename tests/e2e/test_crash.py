"""A crash at any moment loses no acknowledged message.

20 client sessions send 2,000 messages; the server is killed with SIGKILL in
the middle; after a restart every message that was answered 250 is in a
mailbox (counted by Message-ID).
"""

from __future__ import annotations

import re
import signal
import smtplib
import threading
from collections.abc import Callable

from tests.e2e.conftest import Server, wait_until

SESSIONS = 20
PER_SESSION = 100
KILL_AFTER = 700


def test_sigkill_mid_load_loses_no_acknowledged_message(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory()
    acknowledged: set[str] = set()
    lock = threading.Lock()
    killed = threading.Event()

    def client(index: int) -> None:
        try:
            connection = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30)
            connection.ehlo("load.test")
        except OSError:
            return
        for number in range(PER_SESSION):
            message_id = f"<crash-{index}-{number}@load.test>"
            user = ("alice", "bob", "carol")[number % 3]
            body = (
                f"Message-ID: {message_id}\r\nSubject: crash {index}/{number}\r\n\r\n"
                + "x" * 5000
                + "\r\n"
            )
            try:
                connection.sendmail("load@remote.test", [f"{user}@example.test"], body)
            except (smtplib.SMTPException, OSError):
                return
            with lock:
                acknowledged.add(message_id)
                if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                    killed.set()
                    server.process.send_signal(signal.SIGKILL)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(SESSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert killed.is_set(), "the load finished before the kill"
    server.process.wait(timeout=30)
    assert len(acknowledged) >= KILL_AFTER

    restarted = server_factory(home=server.home)

    def delivered() -> set[str]:
        found: set[str] = set()
        for user in ("alice", "bob", "carol"):
            path = restarted.mbox(user)
            if path.exists():
                found.update(
                    m.decode()
                    for m in re.findall(rb"<crash-\d+-\d+@load\.test>", path.read_bytes())
                )
        return found

    wait_until(lambda: acknowledged <= delivered(), timeout=120, what="every acknowledged message")
    missing = acknowledged - delivered()
    assert not missing, f"{len(missing)} acknowledged messages lost"


def test_sigkill_of_a_relay_loses_no_acknowledged_message(
    server_factory: Callable[..., Server],
) -> None:
    """The same for relayed mail: small messages go through cut-through (the next hop has them
    before the 250), large ones through the queue; after SIGKILL and a restart of the relay,
    the next hop ends up with every acknowledged message."""
    remote = server_factory(hostname="mx.remote.test", mail={"local_domains": ["remote.test"]})
    route = f'\n[[route]]\ndomain = "remote.test"\nto = "127.0.0.1:{remote.smtp_port}"\n'
    trusted = {"trusted_networks": ["127.0.0.0/8"]}
    relay = server_factory(hostname="relay.example.test", mail=trusted, extra=route)
    acknowledged: set[str] = set()
    lock = threading.Lock()
    killed = threading.Event()
    sessions, per_session, kill_after = 10, 50, 250

    def client(index: int) -> None:
        try:
            connection = smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=30)
            connection.ehlo("load.test")
        except OSError:
            return
        for number in range(per_session):
            message_id = f"<relay-{index}-{number}@load.test>"
            size = 70_000 if number % 10 == 0 else 5000  # over 64 KiB: queued first
            body = f"Message-ID: {message_id}\r\nSubject: relay\r\n\r\n" + "x" * size + "\r\n"
            try:
                connection.sendmail("load@example.test", ["bob@remote.test"], body)
            except (smtplib.SMTPException, OSError):
                return
            with lock:
                acknowledged.add(message_id)
                if len(acknowledged) >= kill_after and not killed.is_set():
                    killed.set()
                    relay.process.send_signal(signal.SIGKILL)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert killed.is_set(), "the load finished before the kill"
    relay.process.wait(timeout=30)
    server_factory(home=relay.home, hostname="relay.example.test", mail=trusted, extra=route)

    def delivered() -> set[str]:
        path = remote.mbox("bob")
        if not path.exists():
            return set()
        return {m.decode() for m in re.findall(rb"<relay-\d+-\d+@load\.test>", path.read_bytes())}

    wait_until(lambda: acknowledged <= delivered(), timeout=120, what="every acknowledged message")
    assert any(int(m.split("-")[2].split("@")[0]) % 10 == 0 for m in acknowledged)
