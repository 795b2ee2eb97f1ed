"""The Quick start: the unconfigured first start makes the demo user, and a ``posthouse
serve`` on that data directory serves IMAP, where the demo user logs in and finds the welcome
message in the INBOX of the IMAP store."""

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
    # The demo user exists only in the unconfigured mode (fixed ports): make it there, then
    # serve the same data directory with a configuration that listens on free ports.
    monkeypatch.delenv("POSTHOUSE_CONFIG", raising=False)
    monkeypatch.setenv("POSTHOUSE_HOME", str(tmp_path / "data"))
    assert first_run(load_settings(None))
    config = tmp_path / "posthouse.toml"
    config.write_text(
        f'[server]\nhostname = "mail.example.test"\ndata_dir = "{tmp_path / "data"}"\n'
        'run_as = ""\nworkers = 1\n\n[mail]\nlocal_domains = ["example.test"]\n\n'
        '[[listener]]\nprotocol = "smtp"\nport = 0\n\n'
        '[[listener]]\nprotocol = "imap"\nport = 0\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        port, password = 0, ""
        for line in process.stdout:
            match = re.match(r"posthouse: listening imap on 127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
            found = re.search(r"password[: ]+(\S+)", line)
            if "demo" in line and found:
                password = found.group(1)
            if port and password:
                break
        assert port and password, "the server did not announce IMAP and the demo user"
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
