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
