"""Partitions (chapter 12.5.9): where a new mailbox goes, who may choose, and moving a
mailbox to another partition crash-safely (a crash injected after every step, by killing a
child process and by raising, leaves the mailbox whole in exactly one place)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from posthouse.store.backend import FlagChange, FlagMode
from posthouse.store.errors import NotPermitted, UnknownPartition
from posthouse.store.fs.backend import FsBackend
from posthouse.store.fs.layout import FsLayout
from posthouse.store.fs.move import STEPS
from posthouse.store.policy import CyrusAccess
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import message, run


def layout(root: Path) -> FsLayout:
    return FsLayout(root / "imap", {"default": root / "p-default", "fast": root / "p-fast"})


def open_store(root: Path) -> MailStore:
    return MailStore(FsBackend(layout(root)), access=CyrusAccess(admins=frozenset({"cyrus"})))


def folder_partitions(root: Path, mailbox_id: str) -> list[str]:
    """The partitions holding a folder for ``mailbox_id``."""
    return [
        name
        for name, path in layout(root).partitions.items()
        if (path / mailbox_id[:2] / mailbox_id).exists()
    ]


def test_new_mailboxes_inherit_the_parent_s_partition_unless_an_admin_names_one(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    admin = store.session("cyrus")

    async def main() -> None:
        top = await admin.create("shared", partition="fast")
        assert top.partition == "fast"
        assert (await admin.create("shared.news")).partition == "fast"  # inherited
        assert (await admin.create("shared.news.old", partition="default")).partition == "default"
        assert (await admin.create("other")).partition == "default"  # no parent: the default
        await store.create_user("fred")
        fred = store.session("fred")
        assert (await fred.create("INBOX.work")).partition == "default"
        with pytest.raises(NotPermitted):
            await fred.create("INBOX.fast", partition="fast")
        with pytest.raises(NotPermitted):
            await fred.rename("INBOX.work", "INBOX.work", partition="fast")
        with pytest.raises(UnknownPartition, match="no partition named 'slow'"):
            await admin.create("shared.slow", partition="slow")
        with pytest.raises(UnknownPartition):
            await admin.rename("other", "other", partition="slow")
        assert await store.backend.get_mailbox("shared.slow") is None

    run(main())
    assert folder_partitions(tmp_path, run(store.backend.get_mailbox("shared")).id) == ["fast"]


def fill(store: MailStore) -> str:
    """user.fred's INBOX with three messages, one flagged; returns the mailbox id."""

    async def main() -> str:
        await store.create_user("fred")
        fred = store.session("fred")
        await fred.append("INBOX", [message(n) for n in range(3)])
        opened = await fred.select("INBOX")
        await fred.store_flags(
            opened, UidSet.of([2]), FlagChange(FlagMode.ADD, frozenset({"$Work"}))
        )
        record = await store.backend.get_mailbox("user.fred")
        assert record is not None
        return record.id

    return run(main())


def assert_whole(root: Path, mailbox_id: str) -> str:
    """The mailbox is readable in full from the one partition the list names; returns it."""
    store = open_store(root)  # opening the store recovers an interrupted move
    record = run(store.backend.get_mailbox("user.fred"))
    assert record is not None and record.id == mailbox_id
    assert folder_partitions(root, mailbox_id) == [record.partition]
    assert not list((root / "imap" / "moves").glob("*"))
    fred = store.session("fred")

    async def check() -> None:
        opened = await fred.select("INBOX")
        assert list(opened.snapshot.uids) == [1, 2, 3]
        metas = await fred.fetch(opened, UidSet.of([1, 2, 3]))
        assert ["$Work" in m.flags for m in metas] == [False, True, False]
        for uid in (1, 2, 3):
            assert b"message %d" % (uid - 1) in await store.backend.read_message(mailbox_id, uid)
        appended = await fred.append("INBOX", [message(9)])  # and it takes new mail
        assert appended.uids == (4,)

    run(check())
    run(store.backend.close())
    return record.partition


def test_rename_into_another_partition_moves_the_files(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    mailbox_id = fill(store)
    admin = store.session("cyrus")
    assert run(admin.rename("user.fred", "user.fred", partition="fast")) == [
        ("user.fred", "user.fred")
    ]
    assert folder_partitions(tmp_path, mailbox_id) == ["fast"]
    assert assert_whole(tmp_path, mailbox_id) == "fast"


def test_rename_with_a_new_name_and_a_partition_does_both(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    fill(store)
    admin = store.session("cyrus")
    run(admin.create("user.fred.a"))
    run(admin.rename("user.fred.a", "user.fred.b", partition="fast"))
    record = run(store.backend.get_mailbox("user.fred.b"))
    assert record is not None and record.partition == "fast"
    assert folder_partitions(tmp_path, record.id) == ["fast"]


def _move_and_die(root: str, step: str) -> None:
    store = open_store(Path(root))

    def crash(at: str) -> None:
        if at == step:
            os._exit(17)  # as kill -9 would: no cleanup, no finally blocks

    assert isinstance(store.backend, FsBackend)
    store.backend.move_blocking("user.fred", "fast", crash)
    os._exit(0)


@pytest.mark.parametrize("step", STEPS)
def test_a_process_killed_after_any_step_of_a_move_leaves_the_mailbox_whole(
    tmp_path: Path, step: str
) -> None:
    mailbox_id = fill(open_store(tmp_path))
    child = multiprocessing.get_context("spawn").Process(
        target=_move_and_die, args=(str(tmp_path), step)
    )
    child.start()
    child.join(120)
    assert child.exitcode == 17
    expected = "default" if STEPS.index(step) < STEPS.index("switched") else "fast"
    assert assert_whole(tmp_path, mailbox_id) == expected


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", STEPS)
def test_an_error_after_any_step_of_a_move_leaves_the_mailbox_whole(
    tmp_path: Path, step: str
) -> None:
    store = open_store(tmp_path)
    mailbox_id = fill(store)

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    assert isinstance(store.backend, FsBackend)
    with pytest.raises(Crash):
        store.backend.move_blocking("user.fred", "fast", crash)
    run(store.backend.close())
    expected = "default" if STEPS.index(step) < STEPS.index("switched") else "fast"
    assert assert_whole(tmp_path, mailbox_id) == expected


def test_a_process_holding_the_old_folder_open_follows_the_move(tmp_path: Path) -> None:
    here = open_store(tmp_path)
    mailbox_id = fill(here)
    fred = here.session("fred")
    opened = run(fred.select("INBOX"))  # this process has the old index open
    there = open_store(tmp_path)
    run(there.session("cyrus").rename("user.fred", "user.fred", partition="fast"))
    appended = run(fred.append("INBOX", [message(7)]))
    assert appended.uids == (4,)
    metas = run(fred.fetch(opened, UidSet.of([1, 2, 3, 4])))
    assert [m.uid for m in metas] == [1, 2, 3, 4]
    assert folder_partitions(tmp_path, mailbox_id) == ["fast"]
    uids = run(there.session("fred").select("INBOX")).snapshot.uids
    assert list(uids) == [1, 2, 3, 4]
