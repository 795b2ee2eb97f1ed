"""The Quick start: the unconfigured mode listens for IMAP too, and the demo user it creates
logs in over IMAP and finds the welcome message in the INBOX of the IMAP store."""

from __future__ import annotations

import imaplib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from posthouse.admin.data import first_run
from posthouse.config.load import load_settings


def test_the_demo_user_reads_its_inbox_over_imap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "quick"
    monkeypatch.delenv("POSTHOUSE_CONFIG", raising=False)
    monkeypatch.setenv("POSTHOUSE_HOME", str(home))
    embedded = load_settings(None)
    assert ("imap", "127.0.0.1", 1143) in [
        (listener.protocol, listener.address, listener.port)
        for listener in embedded.config.listener
    ]
    password = first_run(embedded)  # what `posthouse serve` does first in this mode
    assert password
    # Serve that data directory on a free port (the embedded ports may be taken here).
    config = tmp_path / "posthouse.toml"
    config.write_text(
        f'[server]\nhostname = "mail.example.test"\ndata_dir = "{home}"\nrun_as = ""\n'
        'workers = 1\n\n[[listener]]\nprotocol = "imap"\nport = 0\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = 0
        for line in process.stdout:
            match = re.match(r"posthouse: listening imap on 127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the server did not announce its IMAP listener"
        client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
        client.login("demo", password)
        assert client.select("INBOX") == ("OK", [b"1"])
        typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and b"Subject: Welcome to posthouse" in data[0][1]  # type: ignore[index]
        client.logout()
    finally:
        process.terminate()
        process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()
