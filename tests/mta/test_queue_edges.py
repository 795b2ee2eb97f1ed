"""The queue store's and the incoming message's edges, found unchecked by mutation testing
(docs/mutation.md): what a crash leaves is all found by ``clean_stale``, the files' modes,
a failed commit or update leaves nothing behind, ``abort`` during a commit, the id a control
file must carry, the sizes listed for every layout and damage, and the store's committer."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from posthouse.mta.queue.groupcommit import CommitRequest, GroupCommitter
from posthouse.mta.queue.ids import new_queue_id
from posthouse.mta.queue.store import (
    CorruptControlFile,
    Envelope,
    QueueEntryNotFound,
    QueueError,
    QueueStore,
    RecipientState,
    envelope_to_json,
)

SMALL = b"Subject: small\r\n\r\nbody\r\n"
LARGE = b"Subject: large\r\n\r\n" + b"x" * 100_000  # more than is held in memory


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    s = QueueStore(tmp_path / "queue")
    yield s
    s.close()


def _commit(store: QueueStore, data: bytes = SMALL) -> str:
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    msg.write(data)
    return msg.commit_blocking()


def _names(store: QueueStore) -> list[str]:
    return sorted(os.listdir(store.directory))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _fail_with(code: int) -> Callable[..., None]:
    def fail(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    return fail


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.001)


# -- what a crash leaves behind --------------------------------------------------------------

_CRASHER = """
import os, sys
from pathlib import Path
from posthouse.mta.queue.store import QueueStore
directory, what, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def power_cut(fd):
    os._exit(0)  # the process dies at its first flush: the files are written, not renamed

store = QueueStore(directory)
if what == "update":
    with store.claim(sys.argv[4]) as envelope:
        envelope.extra["round"] = "2"
        os.fdatasync = os.fsync = power_cut
        store.update(envelope)
msg = store.new_message("alice@example.org", ["bob@example.net"])
msg.write(b"x" * size)
if what == "commit":
    os.fdatasync = os.fsync = power_cut
    msg.commit_blocking()
