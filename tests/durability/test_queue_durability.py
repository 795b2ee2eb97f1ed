"""The queue's durability promise, checked on the system calls it makes.

An SMTP ``250`` after DATA waits for :meth:`IncomingMessage.commit`; these tests check that
by the time that returns the message's files were flushed with all their data, renamed into
place (data file before control file), and the queue directory flushed after the renames,
and that the acknowledgement is not given while a flush is still running.  The power-loss
test drops everything that was not flushed and reopens the queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.mta.queue.groupcommit import CommitRequest, GroupCommitter
from posthouse.mta.queue.store import QueueStore
from tests.durability.syscalls import WAIT_SECONDS, Call, PowerLoss, SyscallTrace, inode_of

SMALL = b"Subject: small\r\n\r\n" + b"s" * 1000 + b"\r\n"
LARGE = b"Subject: large\r\n\r\n" + b"L" * 100_000 + b"\r\n"  # over the 64 KiB inline limit


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch) -> SyscallTrace:
    return SyscallTrace(monkeypatch)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    s = QueueStore(tmp_path / "queue")
    yield s
    s.close()


def test_inline_commit_syncs_the_file_before_the_rename_and_the_directory_after(
    store: QueueStore, trace: SyscallTrace
) -> None:
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    msg.write(SMALL)
    qid = msg.commit_blocking()
    trace.mark("ack")

    qf = store.control_path(qid)
    assert not store.data_path(qid).exists(), "a small message is one file"
    size = qf.stat().st_size
    dir_sync = trace.assert_published_durably(qf, size)
    assert dir_sync < trace.index(lambda c: c.dst == "ack", "ack")
    assert store.read_data(qid) == SMALL


def test_large_commit_publishes_the_data_file_before_the_control_file(
    store: QueueStore, trace: SyscallTrace
) -> None:
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    msg.write(LARGE)
    qid = msg.commit_blocking()
    trace.mark("ack")

    qf, df = store.control_path(qid), store.data_path(qid)
    df_dir_sync = trace.assert_published_durably(df, len(LARGE))
    qf_dir_sync = trace.assert_published_durably(qf, qf.stat().st_size)
    df_rename = trace.index(trace.renamed_to(df), "data rename")
    qf_rename = trace.index(trace.renamed_to(qf), "control rename")
    # The control file makes the message a queue entry: it appears only once the complete
    # data file is flushed and in place.
    assert df_rename < qf_rename, trace.describe()
    assert trace.index(trace.file_synced(inode_of(qf)), "control sync") < qf_rename
    ack = trace.index(lambda c: c.dst == "ack", "ack")
    assert max(df_dir_sync, qf_dir_sync) < ack
    assert store.read_data(qid) == LARGE


def test_control_file_appears_only_after_the_complete_data_file(
    store: QueueStore, monkeypatch: pytest.MonkeyPatch, trace: SyscallTrace
) -> None:
    """Seen from another process at the moment the control file gets its name."""
    seen: list[tuple[bool, int]] = []
    real_rename = os.rename

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if str(dst).endswith(".qf"):
            df = Path(str(dst)[:-3] + ".df")
            seen.append((df.exists(), df.stat().st_size if df.exists() else -1))
        real_rename(src, dst)

    monkeypatch.setattr("os.rename", rename)
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    msg.write(LARGE)
    msg.commit_blocking()
    assert seen == [(True, len(LARGE))]


def test_update_syncs_the_new_control_file_before_it_replaces_the_old(
    store: QueueStore, trace: SyscallTrace
) -> None:
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    msg.write(SMALL)
    qid = msg.commit_blocking()
    with store.claim(qid) as envelope:
        assert envelope is not None
        envelope.recipients[0] = dataclasses.replace(envelope.recipients[0], attempts=3)
        before = len(trace.snapshot())
        store.update(envelope)
        trace.mark("updated")
    qf = store.control_path(qid)
    rename = trace.last_index(trace.renamed_to(qf), "rename of the new control file")
    assert rename >= before
    synced = trace.last_index(trace.file_synced(inode_of(qf), qf.stat().st_size), "sync")
    assert before <= synced < rename, trace.describe()
    dir_sync = trace.last_index(trace.dir_synced(qf.parent), "queue directory sync")
    assert rename < dir_sync < trace.index(lambda c: c.dst == "updated", "updated")
    assert store.load(qid).recipients[0].attempts == 3
    assert store.read_data(qid) == SMALL


def test_group_commit_flushes_every_file_then_renames_then_each_directory_once(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    n = 8
    with GroupCommitter() as gc:
        fds, futures = [], []
        with gc.hold():
            for i in range(n):
                src = tmp_path / f"{i}.tmp"
                src.write_bytes(b"x" * (i + 1))
                fd = os.open(src, os.O_RDWR)
                fds.append(fd)
                futures.append(
                    gc.submit(CommitRequest(files=[fd], renames=[(src, tmp_path / f"{i}")]))
                )
        for future in futures:
            future.result(WAIT_SECONDS)
        for fd in fds:
            os.close(fd)
    calls = trace.snapshot()
    syncs = [i for i, c in enumerate(calls) if c.is_sync and not c.is_dir]
    renames = [i for i, c in enumerate(calls) if c.kind == "rename"]
    dir_syncs = [i for i, c in enumerate(calls) if trace.dir_synced(tmp_path)(c)]
    assert len(syncs) == n and len(renames) == n and len(dir_syncs) == 1, trace.describe()
    assert max(syncs) < min(renames) and max(renames) < dir_syncs[0]
    for i in range(n):
        path = tmp_path / str(i)
        trace.assert_published_durably(path, i + 1)


def _hold_and_check_not_acknowledged(
    store: QueueStore, trace: SyscallTrace, data: bytes, matches_kind: str
) -> None:
    """Commit from an event loop with one kind of flush held; the commit must wait for it."""
    queue_inode = inode_of(store.directory)

    def matches(call: Call) -> bool:
        if matches_kind == "directory":
            return call.is_dir and call.inode == queue_inode
        return not call.is_dir

    async def main() -> str:
        msg = store.new_message("alice@example.org", ["bob@example.net"])
        msg.write(data)
        with trace.hold_syncs(matches) as hold:
            task = asyncio.create_task(msg.commit())
            entered = await asyncio.to_thread(hold.entered.wait, WAIT_SECONDS)
            assert entered, "the commit never flushed"
            # The flush is in progress: the event loop keeps running, the commit waits.
            for _ in range(20):
                await asyncio.sleep(0)
            await asyncio.sleep(0.05)
            assert not task.done(), "acknowledged before the flush returned"
            hold.release.set()
            qid = await asyncio.wait_for(task, WAIT_SECONDS)
        trace.mark("ack")
        return qid

    qid = asyncio.run(main())
    assert store.read_data(qid) == data
    last_flush = trace.last_index(lambda c: c.is_sync and matches(c), "the held flush")
    assert last_flush < trace.index(lambda c: c.dst == "ack", "ack")


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["inline", "large"])
def test_commit_is_not_acknowledged_before_the_file_sync_returns(
    store: QueueStore, trace: SyscallTrace, data: bytes
) -> None:
    _hold_and_check_not_acknowledged(store, trace, data, "file")


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["inline", "large"])
def test_commit_is_not_acknowledged_before_the_directory_sync_returns(
    store: QueueStore, trace: SyscallTrace, data: bytes
) -> None:
    _hold_and_check_not_acknowledged(store, trace, data, "directory")


def test_group_commit_future_waits_for_the_directory_sync(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    """The future a session waits on is not done while the directory flush runs."""
    src = tmp_path / "a.tmp"
    src.write_bytes(b"data")
    with (
        GroupCommitter() as gc,
        trace.hold_syncs(trace.dir_synced(tmp_path)) as hold,
    ):
        future: concurrent.futures.Future[None] = gc.submit(
            CommitRequest(files=[src], renames=[(src, tmp_path / "a")])
        )
        assert hold.entered.wait(WAIT_SECONDS)
        assert not future.done()
        hold.release.set()
        future.result(WAIT_SECONDS)
    trace.assert_published_durably(tmp_path / "a", 4)


# -- power loss --------------------------------------------------------------------------------


def test_power_loss_keeps_every_acknowledged_message(tmp_path: Path, trace: SyscallTrace) -> None:
    """Cut the power after a mix of commits; every acknowledged message is there, intact."""
    qdir = tmp_path / "queue"
    qdir.mkdir()
    power = PowerLoss(trace, qdir)
    acknowledged: dict[str, tuple[bytes, str]] = {}
    with GroupCommitter() as gc:
        store = QueueStore(qdir, gc)
        # One at a time, both layouts.
        for i in range(6):
            data = (LARGE if i % 2 else SMALL) + b"%d\r\n" % i
            msg = store.new_message("alice@example.org", [f"r{i}@example.net"])
            msg.write(data)
            acknowledged[msg.commit_blocking()] = (data, f"r{i}@example.net")

        # Concurrent sessions sharing batches.
        async def sessions() -> None:
            async def one(i: int) -> None:
                data = (SMALL if i % 3 else LARGE) + b"concurrent %d\r\n" % i
                msg = store.new_message("alice@example.org", [f"c{i}@example.net"])
                msg.write(data)
                acknowledged[await msg.commit()] = (data, f"c{i}@example.net")

            await asyncio.gather(*(one(i) for i in range(12)))

        asyncio.run(sessions())

        # An acknowledged update (a delivery attempt recorded).
        updated = next(iter(acknowledged))
        with store.claim(updated) as envelope:
            assert envelope is not None
            envelope.recipients[0] = dataclasses.replace(envelope.recipients[0], attempts=1)
            store.update(envelope)

        # Never acknowledged: one message still being received (spilled to disk).
        pending = store.new_message("alice@example.org", ["late@example.net"])
        pending.write(LARGE)

        power.cut()
        pending.abort()  # closes its file; nothing of it was durable
    store.close()

    reopened = QueueStore(qdir)
    try:
        entries = {e.queue_id: e for e in reopened.list_entries()}
        for qid, (data, rcpt) in acknowledged.items():
            assert qid in entries, f"acknowledged {qid} lost"
            assert entries[qid].problem is None, entries[qid].problem
            envelope = reopened.load(qid)
            assert [r.address for r in envelope.recipients] == [rcpt]
            assert reopened.read_data(qid) == data
        assert reopened.load(updated).recipients[0].attempts == 1
        assert pending.queue_id not in entries
    finally:
        reopened.close()


def test_power_loss_simulation_drops_what_was_not_synced(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    """The simulator itself: without the flushes, the data and the names are gone."""
    (tmp_path / "old").write_bytes(b"old")
    power = PowerLoss(trace, tmp_path)
    named = os.open(tmp_path / "named-unsynced", os.O_RDWR | os.O_CREAT)
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dir_fd)  # the names are durable, not what is written to the file later
    os.close(dir_fd)
    os.write(named, b"lost")
    os.close(named)
    os.rename(tmp_path / "old", tmp_path / "renamed-unsynced")  # undone
    fd = os.open(tmp_path / "synced-unnamed", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"data")
    os.fsync(fd)  # data durable, but the directory is not flushed again: the name is lost
    os.close(fd)
    power.cut()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["named-unsynced", "old"]
    assert (tmp_path / "named-unsynced").read_bytes() == b""
    assert (tmp_path / "old").read_bytes() == b"old"
