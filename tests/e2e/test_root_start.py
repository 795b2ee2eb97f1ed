"""Started as root, the daemon says which account it becomes and that it now owns the data."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_root_start_names_the_account_and_the_data_directory() -> None:
    try:
        pwd.getpwnam("mail")
    except KeyError:
        pytest.skip("no mail account")
    base = Path(tempfile.mkdtemp(prefix="posthouse-rootstart-"))
    try:
        base.chmod(0o755)
        config = base / "posthouse.toml"
        config.write_text(
            f'[server]\ndata_dir = "{base / "data"}"\nrun_as = "mail"\nworkers = 1\n\n'
            '[[listener]]\nprotocol = "smtp"\nport = 0\n'
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("posthouse: listening"):
                break
        process.terminate()
        process.wait(timeout=60)
        process.stdout.close()
        expected = (
            f"posthouse: started as root: running as mail, which now owns {base / 'data'} "
            "(server.run_as)"
        )
        assert expected in lines, lines
        assert (base / "data").stat().st_uid == pwd.getpwnam("mail").pw_uid
    finally:
        shutil.rmtree(base, ignore_errors=True)
