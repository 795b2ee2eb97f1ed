"""Who programs and files run as, in a daemon started as root that drops to ``server.run_as``.

The daemon serves as ``mail``; programs and files from the aliases file run as the default
user (``nobody``), those from a user's ``.forward`` as that user, through the root helper
(:mod:`posthouse.mta.agents.local_runner`).  Each program prints the uid it ran as.
"""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import mbox_messages, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: CI runs as root")

NOBODY = pwd.getpwnam("nobody").pw_uid
MAIL = pwd.getpwnam("mail").pw_uid


@dataclass
class Daemon:
    base: Path
    out: Path
    port: int
    process: subprocess.Popen[str]

    def send(self, recipient: str, subject: str) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.sendmail("a@remote.test", [recipient], f"Subject: {subject}\r\n\r\nx\r\n")

    def log(self) -> str:
        return (self.base / "server.log").read_text()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        assert self.process.stdout is not None
        self.process.stdout.close()


def start(base: Path, aliases: str) -> Daemon:
    out = base / "out"
    out.mkdir()
    out.chmod(0o777)  # every identity may write its report here
    (base / "data" / "etc").mkdir(parents=True)
    (base / "data" / "etc" / "aliases").write_text(aliases.replace("OUT", str(out)))
    config = base / "posthouse.toml"
    config.write_text(
        f'[server]\nhostname = "mail.example.test"\ndata_dir = "{base / "data"}"\n'
        'run_as = "mail"\n\n[mail]\nlocal_domains = ["example.test"]\n'
        'trusted_networks = ["127.0.0.0/8"]\n\n[users]\nsystem_accounts = true\n\n'
        '[queue]\nretry_seconds = 0.5\n\n[[listener]]\nprotocol = "smtp"\nport = 0\n'
    )
    log = open(base / "server.log", "w")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen(
        [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    log.close()
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("posthouse: listening smtp on 127.0.0.1:"):
            return Daemon(base, out, int(line.rsplit(":", 1)[1]), process)
    process.wait(timeout=30)
    raise AssertionError("the server did not start: " + (base / "server.log").read_text())


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="posthouse-runas-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(base: Path) -> Iterator[Daemon]:
    running = start(
        base,
        'prog: "|/usr/bin/id -u > OUT/prog-uid"\ncopy: OUT/copy\nboth: prog, copy\n',
    )
    yield running
    running.stop()


def read_when_there(path: Path) -> str:
    wait_until(lambda: path.exists() and path.stat().st_size > 0, what=f"{path}")
    return path.read_text().strip()


def test_aliases_file_programs_and_files_run_as_the_default_user(daemon: Daemon) -> None:
    status = Path(f"/proc/{daemon.process.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(MAIL)] * 4  # the daemon itself is the mail account
    daemon.send("both@example.test", "to the program and the file")
    assert read_when_there(daemon.out / "prog-uid") == str(NOBODY)
    copy = daemon.out / "copy"
    assert "to the program and the file" in read_when_there(copy)
    assert copy.stat().st_uid == NOBODY


@dataclass
class SystemUser:
    name: str
    uid: int
    home: Path


@pytest.fixture
def system_user() -> Iterator[SystemUser]:
    if shutil.which("useradd") is None:
        pytest.fail("useradd (Debian's passwd package) is needed for this test")
    name = "phfwd" + uuid.uuid4().hex[:6]
    home = Path("/home") / name
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh", name],
        check=True,
    )
    try:
        yield SystemUser(name, pwd.getpwnam(name).pw_uid, home)
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def write_forward(user: SystemUser, text: str, mode: int = 0o644) -> Path:
    forward = user.home / ".forward"
    forward.write_text(text)
    os.chown(forward, user.uid, user.uid)
    forward.chmod(mode)
    return forward


def test_a_forward_program_runs_as_its_owner(base: Path, system_user: SystemUser) -> None:
    daemon = start(base, "")
    try:
        write_forward(system_user, f'"|/usr/bin/id -u > {base}/out/fwd-uid"\n')
        daemon.send(f"{system_user.name}@example.test", "forwarded")
        assert read_when_there(base / "out" / "fwd-uid") == str(system_user.uid)
    finally:
        daemon.stop()


def test_an_unsafe_forward_is_refused_and_the_mail_kept(
    base: Path, system_user: SystemUser
) -> None:
    daemon = start(base, "")
    try:
        forward = write_forward(system_user, f'"|/usr/bin/id -u > {base}/out/bad"\n', 0o666)
        daemon.send(f"{system_user.name}@example.test", "kept in the mailbox")
        mailbox = base / "data" / "spool" / "mail" / system_user.name
        wait_until(lambda: mailbox.exists() and len(mbox_messages(mailbox)) == 1, what="mail")
        assert b"kept in the mailbox" in mbox_messages(mailbox)[0]
        assert not (base / "out" / "bad").exists()
        refused = f"forward file {forward} refused: world writable file"
        wait_until(lambda: refused in daemon.log(), what="the log thread's line")
    finally:
        daemon.stop()
