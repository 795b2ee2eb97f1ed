"""``posthouse mailboxes backup | check | restore`` (chapter 12.5.5): a consistent copy of
the mailboxes list while it is being written, a restore that brings the list back, and a
restore that refuses a damaged backup or one naming mailboxes whose files are gone."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from posthouse.app import mail_store_for
from posthouse.cli.main import main
from posthouse.config.load import load_settings
from posthouse.imap_layout import store_layout
from posthouse.store.fs.mailboxes_backup import check_backup


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posthouse.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    return path


def create_users(config: Path, *users: str) -> None:
    store = mail_store_for(load_settings(config))

    async def work() -> None:
        for user in users:
            await store.create_user(user)
        await store.backend.close()

    asyncio.run(work())


def names(config: Path) -> list[str]:
    store = mail_store_for(load_settings(config))

    async def work() -> list[str]:
        try:
            return [r.name for r in await store.backend.list_mailboxes()]
        finally:
            await store.backend.close()

    return asyncio.run(work())


def test_a_backup_taken_while_mailboxes_are_created_is_consistent(
    config: Path, tmp_path: Path
) -> None:
    create_users(config, "fred")
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            create_users(config, f"u{n}")
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        counts = []
        for copy in range(3):
            target = tmp_path / f"backup{copy}.db"
            assert main(["mailboxes", "backup", str(target), "--config", str(config)]) == 0
            check = check_backup(store_layout(load_settings(config)), target)
            assert not check.problems and not check.missing
            counts.append(check.mailboxes)
    finally:
        stop.set()
        thread.join()
    assert counts[0] >= 5 and counts == sorted(counts)


def test_restore_brings_the_list_back_and_keeps_the_one_it_replaced(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_users(config, "fred", "hansen")
    before = names(config)
    backup = tmp_path / "mailboxes.backup"
    assert main(["--config", str(config), "mailboxes", "backup", str(backup)]) == 0
    store = mail_store_for(load_settings(config))
    asyncio.run(store.backend.rename_mailbox("user.fred.Junk", "user.fred.Spam"))
    asyncio.run(store.backend.close())
    create_users(config, "late")  # created after the backup: reported, not listed
    assert "user.fred.Spam" in names(config)
    capsys.readouterr()
    assert main(["mailboxes", "restore", str(backup), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert names(config) == before
    assert "restored 10 mailboxes" in out and "is not in this backup" in out
    kept = list((tmp_path / "data" / "imap").glob("mailboxes.db.before-restore-*"))
    assert len(kept) == 1 and "user.late" in {
        row[0] for row in sqlite3.connect(kept[0]).execute("SELECT name FROM mailboxes")
    }


def damage_by_truncation(path: Path) -> None:
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size // 2)


def damage_a_row(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE mailboxes SET name = 'user..x' WHERE name = 'user.user1'")


def damage_by_garbage(path: Path) -> None:
    path.write_bytes(b"not a database" * 100)


@pytest.mark.parametrize("damage", [damage_by_truncation, damage_a_row, damage_by_garbage])
def test_restore_refuses_a_damaged_backup(
    config: Path,
    tmp_path: Path,
    damage,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    create_users(config, *(f"user{n}" for n in range(12)))
    backup = tmp_path / "mailboxes.backup"
    assert main(["mailboxes", "backup", str(backup), "--config", str(config)]) == 0
    damage(backup)
    listed = (tmp_path / "data" / "imap" / "mailboxes.db").read_bytes()
    capsys.readouterr()
    assert main(["mailboxes", "check", str(backup), "--config", str(config)]) == 65
    assert main(["mailboxes", "restore", str(backup), "--config", str(config)]) == 64
    assert "is damaged, nothing restored" in capsys.readouterr().err
    assert (tmp_path / "data" / "imap" / "mailboxes.db").read_bytes() == listed


def test_restore_reports_mailboxes_whose_files_are_gone(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_users(config, "fred")
    backup = tmp_path / "mailboxes.backup"
    assert main(["mailboxes", "backup", str(backup), "--config", str(config)]) == 0
    store = mail_store_for(load_settings(config))
    record = asyncio.run(store.backend.get_mailbox("user.fred.Trash"))
    asyncio.run(store.backend.close())
    assert record is not None
    layout = store_layout(load_settings(config))
    shutil.rmtree(layout.mailbox_dir(record.partition, record.id))
    capsys.readouterr()
    assert main(["mailboxes", "restore", str(backup), "--config", str(config)]) == 64
    assert "user.fred.Trash" in capsys.readouterr().err
    assert main(["mailboxes", "restore", "--force", str(backup), "--config", str(config)]) == 0
    assert "user.fred.Trash: its files are gone" in capsys.readouterr().err
