"""``posthouse mailcv -Q -f INPUT [NEWNAME]``: an MH POP3 folder into a user's mailbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from posthouse.config.load import load_settings
from posthouse.store.mbox.locking import LockMethod, locked_mailbox
from tests.e2e.conftest import mbox_messages


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posthouse.toml"
    path.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\nrun_as = ""\n'
        '[mail]\nlocking = "both"\nlock_timeout_seconds = 1.0\n',
        encoding="utf-8",
    )
    return path


def mh_folder(parent: Path, name: str) -> Path:
    """An MH POP3 folder as the chapter's /usr/spool/mail/POP/jake: numbered messages
    (10 after 9, not after 1), MH's bookkeeping file beside them."""
    folder = parent / name
    folder.mkdir(parents=True)
    for number in (1, 2, 9, 10):
        (folder / str(number)).write_bytes(
            b"Return-Path: <sender%d@example.org>\n" % number
            + b"Subject: message %d\n\nbody %d\nFrom the start of a line\n" % (number, number)
        )
        os.utime(folder / str(number), (1_000_000_000 + number, 1_000_000_000 + number))
    (folder / ".mh_sequences").write_text("unseen: 1-10\n")
    return folder


def mailcv(config: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, POSTHOUSE_CONFIG=str(config))
    return subprocess.run(
        [sys.executable, "-m", "posthouse", "mailcv", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_the_chapters_steps_convert_a_folder_into_the_users_mailbox(
    config: Path, tmp_path: Path
) -> None:
    pop = tmp_path / "spool" / "POP"
    mh_folder(pop, "jake")
    # "cd /usr/spool/mail/POP; mailcv -Q -f jake"
    done = mailcv(config, "-Q", "-f", "jake", cwd=pop)
    assert done.returncode == 0, done.stderr
    mailbox = load_settings(config).paths.spool_dir / "jake"
    assert f"4 messages appended to {mailbox}" in done.stdout
    messages = mbox_messages(mailbox)
    assert [m.split(b"\n")[1] for m in messages] == [
        b"Subject: message 1",
        b"Subject: message 2",
        b"Subject: message 9",
        b"Subject: message 10",
    ]
    assert b">From the start of a line" in messages[0]  # mboxrd quoting, as delivery writes
    data = mailbox.read_bytes()
    assert data.startswith(b"From sender1@example.org ")
    # The folder is left as it was.
    assert sorted(p.name for p in (pop / "jake").iterdir()) == [
        ".mh_sequences",
        "1",
        "10",
        "2",
        "9",
    ]


def test_a_new_name_appends_to_that_users_mailbox(config: Path, tmp_path: Path) -> None:
    pop = tmp_path / "POP"
    mh_folder(pop, "charlie")
    mailbox = load_settings(config).paths.spool_dir / "chuck"
    mailbox.parent.mkdir(parents=True)
    mailbox.write_bytes(b"From old@example.org Thu Jan  1 00:00:00 2026\nSubject: kept\n\nold\n\n")
    done = mailcv(config, "-Q", "-f", "charlie", "chuck", cwd=pop)
    assert done.returncode == 0, done.stderr
    messages = mbox_messages(mailbox)
    assert len(messages) == 5
    assert messages[0] == b"Subject: kept\n\nold\n"


def test_a_locked_mailbox_gets_nothing_and_a_reason(config: Path, tmp_path: Path) -> None:
    pop = tmp_path / "POP"
    mh_folder(pop, "jake")
    mailbox = load_settings(config).paths.spool_dir / "jake"
    mailbox.parent.mkdir(parents=True)
    mailbox.touch()
    with locked_mailbox(mailbox, LockMethod.BOTH, timeout=5):
        done = mailcv(config, "-Q", "-f", "jake", cwd=pop)
    assert done.returncode == 74
    assert "nothing was appended" in done.stderr
    assert mailbox.read_bytes() == b""


@pytest.mark.parametrize(
    ("argv", "status", "words"),
    [
        (["-Q", "-f", "nobody"], 66, "no such MH folder"),
        (["-f", "jake"], 64, "give -Q -f INPUT"),
        (["-Q", "-f", "jake", "../escape"], 64, "cannot be a mailbox name"),
        (["-Q", "-f", "jake/1"], 64, "not an MH folder"),
    ],
)
def test_usage_errors(
    config: Path, tmp_path: Path, argv: list[str], status: int, words: str
) -> None:
    mh_folder(tmp_path, "jake")
    done = mailcv(config, *argv, cwd=tmp_path)
    assert (done.returncode, words in done.stderr) == (status, True), done.stderr


def test_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "posthouse", "mailcv", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0
    assert "-Q" in done.stdout and "NEWNAME" in done.stdout
