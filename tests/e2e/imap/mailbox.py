"""What the real-client tests share: mail put into a user's store with imaplib APPEND, the
server's view read back with imaplib, and external clients run with a timeout."""

from __future__ import annotations

import imaplib
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.e2e.conftest import PASSWORD, Server

CLIENT_TIMEOUT = 120.0  # seconds any external client may run (a loaded 2-core machine)


def message(subject: str, body: str = "hello") -> bytes:
    return (
        f"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n"
        f"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def connect(server: Server, user: str = "bob") -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    status, data = client.login(user, PASSWORD)
    assert status == "OK", data
    return client


def append(server: Server, mailbox: str, *messages: bytes, user: str = "bob") -> None:
    """Put *messages* into *mailbox* of *user* (creating it when it is not INBOX)."""
    client = connect(server, user)
    try:
        if mailbox != "INBOX":
            client.create(mailbox)
        for raw in messages:
            status, data = client.append(mailbox, None, None, raw)
            assert status == "OK", data
    finally:
        client.logout()


def server_view(server: Server, mailbox: str = "INBOX", user: str = "bob") -> dict[str, set[str]]:
    """Subject -> flags of every message in *mailbox*, as the server has them now (the
    tests' subjects are unique: a message twice fails)."""
    client = connect(server, user)
    try:
        status, data = client.select(mailbox, readonly=True)
        assert status == "OK", data
        if data[0] == b"0":
            return {}
        status, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK", data
        view: dict[str, set[str]] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
            subject = re.search(rb"Subject: (.*?)\r\n", item[1])
            assert flags and subject, item
            name = subject.group(1).decode()
            assert name not in view, f"two messages {name!r} in {mailbox}"  # none doubled
            view[name] = set(flags.group(1).decode().split())
        return view
    finally:
        client.logout()


def mailboxes(server: Server, user: str = "bob") -> set[str]:
    client = connect(server, user)
    try:
        status, data = client.list()
        assert status == "OK", data
        return {
            line.rsplit(b" ", 1)[1].strip(b'"').decode() for line in data if isinstance(line, bytes)
        }
    finally:
        client.logout()


def run(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a client to its end (bounded by :data:`CLIENT_TIMEOUT`); fail with its output
    when it exits non-zero."""
    done = subprocess.run(
        list(command),
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (
        f"{command[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done
