"""Connection records in proc/: one file per process, kept current off the event loop."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from posthouse.server.records import (
    ConnectionRegistry,
    prepare_records_dir,
    remove_stale_records,
)


def test_registry_mirrors_connections_to_a_file(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        registry = ConnectionRegistry(tmp_path, interval=0.01)
        first = registry.open("smtp", "[127.0.0.1]:1000")
        second = registry.open("pop3", "[127.0.0.1]:1001")
        second.update(user="alice", mailbox="INBOX")
        path = tmp_path / str(os.getpid())
        while not path.exists() or "alice" not in path.read_text():
            await asyncio.sleep(0.01)
        snapshot = path.read_text().splitlines()
        first.remove()
        while "smtp" in path.read_text():
            await asyncio.sleep(0.01)
        registry.close()
        assert not path.exists()
        return snapshot

    lines = asyncio.run(scenario())
    fields = sorted(line.split("\t")[1:] for line in lines)
    assert fields == [
        ["pop3", "[127.0.0.1]:1001", "alice", "INBOX"],
        ["smtp", "[127.0.0.1]:1000", "", ""],
    ]


def test_stale_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / child.stdout.strip()
    dead.write_text("x\tsmtp\tc\t\t\n")
    alive = tmp_path / str(os.getpid())
    alive.write_text("y\tsmtp\tc\t\t\n")
    assert remove_stale_records(tmp_path) == 1
    assert not dead.exists() and alive.exists()


def test_records_are_private_to_the_daemons_account(tmp_path: Path) -> None:
    directory = tmp_path / "proc"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    leftover = directory / f".{os.getpid()}.tmp"
    leftover.write_text("old\n")
    leftover.chmod(0o644)
    old_umask = os.umask(0)
    try:
        registry = ConnectionRegistry(directory, interval=0.01)
        record = registry.open("pop3", "[192.0.2.1]:1000")
        record.update(user="alice")
        registry._write("".join(r.line() for r in [record]))
    finally:
        os.umask(old_umask)
    path = directory / str(os.getpid())
    assert "alice" in path.read_text()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    registry.close()


def test_new_records_directory_is_0700(tmp_path: Path) -> None:
    prepare_records_dir(tmp_path / "a" / "proc")
    assert stat.S_IMODE((tmp_path / "a" / "proc").stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try another account (CI is root)")
def test_another_account_cannot_read_the_records() -> None:
    base = Path(tempfile.mkdtemp(prefix="posthouse-records-"))  # reachable by nobody
    try:
        base.chmod(0o755)
        registry = ConnectionRegistry(base / "proc", interval=0.01)
        registry._write("x\tpop3\t[192.0.2.1]:1000\talice\tINBOX\n")
        os.chmod(base / "proc", 0o755)  # even with the directory opened up, the file is 0600
        (base / "proc" / "readable").write_text("yes\n")
        (base / "proc" / "readable").chmod(0o644)

        def cat_as_nobody(name: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["/bin/cat", str(base / "proc" / name)], user=65534, group=65534,
                extra_groups=[], capture_output=True, text=True, check=False,
            )  # fmt: skip

        assert cat_as_nobody("readable").stdout == "yes\n"  # the path itself is reachable
        probe = cat_as_nobody(str(os.getpid()))
        assert probe.returncode != 0 and "Permission denied" in probe.stderr
        registry.close()
    finally:
        shutil.rmtree(base)
