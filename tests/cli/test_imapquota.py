"""``posthouse imapquota [-f] [ROOT...]``: the report in Cyrus quota's columns, and ``-f``
fixing usage that no longer matches the mailboxes (chapter 12.5.5, 12.5.8)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posthouse.app import mail_store_for
from posthouse.config.load import load_settings
from posthouse.store.backend import NewMessage

WHEN = datetime(2026, 3, 1, tzinfo=UTC)


def write_config(base: Path) -> Path:
    path = base / "posthouse.toml"
    path.write_text(f'[server]\ndata_dir = "{base / "data"}"\nrun_as = ""\n', encoding="utf-8")
    return path


def fill(config: Path) -> None:
    """Hansen's roots of figure 12-5, 3 KB in INBOX and 2 KB in personnel.issues."""

    async def main() -> None:
        store = mail_store_for(load_settings(config))
        try:
            await store.create_user("hansen")
            hansen = store.session("hansen")
            for folder in ("personnel", "personnel.issues", "saved"):
                await hansen.create(f"INBOX.{folder}")
            await store.backend.set_quota("user.hansen", 100)
            await store.backend.set_quota("user.hansen.personnel", 50)
            await store.backend.set_quota("user.hansen.personnel.issues", 10)
            await hansen.append("INBOX", [NewMessage(b"S: a\r\n\r\n" + b"x" * 3064, WHEN)])
            await hansen.append("INBOX.personnel.issues", [NewMessage(b"x" * 2048, WHEN)])
        finally:
            await store.backend.close()

    asyncio.run(main())


def tool(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POSTHOUSE_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "posthouse", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def rows(output: str) -> list[list[str]]:
    lines = output.splitlines()
    at = next(
        i for i, line in enumerate(lines) if line.split() == ["Quota", "%", "Used", "Used", "Root"]
    )
    return [line.split() for line in lines[at + 1 :]]


def test_report_lists_each_root_with_limit_percent_and_usage(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    fill(config)
    done = tool(config, "imapquota", "--config", str(config))  # --config after the tool
    assert done.returncode == 0, done.stderr
    assert rows(done.stdout) == [
        ["100", "3", "3", "user.hansen"],
        ["50", "0", "0", "user.hansen.personnel"],
        ["10", "20", "2", "user.hansen.personnel.issues"],
    ]
    only = tool(config, "--config", str(config), "imapquota", "user.hansen.personnel")
    assert [row[-1] for row in rows(only.stdout)] == [
        "user.hansen.personnel",
        "user.hansen.personnel.issues",
    ]


def set_kept_bytes(tmp_path: Path, name: str, size: int) -> None:
    """Tamper with the bytes mailbox ``name``'s index keeps (what quota usage sums)."""
    with sqlite3.connect(tmp_path / "data" / "imap" / "mailboxes.db") as db:
        (mailbox_id,) = db.execute("SELECT id FROM mailboxes WHERE name = ?", (name,)).fetchone()
    (index,) = (tmp_path / "data").rglob(f"{mailbox_id}/index.db")
    with sqlite3.connect(index) as db:
        db.execute("UPDATE state SET bytes = ?", (size,))


def test_f_fixes_usage_that_was_tampered_with(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    fill(config)
    set_kept_bytes(tmp_path, "user.hansen", 7 * 1024)
    set_kept_bytes(tmp_path, "user.hansen.personnel.issues", 0)
    before = tool(config, "imapquota", "--config", str(config))
    assert rows(before.stdout)[0] == ["100", "7", "7", "user.hansen"]
    fixed = tool(config, "imapquota", "-f", "--config", str(config))
    assert fixed.returncode == 0, fixed.stderr
    assert "user.hansen: usage was 7, now 3" in fixed.stdout
    assert "user.hansen.personnel.issues: usage was 0, now 2" in fixed.stdout
    assert "user.hansen.personnel:" not in fixed.stdout  # it was right
    assert rows(fixed.stdout)[0] == ["100", "3", "3", "user.hansen"]
    again = tool(config, "imapquota", "-f", "--config", str(config))
    assert "usage was" not in again.stdout


def test_help_and_bad_options(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    shown = tool(config, "imapquota", "--help")
    assert shown.returncode == 0 and "-f" in shown.stdout and "ROOT" in shown.stdout
    assert tool(config, "imapquota", "--bogus", "--config", str(config)).returncode == 2
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n", encoding="utf-8")
    failed = tool(broken, "imapquota", "--config", str(broken))
    assert failed.returncode == 78 and "broken.toml" in failed.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the switch is made only by root")
def test_run_as_root_it_acts_as_the_data_directorys_owner() -> None:
    base = Path(tempfile.mkdtemp(prefix="posthouse-quota-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        nobody = pwd.getpwnam("nobody")
        (base / "data").mkdir()
        os.chown(base / "data", nobody.pw_uid, nobody.pw_gid)
        config = write_config(base)
        done = tool(config, "imapquota", "-f", "--config", str(config))
        assert done.returncode == 0, done.stderr
        created = [base / "data", *(base / "data").rglob("*")]
        assert {path.lstat().st_uid for path in created} == {nobody.pw_uid}
        assert len(created) > 1, "the store was opened"
    finally:
        shutil.rmtree(base)
