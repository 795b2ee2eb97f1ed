"""End-to-end fixtures: a real ``posthouse serve`` process on kernel-chosen loopback ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
import trustme

from posthouse.auth.users import UserDatabase
from posthouse.store.mbox.locking import LockMethod, locked_mailbox

PASSWORD = "s3cret-pass"
USERS = ("alice", "bob", "carol")
TCP_LISTENERS = 5  # smtp, submission, smtps, pop3, pop3s


def wait_until(
    condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def mbox_messages(path: Path) -> list[bytes]:
    """Split an mbox file into messages, without their From_ lines and separator lines.

    posthouse writes ``From_ line``, the content (ending in a newline) and one blank
    separator line per message; ``From `` inside content is quoted, so the text
    "blank line, From " only occurs between messages.
    """
    if not path.exists():
        return []
    # Read under the same lock the delivery agent takes, as a mail reader would.
    with locked_mailbox(path, LockMethod.LOCKF, timeout=60) as mailbox:
        mailbox.seek(0)
        data = mailbox.read()
    if not data:
        return []
    assert data.startswith(b"From "), "an mbox starts with a From_ line"
    parts = data.split(b"\n\nFrom ")
    messages = []
    for index, part in enumerate(parts):
        _from_line, _, content = part.partition(b"\n")
        if index == len(parts) - 1:
            assert content.endswith(b"\n\n"), "the last message ends with a separator line"
            content = content[:-1]
        else:
            content += b"\n"
        messages.append(content)
    return messages


@dataclass
class Server:
    """A running posthouse daemon."""

    home: Path
    config_path: Path
    process: subprocess.Popen[str]
    ports: dict[str, int]
    ca: trustme.CA
    lmtp_path: Path | None = None
    output: list[str] = field(default_factory=list)
    log: IO[str] | None = None

    @property
    def smtp_port(self) -> int:
        return self.ports["smtp"]

    def mbox(self, user: str) -> Path:
        return self.home / "data" / "spool" / "mail" / user

    def messages(self, user: str) -> list[bytes]:
        return mbox_messages(self.mbox(user))

    def wait_for_messages(self, user: str, count: int, timeout: float = 30.0) -> list[bytes]:
        wait_until(
            lambda: len(self.messages(user)) >= count, timeout, f"{count} messages for {user}"
        )
        return self.messages(user)

    @property
    def queue_dir(self) -> Path:
        return self.home / "data" / "queue"

    def cli(
        self, *args: str, input: str | bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        env = dict(os.environ, POSTHOUSE_CONFIG=str(self.config_path))
        data = input.encode() if isinstance(input, str) else input
        return subprocess.run(
            [sys.executable, "-m", "posthouse", *args],
            input=data,
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.release()

    def release(self) -> None:
        if self.process.stdout:
            self.process.stdout.close()
        if self.log:
            self.log.close()


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def write_config(
    home: Path,
    ca: trustme.CA,
    extra: str = "",
    workers: int = 1,
    *,
    hostname: str = "mail.example.test",
    mail: dict[str, object] | None = None,
    queue: dict[str, object] | None = None,
    smtp: dict[str, object] | None = None,
) -> Path:
    # A common name as well as the subjectAltNames: clients that check the name the old
    # way (fetchmail, offlineimap) verify the server against the test CA (ca.pem) like any.
    cert = ca.issue_cert("localhost", "127.0.0.1", "mail.example.test", common_name="localhost")
    ca.cert_pem.write_to_path(str(home / "ca.pem"))
    cert_file = home / "cert.pem"
    key_file = home / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    settings: dict[str, object] = {
        "local_domains": ["example.test"],
        "host_aliases": ["mx.example.test"],
        "trusted_networks": [],
        "lock_timeout_seconds": 2.0,
    }
    settings.update(mail or {})
    mail_lines = "\n".join(f"{key} = {toml_value(value)}" for key, value in settings.items())
    queue_settings: dict[str, object] = {"retry_seconds": 0.5, **(queue or {})}
    queue_lines = "\n".join(f"{k} = {toml_value(v)}" for k, v in queue_settings.items())
    smtp_settings: dict[str, object] = {
        "max_message_size": 20000000,
        "auth_failure_delay_seconds": 0.2,
        **(smtp or {}),
    }
    smtp_lines = "\n".join(f"{k} = {toml_value(v)}" for k, v in smtp_settings.items())
    config = home / "posthouse.toml"
    config.write_text(
        f"""
[server]
hostname = "{hostname}"
data_dir = "{home / "data"}"
run_as = ""
workers = {workers}
log_level = "info"
shutdown_grace_seconds = 10.0

[mail]
{mail_lines}

[queue]
{queue_lines}

[smtp]
{smtp_lines}

[tls]
cert_file = "{cert_file}"
key_file = "{key_file}"

[[listener]]
protocol = "smtp"
port = 0

[[listener]]
protocol = "submission"
port = 0

[[listener]]
protocol = "smtps"
port = 0

[[listener]]
protocol = "pop3"
port = 0

[[listener]]
protocol = "pop3s"
port = 0

[[listener]]
protocol = "lmtp"
path = "{home / "lmtp.sock"}"
{extra}
""",
        encoding="utf-8",
    )
    return config


def start_server(config: Path, home: Path, ca: trustme.CA) -> Server:
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
    for line in process.stdout:
        output.append(line)
        match = re.match(r"posthouse: listening (\w+) on 127\.0\.0\.1:(\d+)", line)
        if match:
            ports[match.group(1)] = int(match.group(2))
        if len(ports) == TCP_LISTENERS:
            break
    if len(ports) < TCP_LISTENERS:
        process.wait(timeout=10)
        process.stdout.close()
        log.close()
        logged = (home / "server.log").read_text()
        raise AssertionError(f"server did not start: {''.join(output)}\n{logged}")
    return Server(home, config, process, ports, ca, home / "lmtp.sock", output, log)


def add_users(home: Path) -> None:
    with UserDatabase(home / "data" / "etc" / "users.db") as users:
        for name in USERS:
            if users.get(name) is None:
                users.add(name, PASSWORD)


# Programs from the aliases file and gateway transports run as the default user, who may not
# read an interpreter installed under /root: Debian's own is readable by everyone.
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


@pytest.fixture
def safe_dir() -> Iterator[Path]:
    """A directory whose whole chain passes the :include: safety rules (no world-writable
    /tmp in it), with an ``out`` subdirectory any account may write (the default user the
    aliases file's programs and files run as, when the daemon runs as root)."""
    parent = Path("/srv") if os.geteuid() == 0 else Path.home()
    path = Path(tempfile.mkdtemp(prefix="posthouse-e2e-", dir=parent))
    path.chmod(0o755)
    (path / "out").mkdir()
    (path / "out").chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_factory(tmp_path: Path, ca: trustme.CA) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def factory(
        extra: str = "",
        workers: int = 1,
        home: Path | None = None,
        hostname: str = "mail.example.test",
        mail: dict[str, object] | None = None,
        queue: dict[str, object] | None = None,
        smtp: dict[str, object] | None = None,
    ) -> Server:
        root = home or tmp_path / f"srv{len(started)}"
        root.mkdir(exist_ok=True)
        config = write_config(
            root, ca, extra, workers, hostname=hostname, mail=mail, queue=queue, smtp=smtp
        )
        (root / "data" / "etc").mkdir(parents=True, exist_ok=True)
        add_users(root)
        server = start_server(config, root, ca)
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=30)
        server.release()


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory()
