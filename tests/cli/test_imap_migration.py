"""``mailusradm`` making a user IMAP type (12.5.2) and ``mailcv -I`` (12.5.3), without a server."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from posthouse.app import mail_store_for
from posthouse.auth.users import UserDatabase
from posthouse.cli.mailcv import run_mailcv
from posthouse.config.load import load_settings
from posthouse.store.mbox.entry_state import from_line_date, status_flags
from posthouse.store.mbox.locking import LockMethod, locked_mailbox


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posthouse.toml"
    path.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\nrun_as = ""\n'
        '[mail]\nlocking = "both"\nlock_timeout_seconds = 1.0\n',
        encoding="utf-8",
    )
    settings = load_settings(path)
    settings.paths.users_db.parent.mkdir(parents=True, exist_ok=True)
    with UserDatabase(settings.paths.users_db) as users:
        users.add("jake", "pw-of-jake")
    return path


def tool(config: Path, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, POSTHOUSE_CONFIG=str(config))
    return subprocess.run(
        [sys.executable, "-m", "posthouse", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def mailboxes(config: Path) -> list[str]:
    store = mail_store_for(load_settings(config))

    async def names() -> list[str]:
        try:
            return [item.name for item in await store.session("jake").list_mailboxes("", "*")]
        finally:
            await store.backend.close()

    return asyncio.run(names())


def test_becoming_imap_type_creates_the_inbox_and_leaving_it_keeps_the_mailboxes(
    config: Path,
) -> None:
    assert mailboxes(config) == []
    done = tool(config, "mailusradm", "set", "jake", "imap")
    assert done.returncode == 0, done.stderr
    assert "IMAP INBOX created" in done.stdout
    assert sorted(mailboxes(config)) == [
        "INBOX",
        "INBOX.Drafts",
        "INBOX.Junk",
        "INBOX.Sent",
        "INBOX.Trash",
    ]
    done = tool(config, "mailusradm", "set", "jake", "pop")
    assert done.returncode == 0, done.stderr
    assert "IMAP mailboxes are kept" in done.stdout
    assert len(mailboxes(config)) == 5
    done = tool(config, "mailusradm", "set", "jake", "imap", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "created" not in done.stdout  # it was there


def test_mailcv_imap_needs_the_users_inbox_and_keeps_the_folder_then(
    config: Path, tmp_path: Path
) -> None:
    spool = tmp_path / "jake"
    spool.write_bytes(b"From a@b Mon Mar  2 09:15:00 2026\nSubject: x\n\nbody\n\n")
    done = tool(config, "mailcv", "-I", "-f", "jake", cwd=tmp_path)
    assert done.returncode == 67, done.stderr
    assert "no IMAP INBOX" in done.stderr
    assert spool.read_bytes().startswith(b"From a@b")
    assert tool(config, "mailusradm", "set", "jake", "imap").returncode == 0
    with locked_mailbox(spool, LockMethod.BOTH, timeout=5):  # a delivery holds the folder
        done = tool(config, "mailcv", "-I", "-f", "jake", cwd=tmp_path)
    assert done.returncode == 74, done.stderr
    assert spool.read_bytes().startswith(b"From a@b")  # kept whole
    done = tool(config, "mailcv", "-I", "-f", "jake", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 messages appended to jake's INBOX" in done.stdout
    assert spool.read_bytes() == b""
    assert tool(config, "mailcv", "-I", "-f", "nobody", cwd=tmp_path).returncode == 66
    assert tool(config, "mailcv", "-I", "-Q", "-f", "jake", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"From a@b Mon Mar  2 09:15:00 2026\n", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
        (
            b"From a@b Mon Mar 2 09:15 2026 -0500\n",
            datetime(2026, 3, 2, 9, 15, tzinfo=timezone(timedelta(hours=-5))),
        ),
        (
            b"From a@b Mon Mar  2 09:15:07 +0100 2026\n",
            datetime(2026, 3, 2, 9, 15, 7).replace(tzinfo=timezone(timedelta(hours=1))),
        ),
        (b"From a@b yesterday\n", None),
        (b"From a@b Mon Foo  2 09:15:00 2026\n", None),
        (b"From a@b Mon Feb 31 09:15:00 2026\n", None),
    ],
)
def test_from_line_dates(line: bytes, expected: datetime | None) -> None:
    assert from_line_date(line) == expected


def test_status_fields_become_flags_and_leave_the_message() -> None:
    state = status_flags(
        b"Subject: s\r\nStatus: RO\r\nX-Status: ADFT\r\nTo: x\r\n\r\nStatus: R\r\n"
    )
    assert state.flags == {"\\Seen", "\\Answered", "\\Deleted", "\\Flagged", "\\Draft"}
    assert state.old
    assert state.content == b"Subject: s\r\nTo: x\r\n\r\nStatus: R\r\n"  # the body is not touched
    fresh = status_flags(b"Subject: s\r\n\r\nX-Status: F\r\n")
    assert (fresh.flags, fresh.old) == (frozenset(), False)
    assert status_flags(b"Status: O\r\n\r\n").flags == frozenset()
    assert status_flags(b"Status: O\r\n\r\n").old


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_mailcv_imap_shows_a_progress_bar_on_a_terminal(config: Path, tmp_path: Path) -> None:
    assert tool(config, "mailusradm", "set", "jake", "imap").returncode == 0
    spool = tmp_path / "jake"
    entry = b"From a@b Mon Mar  2 09:15:00 2026\nSubject: x\n\nbody\n\n"
    spool.write_bytes(entry * 450)  # three batches
    args = argparse.Namespace(input=str(spool), imap=True, mh_pop=False, newname=None)
    terminal, out = Terminal(), io.StringIO()
    assert run_mailcv(load_settings(config), args, stdout=out, stderr=terminal) == 0
    frames = terminal.getvalue().split("\r")[1:]
    assert [frame.split("] ")[1].strip() for frame in frames] == [
        "200/450 messages",
        "400/450 messages",
        "450/450 messages",
    ]
    assert frames[-1].startswith("[" + "#" * 40 + "]")
    assert "450 messages appended" in out.getvalue()


def test_mailusradm_sets_the_chapters_privileges_on_the_new_mailboxes(config: Path) -> None:
    done = tool(config, "mailusradm", "set", "jake", "imap", "--rights", "lrs")
    assert done.returncode == 0, done.stderr
    store = mail_store_for(load_settings(config))

    async def acls() -> list[str]:
        try:
            records = await store.backend.list_mailboxes("user.jake")
            return [r.acl for r in records]
        finally:
            await store.backend.close()

    assert set(asyncio.run(acls())) == {"jake\tlrs\t"}
    with UserDatabase(load_settings(config).paths.users_db) as users:
        users.add("kim", "pw-of-kim")
    done = tool(config, "mailusradm", "set", "kim", "imap", "--rights", "lrz")
    assert done.returncode == 64, done.stderr
    assert "unknown right 'z'" in done.stderr
    listed = tool(config, "mailusradm", "list", "kim")
    assert "unix" in listed.stdout  # the type did not change without the INBOX
