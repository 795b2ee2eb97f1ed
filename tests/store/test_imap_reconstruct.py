"""``reconstruct`` (chapter 12.5.5): a mailbox whose index is deleted, truncated or
overwritten with garbage is rebuilt from its message files, with the flags, dates and seen
state kept where the old index survives; files added by hand appear, entries without a
file are dropped; HIGHESTMODSEQ never goes backward; another process that has the mailbox
open sees the rebuilt mailbox."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from posthouse.store.backend import FlagChange, FlagMode, Viewer
from posthouse.store.errors import MailboxNotFound, NotPermitted
from posthouse.store.fs.backend import FsBackend
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import message, open_store, run

COUNT = 300
FLAGGED = {uid for uid in range(1, COUNT + 1) if uid % 3 == 0}


def backend_of(store: MailStore) -> FsBackend:
    assert isinstance(store.backend, FsBackend)
    return store.backend


def fill(root: Path) -> tuple[Path, int, int]:
    """user.fred with COUNT messages, every third flagged \\Flagged and $Work, UID COUNT
    expunged; returns the folder, UIDVALIDITY and HIGHESTMODSEQ (the store closed, so the
    index is checkpointed into index.db)."""
    store = open_store(root)

    async def main() -> tuple[Path, int, int]:
        await store.create_user("fred")
        fred = store.session("fred")
        for start in range(0, COUNT, 100):
            await fred.append("INBOX", [message(n) for n in range(start, start + 100)])
        opened = await fred.select("INBOX")
        change = FlagChange(FlagMode.ADD, frozenset({"\\Flagged", "$Work", "\\Deleted"}))
        await fred.store_flags(opened, UidSet.of([COUNT]), change)
        await fred.expunge(opened)
        change = FlagChange(FlagMode.ADD, frozenset({"\\Flagged", "$Work"}))
        await fred.store_flags(opened, UidSet.of(FLAGGED - {COUNT}), change)
        record = await store.backend.get_mailbox("user.fred")
        assert record is not None
        status = await store.backend.status(record.id, viewer=Viewer(""))
        folder = backend_of(store).layout.mailbox_dir(record.partition, record.id)
        await store.backend.close()
        return folder, status.uidvalidity, status.highestmodseq

    return run(main())


def state(root: Path) -> tuple[dict[int, frozenset[str]], int, int]:
    """UID -> flags, UIDVALIDITY and HIGHESTMODSEQ of user.fred, read in a fresh store."""
    store = open_store(root)

    async def main() -> tuple[dict[int, frozenset[str]], int, int]:
        fred = store.session("fred")
        opened = await fred.select("INBOX")
        metas = await fred.fetch(opened, UidSet.of(opened.snapshot.uids))
        status = opened.snapshot.status
        for meta in metas:  # every message listed can be read
            assert (await fred.read_message(opened, meta.uid)).startswith(b"From: bob")
        await store.backend.close()
        return {m.uid: m.flags for m in metas}, status.uidvalidity, status.highestmodseq

    return run(main())


def rebuild(root: Path, name: str = "user.fred", recursive: bool = False) -> list:  # type: ignore[type-arg]
    store = open_store(root)
    try:
        return run(store.reconstruct(name, recursive=recursive))
    finally:
        run(store.backend.close())


def test_a_healthy_mailbox_is_left_as_it_is(tmp_path: Path) -> None:
    _, uidvalidity, modseq = fill(tmp_path)
    before = state(tmp_path)
    [report] = rebuild(tmp_path)
    assert not report.changed and report.kept == COUNT - 1 and not report.appeared
    assert state(tmp_path) == before == (before[0], uidvalidity, modseq)


def test_a_deleted_index_is_rebuilt_from_the_files_with_a_new_uidvalidity(
    tmp_path: Path,
) -> None:
    folder, uidvalidity, modseq = fill(tmp_path)
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (folder / name).unlink(missing_ok=True)
    [report] = rebuild(tmp_path)
    assert report.messages == COUNT - 1 and report.kept == 0
    assert report.uidvalidity is not None  # UIDNEXT was lost: UIDs could come back
    flags, new_uidvalidity, new_modseq = state(tmp_path)
    assert sorted(flags) == list(range(1, COUNT))
    assert new_uidvalidity == report.uidvalidity != uidvalidity
    assert new_modseq > modseq  # never backward
    store = open_store(tmp_path)  # the mailboxes list agrees (STATUS after a restart)
    record = run(store.backend.get_mailbox("user.fred"))
    assert record is not None and record.uidvalidity == new_uidvalidity


def test_garbage_over_the_index_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    folder, uidvalidity, modseq = fill(tmp_path)
    size = (folder / "index.db").stat().st_size
    (folder / "index.db").write_bytes(os.urandom(size))
    [report] = rebuild(tmp_path)
    assert report.damaged_index and (folder / report.damaged_index).exists()
    flags, new_uidvalidity, new_modseq = state(tmp_path)
    assert sorted(flags) == list(range(1, COUNT))
    assert new_uidvalidity != uidvalidity and new_modseq > modseq


def truncate_last_page(path: Path) -> None:
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size - 4096)


def garbage_over_the_second_last_page(path: Path) -> None:
    with open(path, "r+b") as file:
        file.seek(path.stat().st_size - 2 * 4096)
        file.write(os.urandom(4096))


@pytest.mark.parametrize("damage", [truncate_last_page, garbage_over_the_second_last_page])
def test_a_partly_damaged_index_keeps_the_flags_that_survived(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    folder, uidvalidity, modseq = fill(tmp_path)
    damage(folder / "index.db")  # the last pages hold message rows (see dbstat)
    [report] = rebuild(tmp_path)
    assert report.damaged_index
    flags, new_uidvalidity, new_modseq = state(tmp_path)
    assert sorted(flags) == list(range(1, COUNT))
    assert new_modseq > modseq
    assert 0 < report.kept < COUNT - 1  # some rows survived, some did not
    appeared = set(report.appeared)
    for uid, names in flags.items():
        if uid in appeared:
            assert not names  # what did not survive comes back without flags
        else:  # what survived keeps its flags exactly
            assert ("\\Flagged" in names) == (uid in FLAGGED) and ("$Work" in names) == (
                uid in FLAGGED
            )
    assert report.uidvalidity is None and new_uidvalidity == uidvalidity  # state survived


def test_files_added_by_hand_appear_and_entries_without_files_are_dropped(
    tmp_path: Path,
) -> None:
    folder, uidvalidity, modseq = fill(tmp_path)
    shutil.copy(folder / "1.", folder / "500.")  # a new UID: kept
    shutil.copy(folder / "2.", folder / f"{COUNT}.")  # an expunged UID: renumbered
    (folder / "3.").unlink()
    (folder / ".tmp-999999999-dead").write_bytes(b"half a message")
    (folder / f".tmp-{os.getpid()}-alive").write_bytes(b"being written")
    (folder / "notes.txt").write_text("the admin's")
    [report] = rebuild(tmp_path)
    assert report.appeared == (500, 501) and report.renumbered == ((COUNT, 501),)
    assert report.dropped == (3,)
    assert report.temporary_removed == (".tmp-999999999-dead",)
    assert report.strays == ("notes.txt",)
    assert (folder / f".tmp-{os.getpid()}-alive").exists() and (folder / "notes.txt").exists()
    flags, new_uidvalidity, new_modseq = state(tmp_path)
    assert new_uidvalidity == uidvalidity and new_modseq == modseq + 1
    assert 3 not in flags and 500 in flags and 501 in flags and COUNT not in flags
    assert flags[6] >= {"\\Flagged", "$Work"} and "\\Flagged" not in flags[500]

    store = open_store(tmp_path)  # a QRESYNC client learns what vanished and what is new
    record = run(store.backend.get_mailbox("user.fred"))
    assert record is not None
    changes = run(store.backend.changes_since(record.id, modseq, viewer=Viewer("fred")))
    assert list(changes.vanished) == [3]
    assert sorted(m.uid for m in changes.changed) == [500, 501]
    appended = run(store.session("fred").append("INBOX", [message(0)]))
    assert appended.uids == (502,)


def test_another_process_with_the_mailbox_open_sees_the_rebuilt_mailbox(
    tmp_path: Path,
) -> None:
    folder, _, _ = fill(tmp_path)
    server = open_store(tmp_path)  # stands for a server process: its own connections
    backend_of(server).metadata.min_messages = 1  # and its in-process copy of the flags
    fred = server.session("fred")
    opened = run(fred.select("INBOX"))
    assert len(run(fred.fetch(opened, UidSet.of(opened.snapshot.uids)))) == COUNT - 1
    (folder / "3.").unlink()
    shutil.copy(folder / "1.", folder / "700.")
    rebuild(tmp_path)
    snapshot = run(fred.refresh(opened))
    assert 3 not in snapshot.uids and 700 in snapshot.uids
    metas = run(fred.fetch(opened, UidSet.of(snapshot.uids)))
    assert len(metas) == COUNT - 1 and "\\Flagged" in {
        f for m in metas if m.uid == 6 for f in m.flags
    }

    (folder / "10.").unlink()  # gone with its row: the new index cannot even tell
    for name in ("index.db-wal", "index.db-shm"):
        (folder / name).unlink(missing_ok=True)
    (folder / "index.db").write_bytes(b"garbage" * 1000)  # now replaced under the server
    rebuild(tmp_path)
    snapshot = run(fred.refresh(opened))
    metas = run(fred.fetch(opened, UidSet.of(range(1, 1000))))
    assert [m.uid for m in metas] == sorted(snapshot.uids)
    assert 700 in snapshot.uids and 10 not in snapshot.uids and len(metas) == COUNT - 2
    run(server.backend.close())


def test_recursive_and_who_may(tmp_path: Path) -> None:
    fill(tmp_path)
    reports = rebuild(tmp_path, "user.fred", recursive=True)
    assert [r.name for r in reports] == [
        "user.fred",
        "user.fred.Drafts",
        "user.fred.Junk",
        "user.fred.Sent",
        "user.fred.Trash",
    ]
    assert [r.name for r in rebuild(tmp_path, "user.fred.Sent")] == ["user.fred.Sent"]
    with pytest.raises(MailboxNotFound):
        rebuild(tmp_path, "user.nobody")
    store = open_store(tmp_path)
    with pytest.raises(NotPermitted):
        run(store.session("fred").reconstruct("INBOX"))
    assert [r.name for r in run(store.session("cyrus").reconstruct("user.fred"))] == ["user.fred"]
