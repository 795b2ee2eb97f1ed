"""A partition outside the data directory, in a daemon started as root that drops to
``server.run_as``: start-up makes it (or takes it as it is) and hands it to the account with
the data directory, so mailboxes can be created there; one that cannot be made stops
start-up with the option's file and line."""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD
from tests.e2e.imap.conftest import create_inboxes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: CI runs as root")

MAIL = pwd.getpwnam("mail").pw_uid


@pytest.fixture
def base() -> Iterator[Path]:
    # Not under pytest's tmp_path: its directories are private to root.
    path = Path(tempfile.mkdtemp(prefix="posthouse-partowner-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_config(base: Path, archive: Path) -> Path:
    config = base / "posthouse.toml"
    config.write_text(
        f'[server]\ndata_dir = "{base / "data"}"\nrun_as = "mail"\nworkers = 1\n\n'
        '[mail]\nlocal_domains = ["example.test"]\n\n'
        f'[imap]\nadmins = "carol"\npartition-archive = "{archive}"\n\n'
        '[[listener]]\nprotocol = "imap"\nport = 0\n'
    )
    return config


def add_users(base: Path) -> None:
    from posthouse.auth.users import UserDatabase

    with UserDatabase(base / "data" / "etc" / "users.db") as users:
        for name in ("bob", "carol"):
            users.add(name, PASSWORD)


def serve(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_root_owned_partition_outside_the_data_directory_is_handed_to_the_account(
    base: Path,
) -> None:
    archive = base / "archive"  # exists, root's, as an administrator makes a mount point
    archive.mkdir(mode=0o755)
    fresh = base / "disks" / "new"  # does not exist yet
    config = write_config(base, archive)
    text = config.read_text()
    config.write_text(
        text.replace("partition-archive", f'partition-fresh = "{fresh}"\npartition-archive', 1)
    )
    add_users(base)
    create_inboxes(config, ("bob", "carol"))
    process = serve(config)
    try:
        assert process.stdout is not None
        port = 0
        for line in process.stdout:
            if line.startswith("posthouse: listening imap on 127.0.0.1:"):
                port = int(line.rsplit(":", 1)[1])
                break
        assert port, process.stderr.read() if process.stderr else "no imap listener"
        admin, bob = imaplib.IMAP4("127.0.0.1", port, timeout=30), None
        try:
            admin.login("carol", PASSWORD)
            for name, partition in (("user.bob.old", "archive"), ("user.bob.new", "fresh")):
                typ, data = admin._simple_command("CREATE", name, partition)
                assert typ == "OK", data
            bob = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            bob.login("bob", PASSWORD)
            assert bob.append("INBOX.old", "", None, b"Subject: kept\r\n\r\nx\r\n")[0] == "OK"
        finally:
            for client in (admin, bob):
                if client is not None:
                    client.logout()
        assert archive.stat().st_uid == MAIL and fresh.stat().st_uid == MAIL
        assert [p for p in archive.rglob("1.")] and all(
            p.stat().st_uid == MAIL for p in archive.rglob("*")
        )
    finally:
        process.terminate()
        process.wait(timeout=60)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_a_partition_that_cannot_be_made_stops_start_up_naming_the_line(base: Path) -> None:
    blocker = base / "a-file"
    blocker.write_text("not a directory\n")
    config = write_config(base, blocker / "archive")
    add_users(base)
    process = serve(config)
    out, err = process.communicate(timeout=120)
    assert process.returncode != 0, out
    line = config.read_text().splitlines().index(f'partition-archive = "{blocker / "archive"}"') + 1
    assert f"{config}:{line}:" in err, err
    assert str(blocker / "archive") in err, err
    assert "listening" not in out
