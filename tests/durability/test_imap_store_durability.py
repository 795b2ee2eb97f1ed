"""Durability of the IMAP store, checked on its system calls: a message's bytes are
``fdatasync``\\ ed before the file gets its ``UID.`` name, the mailbox folder is ``fsync``\\ ed
after the rename and before the index transaction that makes the message visible commits,
and the commit happens before the append returns; concurrent appends share one folder flush
and one index commit (group commit)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from posthouse.store.fs import sqlite as store_sqlite
from posthouse.store.fs.backend import FsBackend
from posthouse.store.service import MailStore
from tests.durability.syscalls import WAIT_SECONDS, SyscallTrace, inode_of
from tests.store.imap_helpers import message, open_store, run


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch) -> SyscallTrace:
    trace = SyscallTrace(monkeypatch)
    real_connect = sqlite3.connect

    def connect(path: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(path, *args, **kwargs)
        name = Path(path).name

        writing = [False]

        def statement(sql: str) -> None:  # marks the commits of write transactions only
            sql = sql.strip().upper()
            if sql == "BEGIN IMMEDIATE":
                writing[0] = True
            elif sql in ("COMMIT", "ROLLBACK"):
                if writing[0] and sql == "COMMIT":
                    trace.mark(f"commit {name} {path}")
                writing[0] = False

        conn.set_trace_callback(statement)
        return conn

    monkeypatch.setattr(store_sqlite.sqlite3, "connect", connect)
    return trace


def _inbox_dir(store: MailStore) -> Path:
    backend = store.backend
    assert isinstance(backend, FsBackend)
    record = run(backend.get_mailbox("user.hansen"))
    assert record is not None
    return backend.layout.mailbox_dir(record.partition, record.id)


def test_message_synced_then_named_then_folder_synced_then_index_committed_then_acked(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    folder = _inbox_dir(store)
    start = len(trace.snapshot())
    result = run(store.session("hansen").append("INBOX", [message(1, b"x" * 70000)]))
    trace.mark("acknowledged")
    assert result.uids == (1,)
    path = folder / "1."
    size = len(message(1, b"x" * 70000).content)
    assert path.stat().st_size == size
    dir_sync = trace.assert_published_durably(path, size)  # data synced < rename < dir sync
    calls = trace.snapshot()
    index_commit = next(
        i
        for i in range(start, len(calls))
        if calls[i].kind == "mark" and calls[i].dst == f"commit index.db {folder / 'index.db'}"
    )
    acked = trace.index(lambda c: c.dst == "acknowledged", "acknowledgement")
    assert dir_sync < index_commit < acked, trace.describe()
    synced = trace.index(trace.file_synced(inode_of(path), size), "message sync")
    assert calls[synced].kind == "fdatasync"


def test_every_message_of_a_multiappend_is_synced_before_it_is_named(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    folder = _inbox_dir(store)
    contents = [message(n, b"y" * (1000 * n)) for n in range(1, 4)]
    assert run(store.session("hansen").append("INBOX", contents)).uids == (1, 2, 3)
    trace.mark("acknowledged")
    dir_syncs = [
        trace.assert_published_durably(folder / f"{n}.", len(contents[n - 1].content))
        for n in range(1, 4)
    ]
    assert len(set(dir_syncs)) == 1  # one folder flush for the three
    calls = trace.snapshot()
    commit = next(
        i
        for i, c in enumerate(calls)
        if c.kind == "mark" and c.dst.startswith("commit index.db") and i > dir_syncs[0]
    )
    assert commit < trace.index(lambda c: c.dst == "acknowledged", "acknowledgement")


def test_the_append_is_not_acknowledged_while_the_folder_flush_is_held(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    folder = _inbox_dir(store)
    session = store.session("hansen")

    async def main() -> None:
        with trace.hold_syncs(trace.dir_synced(folder)) as hold:
            task = asyncio.create_task(session.append("INBOX", [message(1)]))
            assert await asyncio.to_thread(hold.entered.wait, WAIT_SECONDS)
            await asyncio.sleep(0.05)  # a chance to answer early, if the code were wrong
            assert not task.done(), "APPEND acknowledged before its folder was flushed"
            hold.release.set()
            assert (await asyncio.wait_for(task, WAIT_SECONDS)).uids == (1,)

    run(main())


def test_concurrent_appends_share_one_folder_flush_and_one_index_commit(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    backend = store.backend
    assert isinstance(backend, FsBackend)
    record = run(backend.get_mailbox("user.hansen"))
    assert record is not None
    folder = _inbox_dir(store)
    index = backend._index(record.id)
    results: dict[int, tuple[int, ...]] = {}

    def append(n: int) -> None:
        results[n] = backend.append_blocking(record.id, [message(n)]).uids

    with trace.hold_syncs(trace.dir_synced(folder)) as hold:
        first = threading.Thread(target=append, args=(0,))
        first.start()
        assert hold.entered.wait(WAIT_SECONDS)
        others = [threading.Thread(target=append, args=(n,)) for n in range(1, 9)]
        for thread in others:
            thread.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while len(index._pending) < len(others):  # all queued behind the held batch
            assert time.monotonic() < deadline, "the appends never queued"
            time.sleep(0.01)
        start = len(trace.snapshot())
        hold.release.set()
        for thread in [first, *others]:
            thread.join(WAIT_SECONDS)
    calls = trace.snapshot()[start:]
    folder_syncs = [c for c in calls if trace.dir_synced(folder)(c)]
    commits = [c for c in calls if c.kind == "mark" and c.dst.startswith("commit index.db")]
    # The held batch (the first append) finishes, then the eight queued appends go together.
    assert len(folder_syncs) == 2 and len(commits) == 2, trace.describe()
    second_sync = max(i for i, c in enumerate(calls) if trace.dir_synced(folder)(c))
    renames = [i for i, c in enumerate(calls) if c.kind == "rename"]
    assert len(renames) == 8 and max(renames) < second_sync
    assert sorted(uid for uids in results.values() for uid in uids) == list(range(1, 10))