os._exit(0)  # died while receiving
"""


@pytest.mark.parametrize(
    ("what", "size"),
    [("receive", 100_000), ("commit", 100), ("commit", 100_000), ("update", 0)],
)
def test_clean_stale_removes_every_temporary_file_a_crash_leaves(
    store: QueueStore, what: str, size: int
) -> None:
    """A receiver (or a delivery's update) that died mid-way leaves temporary files; once
    they are old enough, clean_stale removes all of them and nothing else."""
    kept = _commit(store)
    before = _names(store)
    args = [sys.executable, "-c", _CRASHER, str(store.directory), what, str(size), kept]
    subprocess.run(args, check=True, timeout=120)
    left = sorted(set(_names(store)) - set(before))
    assert left, "the crash left no temporary file to clean"
    assert store.clean_stale(3600) == []  # too young yet
    removed = store.clean_stale(3600, now=time.time() + 7200)
    assert sorted(p.name for p in removed) == left
    assert _names(store) == before
    assert store.read_data(kept) == SMALL and "round" not in store.load(kept).extra
    with store.claim(kept) as envelope:  # the entry is whole: it can be updated again
        assert envelope is not None
        envelope.extra["round"] = "3"
        store.update(envelope)
    assert store.load(kept).extra == {"round": "3"} and _names(store) == before


def test_clean_stale_goes_on_past_young_locked_vanished_and_foreign_files(
    store: QueueStore,
) -> None:
    old = time.time() - 3 * 86400
    stale, locked_fds = [], []
    try:
        for n in range(10):
            young = store.directory / f"{new_queue_id()}.df.tmp"
            young.write_bytes(b"being received")
            locked = store.directory / f"{new_queue_id()}.qf.tmp"
            locked.write_bytes(b"being written")
            fd = os.open(locked, os.O_RDONLY)
            locked_fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
            (store.directory / f"{new_queue_id()}.df.tmp").symlink_to(f"gone-{n}")
            for kind in ("df", "qf"):
                path = store.directory / f"{new_queue_id()}.{kind}.tmp"
                path.write_bytes(b"left by a crash")
                stale.append(path)
            os.utime(locked, (old, old))
        foreign = store.directory / "notes.df.tmp"  # not a queue id: not the queue's file
        foreign.write_bytes(b"someone else's")
        for path in [*stale, foreign]:
            os.utime(path, (old, old))
        assert sorted(store.clean_stale()) == sorted(stale)
    finally:
        for fd in locked_fds:
            os.close(fd)
    assert foreign.exists()
    assert len(_names(store)) == 31


# -- file modes, descriptors, failures ---------------------------------------------------------


@pytest.fixture
def umask_002() -> Iterator[None]:
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_002")
def test_queue_files_are_group_read_write_only(tmp_path: Path) -> None:
    """Files 0660 (the queue is shared with the mail group's tools), directory 0775."""
    store = QueueStore(tmp_path / "new" / "queue")  # missing parents are created too
    try:
        assert stat.S_IMODE(store.directory.stat().st_mode) == 0o775
        small, large = _commit(store, SMALL), _commit(store, LARGE)
        receiving = store.new_message("a@x", ["b@y"])
        receiving.write(LARGE)
        for path in [store.control_path(small), store.control_path(large), store.data_path(large),
                     *store.directory.glob("*.df.tmp")]:  # fmt: skip
            assert stat.S_IMODE(path.stat().st_mode) == 0o660, path
        receiving.abort()
        with store.claim(small) as envelope:
            assert envelope is not None
            envelope.extra["seen"] = "1"
            store.update(envelope)
        assert stat.S_IMODE(store.control_path(small).stat().st_mode) == 0o660
    finally:
        store.close()


def test_committing_leaks_no_descriptors(store: QueueStore) -> None:
    _commit(store, SMALL)
    _commit(store, LARGE)  # the committer's threads are running now
    before = _open_fds()
    for _ in range(10):
        _commit(store, SMALL)
        _commit(store, LARGE)
    assert _open_fds() == before


@pytest.fixture
def failing_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fdatasync", _fail_with(errno.EIO))


@pytest.mark.usefixtures("failing_flush")
@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["small", "large"])
@pytest.mark.parametrize("how", ["blocking", "async"])
def test_a_commit_whose_flush_fails_raises_and_leaves_nothing(
    store: QueueStore, data: bytes, how: str
) -> None:
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    msg.write(data)
    with pytest.raises(OSError) as failure:
        if how == "blocking":
            msg.commit_blocking()
        else:
            asyncio.run(msg.commit())
    assert failure.value.errno == errno.EIO
    assert _names(store) == []
    with pytest.raises(QueueError):
        msg.write(b"more")


@pytest.mark.parametrize("how", ["blocking", "async"])
def test_a_commit_the_committer_refuses_leaves_nothing(store: QueueStore, how: str) -> None:
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    msg.write(LARGE)  # in a temporary data file already
    store.committer.close()
    with pytest.raises(RuntimeError):
        if how == "blocking":
            msg.commit_blocking()
        else:
            asyncio.run(msg.commit())
    assert _names(store) == []


def test_a_failure_to_remove_the_files_of_a_failed_commit_keeps_its_error(
    store: QueueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    msg.write(LARGE)
    monkeypatch.setattr(os, "fdatasync", _fail_with(errno.EIO))
    monkeypatch.setattr(os, "unlink", _fail_with(errno.EROFS))
    with pytest.raises(OSError) as failure:
        msg.commit_blocking()
    assert failure.value.errno == errno.EIO


def test_a_descriptor_that_fails_to_close_after_a_commit_does_not_undo_it(
    store: QueueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() may report an error (EIO on some file systems) after the data was flushed:
    the message is committed all the same."""
    real_close = os.close

    def close(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        real_close(fd)
        if name.endswith(".qf"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    msg = store.new_message("alice@example.org", ["bob@example.net"])
    msg.write(SMALL)
    monkeypatch.setattr(os, "close", close)
    assert msg.commit_blocking() == msg.queue_id
    monkeypatch.undo()
    assert store.read_data(msg.queue_id) == SMALL


def test_clean_stale_skips_a_file_another_cleaner_removed_meanwhile(
    store: QueueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = store.directory / f"{new_queue_id()}.df.tmp"
    stale.write_bytes(b"left by a crash")
    old = time.time() - 3 * 86400
    os.utime(stale, (old, old))
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        stale.unlink()  # the other cleaner wins the race, just before our lock
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    assert store.clean_stale() == []
    assert _names(store) == []


def test_an_update_whose_flush_fails_keeps_the_old_control_file(
    store: QueueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    qid = _commit(store)
    before = _open_fds()
    with store.claim(qid) as envelope:
        assert envelope is not None
        envelope.extra["round"] = "2"
        with monkeypatch.context() as patch:
            patch.setattr(os, "fdatasync", _fail_with(errno.EIO))
            with pytest.raises(OSError) as failure:
                store.update(envelope)
        assert failure.value.errno == errno.EIO
    assert _open_fds() == before
    assert _names(store) == [f"{qid}.qf"]
    assert "round" not in store.load(qid).extra and store.read_data(qid) == SMALL


def test_a_lock_failure_on_a_new_data_file_leaves_nothing(
    store: QueueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    before = _open_fds()
    with monkeypatch.context() as patch:
        patch.setattr(fcntl, "flock", _fail_with(errno.ENOLCK))
        with pytest.raises(OSError) as failure:
            msg.write(LARGE)
    assert failure.value.errno == errno.ENOLCK
    assert _open_fds() == before
    assert _names(store) == []
    msg.abort()


def test_a_lock_failure_on_a_claim_is_raised_and_leaks_nothing(
    store: QueueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    qid = _commit(store)
    before = _open_fds()
    with monkeypatch.context() as patch:
        patch.setattr(fcntl, "flock", _fail_with(errno.ENOLCK))
        with pytest.raises(OSError) as failure, store.claim(qid):
            pass
    assert failure.value.errno == errno.ENOLCK
    assert _open_fds() == before
    with store.claim(qid) as envelope:
        assert envelope is not None


def test_update_replaces_a_longer_temporary_file_a_crashed_update_left(store: QueueStore) -> None:
    qid = _commit(store)
    (store.directory / f"{qid}.qf.tmp").write_bytes(b"x" * 100_000)
    with store.claim(qid) as envelope:
        assert envelope is not None
        envelope.extra["round"] = "2"
        store.update(envelope)
    assert store.load(qid).extra == {"round": "2"}
    assert store.read_data(qid) == SMALL


# -- the message's life ------------------------------------------------------------------------


def test_abort_during_a_commit_is_refused(store: QueueStore) -> None:
    """The commit may already be durable: abort() cannot take it back."""
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    msg.write(SMALL)
    committed: list[str] = []
    with store.committer.hold():
        worker = threading.Thread(target=lambda: committed.append(msg.commit_blocking()))
        worker.start()
        _wait_until(lambda: store.committer.pending_count == 1, "the commit to be queued")
        with pytest.raises(QueueError):
            msg.abort()
    worker.join(60)
    assert committed == [msg.queue_id]
    assert store.read_data(msg.queue_id) == SMALL


def test_leaving_the_with_block_uncommitted_discards_the_message(store: QueueStore) -> None:
    with store.new_message("alice@example.org", ["bob@example.net"]) as msg:
        msg.write(LARGE)
        assert _names(store) == [f"{msg.queue_id}.df.tmp"]
    assert _names(store) == []
    with store.new_message("alice@example.org", ["bob@example.net"]) as msg:
        msg.write(SMALL)
        msg.commit_blocking()
    assert store.read_data(msg.queue_id) == SMALL


def test_content_in_memory_until_the_message_spills_to_a_file(store: QueueStore) -> None:
    """What direct delivery sends without reading the queue back."""
    msg = store.new_message("alice@example.org", ["bob@example.net"])
    assert msg.content_in_memory() == b""
    msg.write(SMALL)
    assert msg.content_in_memory() == SMALL
    msg.write(LARGE)
    assert msg.content_in_memory() is None
    msg.abort()


def test_new_message_defaults(store: QueueStore) -> None:
    qid = _commit(store)
    envelope = store.load(qid)
    assert envelope.smtputf8 is False
    assert envelope.protocol == "ESMTP"


# -- listing and reading -----------------------------------------------------------------------


def _write_v1(store: QueueStore, size: int) -> str:
    """A two-file (version-1) entry's control file, its data file left to the caller."""
    qid = new_queue_id()
    envelope = Envelope(qid, "alice@example.org", [RecipientState("bob@example.net")], time.time(),
                        size)  # fmt: skip
    store.control_path(qid).write_bytes(envelope_to_json(envelope))
    return qid


def test_listed_sizes_of_every_layout_and_damage(store: QueueStore) -> None:
    large = _commit(store, LARGE)
    no_data = _write_v1(store, 10)
    linked = _write_v1(store, 10)
    (store.directory / "elsewhere").write_bytes(b"0123456789")
    store.data_path(linked).symlink_to("elsewhere")
    directory = _write_v1(store, 10)
    store.data_path(directory).mkdir()
    corrupt = new_queue_id()
    store.control_path(corrupt).write_bytes(b"not json\n")
    entries = {e.queue_id: e for e in store.list_entries()}
    assert entries[large].problem is None and entries[large].data_size == len(LARGE)
    for qid in (no_data, linked, directory):  # a data file must be a regular file
        assert entries[qid].problem is not None and entries[qid].data_size == 0
    assert entries[corrupt].envelope is None and entries[corrupt].data_size == 0


def test_a_control_file_under_another_entry_s_name_is_damaged(store: QueueStore) -> None:
    """Not delivered under the wrong id: each of the two layouts, copied to another name."""
    inline, two_files = _commit(store, SMALL), _write_v1(store, 10)
    copies = {}
    for qid in (inline, two_files):
        copies[qid] = new_queue_id()
        store.control_path(copies[qid]).write_bytes(store.control_path(qid).read_bytes())
    entries = {e.queue_id: e for e in store.list_entries()}
    assert entries[inline].problem is None
    for copy in copies.values():
        assert entries[copy].problem is not None and entries[copy].envelope is None
        with pytest.raises(CorruptControlFile):
            store.load(copy)
    for read in (store.read_data, store.open_data):
        with pytest.raises(CorruptControlFile):
            read(copies[two_files])


def test_open_data_of_a_missing_data_file_is_not_found(store: QueueStore) -> None:
    qid = _write_v1(store, 10)
    before = _open_fds()
    for read in (store.open_data, store.read_data):
        with pytest.raises(QueueEntryNotFound):
            read(qid)
    assert _open_fds() == before


def test_queue_ids_lists_each_entry_with_a_control_file_once(store: QueueStore) -> None:
    large = _commit(store, LARGE)  # ID.qf and ID.df
    (store.directory / "notes.qf").write_bytes(b"not an entry")
    (store.directory / f"{new_queue_id()}.df").write_bytes(b"no control file")
    assert store.queue_ids() == [large]


def _blocked_waiters(path: Path) -> int:
    ino = os.stat(path).st_ino
    with open("/proc/locks") as f:
        return sum(1 for line in f if "->" in line and f":{ino} " in line)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs /proc/locks")
def test_a_blocking_claim_of_an_entry_removed_meanwhile_yields_none(store: QueueStore) -> None:
    qid = _commit(store)
    got: list[object] = []

    def claim() -> None:
        try:
            with store.claim(qid, blocking=True) as envelope:
                got.append(envelope)
        except BaseException as exc:  # reported below
            got.append(exc)

    with store.claim(qid) as envelope:
        assert envelope is not None
        path = store.control_path(qid)
        waiter = threading.Thread(target=claim)
        waiter.start()
        _wait_until(lambda: _blocked_waiters(path) > 0, "the waiter to queue on the lock")
        store.remove(qid)
    waiter.join(60)
    assert got == [None]


# -- the committer -----------------------------------------------------------------------------


def test_a_store_closes_its_own_committer_and_not_a_shared_one(tmp_path: Path) -> None:
    with GroupCommitter() as shared:
        store = QueueStore(tmp_path / "shared", committer=shared)
        _commit(store)
        store.close()
        shared.submit(CommitRequest()).result(60)  # still running

    store = QueueStore(tmp_path / "own")
    try:
        own = store.committer
        _commit(store)
        store.close()
        with pytest.raises(RuntimeError):
            own.submit(CommitRequest())
        qid = _commit(store)  # a closed store starts a new committer when it needs one
        assert store.read_data(qid) == SMALL
    finally:
        store.close()
