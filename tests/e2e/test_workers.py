"""Worker processes end with their supervisor, even when it is killed outright."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Server, wait_until


def children_of(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_workers_die_with_a_killed_supervisor(server_factory: Callable[..., Server]) -> None:
    server = server_factory(workers=2)
    wait_until(lambda: len(children_of(server.process.pid)) >= 2, what="two workers")
    workers = children_of(server.process.pid)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=30)
    wait_until(lambda: not any(alive(pid) for pid in workers), what="the workers to end")
