"""``posthouse mailboxes backup`` while the server runs and serves IMAP, and ``restore``
refused until it is stopped (its processes hold the list open)."""

from __future__ import annotations

import imaplib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import PASSWORD, Server

REPO = Path(__file__).resolve().parents[3]


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


def test_backup_while_running_and_restore_only_when_stopped(
    imap_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = imap_factory()
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login("alice", PASSWORD)
    assert client.create("INBOX.before")[0] == "OK"
    backup = tmp_path / "mailboxes-00.db"
    done = posthouse("mailboxes", "backup", str(backup), "--config", str(server.config_path))
    assert done.returncode == 0, done.stderr
    assert client.create("INBOX.after")[0] == "OK"
    refused = posthouse("mailboxes", "restore", str(backup), "--config", str(server.config_path))
    assert refused.returncode == 69 and "stop it first" in refused.stderr
    client.logout()
    stopped = posthouse("stop", "--config", str(server.config_path))
    assert stopped.returncode == 0, stopped.stderr
    server.process.wait(timeout=60)
    done = posthouse("mailboxes", "restore", str(backup), "--config", str(server.config_path))
    assert done.returncode == 0, done.stderr
    listed = posthouse("mailboxes", "check", str(backup), "--config", str(server.config_path))
    assert "is not in this backup" in listed.stdout  # INBOX.after's folder, made since
