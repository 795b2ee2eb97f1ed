"""``posthouse reconstruct`` against a running server (chapter 12.5.5): a message file added
by hand and an index deleted under the server; a client that has the mailbox selected sees
the rebuilt mailbox; ``--config`` before or after the tool; a missing mailbox is reported."""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from posthouse.app import mail_store_for
from posthouse.config.load import load_settings
from posthouse.store.fs.backend import FsBackend
from tests.e2e.conftest import PASSWORD, Server

REPO = Path(__file__).resolve().parents[3]


def folder_of(server: Server, name: str) -> Path:
    backend = mail_store_for(load_settings(server.config_path)).backend
    assert isinstance(backend, FsBackend)
    record = asyncio.run(backend.get_mailbox(name))
    assert record is not None
    return backend.layout.mailbox_dir(record.partition, record.id)


def posthouse(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    return subprocess.run(
        [sys.executable, "-m", "posthouse", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def uids_and_flags(client: imaplib.IMAP4) -> dict[int, str]:
    typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK"
    found = {}
    for line in data:
        assert isinstance(line, bytes)
        match = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)", line)
        assert match, line
        if match.group(1):
            uid, flags = match.group(1), match.group(2)
        else:
            uid, flags = match.group(4), match.group(3)
        found[int(uid)] = " ".join(f for f in flags.decode().split() if f != "\\Recent")
    return found


def test_reconstruct_under_a_running_server(imap_factory: Callable[..., Server]) -> None:
    server = imap_factory()
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login("alice", PASSWORD)
    for n in range(3):
        client.append(
            "INBOX", "(\\Flagged)" if n == 1 else None, None, b"Subject: %d\r\n\r\nx\r\n" % n
        )
    assert client.select("INBOX")[0] == "OK"
    assert uids_and_flags(client) == {1: "", 2: "\\Flagged", 3: ""}
    folder = folder_of(server, "user.alice")
    shutil.copy(folder / "1.", folder / "40.")

    done = posthouse("reconstruct", "--config", str(server.config_path), "user.alice")
    assert done.returncode == 0, done.stderr
    assert "user.alice: 4 messages, 3 with their flags and dates kept" in done.stdout
    assert "added: UID 40" in done.stdout
    assert client.noop()[0] == "OK"
    assert uids_and_flags(client) == {1: "", 2: "\\Flagged", 3: "", 40: ""}

    (folder / "3.").unlink()
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (folder / name).unlink(missing_ok=True)
    done = posthouse("--config", str(server.config_path), "reconstruct", "-r", "user.alice")
    assert done.returncode == 0, done.stderr
    assert "index state lost: new UIDVALIDITY" in done.stdout
    assert "user.alice.Sent: 0 messages" in done.stdout  # -r: the folders below too
    client.logout()  # a new UIDVALIDITY: a client starts over (RFC 3501 §2.3.1.1)
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login("alice", PASSWORD)
    assert client.select("INBOX")[0] == "OK"
    assert sorted(uids_and_flags(client)) == [1, 2, 40]
    typ, data = client.uid("FETCH", "40", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and b"Subject: 0" in data[0][1]  # type: ignore[index]
    assert client.append("INBOX", None, None, b"Subject: new\r\n\r\nx\r\n")[0] == "OK"
    client.logout()

    missing = posthouse("reconstruct", "user.nobody", "--config", str(server.config_path))
    assert missing.returncode == 67 and "user.nobody: no such mailbox" in missing.stderr


def test_the_imap_reconstruct_command_is_for_admins(imap_factory: Callable[..., Server]) -> None:
    """Cyrus's ``RECONSTRUCT mailbox [RECURSIVE]``, what cyradm's reconstruct sends."""
    imaplib.Commands.setdefault("RECONSTRUCT", ("AUTH", "SELECTED"))
    server = imap_factory(extra='\n[imap]\nadmins = "carol"\n')
    folder = folder_of(server, "user.bob")
    bob = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    bob.login("bob", PASSWORD)
    assert bob.append("INBOX", None, None, b"Subject: 1\r\n\r\nx\r\n")[0] == "OK"
    shutil.copy(folder / "1.", folder / "9.")
    typ, data = bob._simple_command("RECONSTRUCT", "INBOX")
    assert typ == "NO" and b"[NOPERM]" in data[0]  # type: ignore[operator]
    admin = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    admin.login("carol", PASSWORD)
    typ, _ = admin._simple_command("RECONSTRUCT", "user.bob", "RECURSIVE")
    assert typ == "OK"
    lines = [line for line in admin.untagged_responses.get("OK", []) if b"user.bob" in line]
    assert b"user.bob: 2 messages, 1 added, 0 dropped" in lines
    assert any(line.startswith(b"user.bob.Sent: 0 messages") for line in lines)
    assert bob.select("INBOX")[0] == "OK"
    assert bob.uid("SEARCH", "ALL")[1] == [b"1 9"]
    admin.logout()
    bob.logout()
