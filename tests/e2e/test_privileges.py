"""Started as root, the daemon binds its listeners and then runs as the unprivileged mail user."""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.conftest import mbox_messages, wait_until


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: CI runs as root")
def test_root_drops_to_run_as_user() -> None:
    account = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="posthouse-root-"))
    base.chmod(0o755)
    process: subprocess.Popen[str] | None = None
    try:
        config = base / "posthouse.toml"
        config.write_text(
            f'[server]\nhostname = "mail.example.test"\ndata_dir = "{base / "data"}"\n'
            'run_as = "nobody"\n\n[mail]\nlocal_domains = ["example.test"]\n'
            'trusted_networks = []\n\n[[listener]]\nprotocol = "smtp"\nport = 0\n'
        )
        added = subprocess.run(
            [sys.executable, "-m", "posthouse", "user", "add", "demo", "--password-stdin",
             "--config", str(config)],
            input="demo-pass\n", capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        process = subprocess.Popen(
            [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        port = 0
        for line in process.stdout:
            if line.startswith("posthouse: listening smtp on 127.0.0.1:"):
                port = int(line.rsplit(":", 1)[1])
                break
        assert port, "the server did not start"
        status = Path(f"/proc/{process.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(account.pw_uid)] * 4  # real, effective, saved, fs
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail(
                "a@remote.test", ["demo@example.test"], b"Subject: dropped\r\n\r\nx\r\n"
            )
        spool = base / "data" / "spool" / "mail" / "demo"
        wait_until(lambda: spool.exists() and len(mbox_messages(spool)) == 1, what="delivery")
        assert spool.stat().st_uid == account.pw_uid
        process.terminate()
        assert process.wait(timeout=60) == 0
        process.stdout.close()
        assert process.stderr is not None
        process.stderr.close()
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
