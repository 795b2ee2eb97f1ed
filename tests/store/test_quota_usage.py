"""Quota usage summed from the mailboxes' own indexes (chapter 12.5.8): each mailbox keeps
its bytes in the transaction that changes its messages, so usage is right after appends from
several processes at once and cannot be left behind by a crash after a commit; a message
whose index commit never happened does not count."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from posthouse.store.backend import FlagChange, FlagMode, NewMessage
from posthouse.store.fs.backend import FsBackend
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import WHEN, message, open_store, run

SIZE = 1500
PER_PROCESS = 25
DELETED = FlagChange(FlagMode.ADD, frozenset({"\\Deleted"}))


def sized(n: int, size: int = SIZE) -> NewMessage:
    head = message(n).content
    return NewMessage(head + b"x" * (size - len(head)), WHEN)


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    store = open_store(tmp_path)

    async def setup() -> None:
        await store.create_user("hansen")
        await store.session("hansen").create("INBOX.saved")
        await store.backend.set_quota("user.hansen", 100_000)

    run(setup())
    return store


async def used(store: MailStore, root: str = "user.hansen") -> int:
    usage = await store.backend.quota(root)
    assert usage is not None
    return usage.used_bytes


def _append_many(root: str, folder: str, first: int, start: Event) -> None:
    store = open_store(Path(root))
    start.wait(60)

    async def main() -> None:
        hansen = store.session("hansen")
        for n in range(first, first + PER_PROCESS):
            await hansen.append(folder, [sized(n)])
        await store.backend.close()

    run(main())


def test_usage_is_right_after_concurrent_appends_from_two_processes(
    store: MailStore, tmp_path: Path
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    children = [
        context.Process(target=_append_many, args=(str(tmp_path), folder, first, start))
        for folder, first in (("INBOX", 1), ("INBOX", 1000), ("INBOX.saved", 2000))
    ]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    assert run(used(store)) == 3 * PER_PROCESS * SIZE
    assert run(store.backend.recompute_quotas()) == [
        run(store.backend.quota("user.hansen"))  # counted row by row: the same
    ]


def test_a_commit_counts_even_if_the_process_dies_right_after_it(store: MailStore) -> None:
    """Nothing after the index's commit is needed for usage (no second write to lose)."""
    backend = store.backend
    assert isinstance(backend, FsBackend)
    record = backend.mailboxes.lookup("user.hansen")
    assert record is not None
    index = backend._index(record.id)
    index.commit([index.prepare(sized(1))])  # the commit alone, as if the process died then
    assert run(used(store)) == SIZE
    assert run(used(open_store(store_root(backend)))) == SIZE


def test_a_message_written_but_never_committed_does_not_count(store: MailStore) -> None:
    """A crash between the message file and the index commit: the file is not in the
    mailbox, and usage does not count it (neither now nor after ``imapquota -f``)."""
    backend = store.backend
    assert isinstance(backend, FsBackend)
    record = backend.mailboxes.lookup("user.hansen.saved")
    assert record is not None
    run(store.session("hansen").append("INBOX.saved", [sized(1)]))
    prepared = backend._index(record.id).prepare(sized(2, 40_000))  # durable, never committed
    assert prepared.temp.exists()
    assert run(used(store)) == SIZE
    assert run(backend.recompute_quotas())[0].used_bytes == SIZE


def test_usage_follows_expunge_rename_and_delete(store: MailStore) -> None:
    async def main() -> None:
        hansen = store.session("hansen")
        await hansen.create("INBOX.personnel")
        await store.backend.set_quota("user.hansen.personnel", 10_000)
        await hansen.append("INBOX.saved", [sized(1), sized(2)])
        assert await used(store) == 2 * SIZE
        # Renamed under another root: the usage goes with it.
        await hansen.rename("INBOX.saved", "INBOX.personnel.saved")
        assert (await used(store), await used(store, "user.hansen.personnel")) == (0, 2 * SIZE)
        opened = await hansen.select("INBOX.personnel.saved")
        await hansen.store_flags(opened, UidSet.of([opened.snapshot.uids[0]]), DELETED)
        await hansen.expunge(opened)
        assert await used(store, "user.hansen.personnel") == SIZE
        await hansen.delete("INBOX.personnel.saved")
        assert await used(store, "user.hansen.personnel") == 0

    run(main())


def store_root(backend: FsBackend) -> Path:
    return backend.layout.config_dir.parent
