"""Connection records in proc/: one file per process, kept current off the event loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from posthouse.server.records import ConnectionRegistry, remove_stale_records


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
