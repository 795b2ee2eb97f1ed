"""IMAP end-to-end fixtures: a real ``posthouse serve`` with IMAP listeners, and the users'
INBOXes in its store."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from posthouse.app import mail_store_for
from posthouse.config.load import load_settings
from tests.e2e.conftest import TCP_LISTENERS, USERS, Server, add_users, write_config

IMAP_LISTENERS = """
[[listener]]
protocol = "imap"
port = 0

[[listener]]
protocol = "imaps"
port = 0
"""


def create_inboxes(config: Path, users: tuple[str, ...] = USERS) -> None:
    """Give the users their IMAP INBOX (what ``mailusradm`` does for IMAP-type users)."""
    store = mail_store_for(load_settings(config))

    async def create() -> None:
        for user in users:
            await store.create_user(user)
        await store.backend.close()

    asyncio.run(create())


def start(config: Path, home: Path, ca: trustme.CA, extra_ports: int) -> Server:
    log = open(home / "server.log", "a")  # noqa: SIM115 - closed by Server.release
    process = subprocess.Popen(
        [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    ports: dict[str, int] = {}
    output: list[str] = []
    assert process.stdout is not None
    wanted = TCP_LISTENERS + extra_ports
    for line in process.stdout:
        output.append(line)
        match = re.match(r"posthouse: listening (\w+) on 127\.0\.0\.1:(\d+)", line)
        if match:
            ports[match.group(1)] = int(match.group(2))
        if len(ports) == wanted:
            break
    if len(ports) < wanted:
        process.wait(timeout=10)
        process.stdout.close()
        log.close()
        raise AssertionError(
            f"server did not start: {''.join(output)}\n{(home / 'server.log').read_text()}"
        )
    return Server(home, config, process, ports, ca, home / "lmtp.sock", output, log)


@pytest.fixture
def imap_factory(tmp_path: Path, ca: trustme.CA) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def factory(
        workers: int = 1, extra: str = "", queue: dict[str, object] | None = None
    ) -> Server:
        root = tmp_path / f"imap{len(started)}"
        root.mkdir()
        config = write_config(root, ca, IMAP_LISTENERS + extra, workers, queue=queue)
        (root / "data" / "etc").mkdir(parents=True, exist_ok=True)
        add_users(root)
        create_inboxes(config)
        server = start(config, root, ca, 2)
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=30)
        server.release()


@pytest.fixture
def imap_server(imap_factory: Callable[..., Server]) -> Server:
    return imap_factory()
