"""Tests for posthouse.mta.queue.store (and ids): durability, damage, locking, crash safety."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from posthouse.mta.queue.control_file import inline_data
from posthouse.mta.queue.groupcommit import GroupCommitter
from posthouse.mta.queue.ids import is_queue_id, new_queue_id, queue_id_time
from posthouse.mta.queue.store import (
    CorruptControlFile,
    Envelope,
    QueueEntryLocked,
    QueueEntryNotFound,
    QueueError,
    QueueStore,
    RecipientState,
    envelope_to_json,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    s = QueueStore(tmp_path / "queue")
    yield s
    s.close()


def _commit(store: QueueStore, data: bytes = b"Subject: hi\r\n\r\nbody\r\n", **meta: object) -> str:
    msg = store.new_message("alice@example.org", ["bob@example.net"], **meta)  # type: ignore[arg-type]
    msg.write(data)
    return msg.commit_blocking()


def _write_v1(store: QueueStore, data: bytes) -> str:
    """An entry in the two-file layout (version-1 control file and ``ID.df``), as posthouse
    writes for messages too large to hold in memory."""
    qid = new_queue_id()
    envelope = Envelope(qid, "alice@example.org", [RecipientState("bob@example.net")], time.time(),
                        len(data))  # fmt: skip
    store.data_path(qid).write_bytes(data)
    store.control_path(qid).write_bytes(envelope_to_json(envelope))
    return qid


# -- queue ids ---------------------------------------------------------------------------------


def test_queue_ids_unique_sorted_and_filename_safe() -> None:
    ids = [new_queue_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(is_queue_id(i) and len(i) == 16 and i.isalnum() and i == i.lower() for i in ids)
    assert abs(queue_id_time(ids[0]) - time.time()) < 60
    assert not is_queue_id("../../etc/passwd")


def test_queue_ids_unique_across_processes() -> None:
    code = (
        "from posthouse.mta.queue.ids import new_queue_id as n; print(*(n() for _ in range(2000)))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    ids: list[str] = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        ids.extend(out.split())
    assert len(ids) == 6000
    assert len(set(ids)) == 6000


# -- commit, reload, abort -----------------------------------------------------------------


def test_commit_then_load_roundtrips_every_field(store: QueueStore) -> None:
    msg = store.new_message(
        "sender@example.org",
        ["a@example.net", RecipientState("b@example.net", original="list@example.org")],
        client_address="192.0.2.7",
        helo="client.example",
        auth_user="sender",
        body="8BITMIME",
        smtputf8=True,
        protocol="ESMTPSA",
        extra={"envid": "abc", "ünï": "cødé"},
        received_at=1700000000.25,
    )
    chunks = [b"Received: x\r\n", b"Subject: t\r\n\r\n", "héllo\r\n".encode()]
    for c in chunks:
        msg.write(c)
    assert msg.size == sum(map(len, chunks))
    qid = msg.commit_blocking()
    assert qid == msg.queue_id

    env = store.load(qid)
    assert env == Envelope(
        queue_id=qid,
        sender="sender@example.org",
        recipients=[
            RecipientState("a@example.net"),
            RecipientState("b@example.net", original="list@example.org"),
        ],
        received_at=1700000000.25,
        size=msg.size,
        client_address="192.0.2.7",
        helo="client.example",
        auth_user="sender",
        body="8BITMIME",
        smtputf8=True,
        protocol="ESMTPSA",
        extra={"envid": "abc", "ünï": "cødé"},
        inline=True,
    )
    with store.open_data(qid) as f:
        assert f.read() == b"".join(chunks)
    line, _, data = store.path_for(qid).read_bytes().partition(b"\n")
    assert json.loads(line)["v"] == 2 and data == b"".join(chunks)  # one file: line and data
    assert [p.name for p in store.directory.iterdir()] == [f"{qid}.qf"]
    assert not list(store.directory.glob("*.tmp"))
    assert oct(store.directory.stat().st_mode & 0o777) == oct(0o775)


def test_async_commit(store: QueueStore) -> None:
    async def main() -> list[str]:
        async def one(i: int) -> str:
            msg = store.new_message("a@x", [f"r{i}@y"])
            msg.write(b"m%d" % i)
            return await msg.commit()

        return await asyncio.gather(*(one(i) for i in range(20)))

    ids = asyncio.run(main())
    assert store.queue_ids() == sorted(ids)
    for i, qid in enumerate(ids):
        assert store.load(qid).recipients[0].address == f"r{i}@y"
        with store.open_data(qid) as f:
            assert f.read() == b"m%d" % i


def test_large_message_written_in_chunks(store: QueueStore) -> None:
    msg = store.new_message("a@x", ["b@y"])
    digest = hashlib.sha256()
    for i in range(200):
        chunk = bytes([i % 251]) * 10_000
        digest.update(chunk)
        msg.write(chunk)
    qid = msg.commit_blocking()
    assert store.load(qid).size == 2_000_000
    with store.open_data(qid) as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest.hexdigest()


def test_abort_leaves_nothing(store: QueueStore) -> None:
    small = store.new_message("a@x", ["b@y"])
    small.write(b"data")  # small messages stay in memory until commit
    msg = store.new_message("a@x", ["b@y"])
    msg.write(b"d" * 100_000)
    assert list(store.directory.iterdir())  # the temp file exists meanwhile...
    assert list(store.list_entries()) == []  # ...but is not an entry
    small.abort()
    msg.abort()
    msg.abort()  # idempotent
    assert list(store.directory.iterdir()) == []
    with pytest.raises(QueueError):
        msg.write(b"more")


def test_commit_after_commit_is_refused(store: QueueStore) -> None:
    msg = store.new_message("a@x", ["b@y"])
    msg.commit_blocking()
    msg.abort()  # no-op once committed
    with pytest.raises(QueueError):
        msg.commit_blocking()
    assert len(store.queue_ids()) == 1


def test_commit_blocking_from_threads(tmp_path: Path) -> None:
    with GroupCommitter() as gc:
        store = QueueStore(tmp_path / "q", gc)
        results: list[str] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            for i in range(10):
                qid = _commit(store, b"%d-%d" % (k, i))
                with lock:
                    results.append(qid)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert gc.stats.requests == 80
    assert len(set(results)) == 80
    entries = list(store.list_entries())
    assert [e.queue_id for e in entries] == sorted(results)
    assert all(e.problem is None for e in entries)


def test_rejects_non_ids(store: QueueStore) -> None:
    with pytest.raises(QueueEntryNotFound):
        store.load("../etc/passwd")
    with pytest.raises(QueueEntryNotFound):
        store.load(new_queue_id())
    with pytest.raises(QueueEntryNotFound):
        store.open_data(new_queue_id())


# -- listing and damage ----------------------------------------------------------------------


def test_list_entries_reports_damage_without_raising(store: QueueStore) -> None:
    good = _commit(store, b"good")
    no_qf = _write_v1(store, b"no control")
    no_df = _write_v1(store, b"no data")
    corrupt = _commit(store, b"corrupt")
    bad_version = _write_v1(store, b"version")
    truncated = _write_v1(store, b"truncated data")
    cut_inline = _commit(store, b"cut short")
    in_progress = store.new_message("a@x", ["b@y"])
    in_progress.write(b"still receiving" * 10_000)

    store.path_for(no_qf, "qf").unlink()
    store.path_for(no_df, "df").unlink()
    store.path_for(corrupt, "qf").write_bytes(b'{"v": 1, "queue_id": ')
    doc = json.loads(store.path_for(bad_version, "qf").read_bytes())
    doc["v"] = 99
    store.path_for(bad_version, "qf").write_text(json.dumps(doc))
    store.path_for(truncated, "df").write_bytes(b"trunc")
    control = store.path_for(cut_inline, "qf")
    control.write_bytes(control.read_bytes()[:-5])
    (store.directory / "README").write_text("not a queue file")
    (store.directory / "junk.qf").write_text("not an id")

    entries = {e.queue_id: e for e in store.list_entries()}
    assert set(entries) == {good, no_qf, no_df, corrupt, bad_version, truncated, cut_inline}
    assert entries[good].problem is None and not entries[good].damaged
    assert entries[good].envelope is not None and entries[good].data_size == 4
    assert entries[no_qf].problem == "no control file" and entries[no_qf].envelope is None
    assert entries[no_qf].data_size == len(b"no control")
    assert entries[no_df].problem == "no data file"
    problem = entries[corrupt].problem
    assert problem is not None and problem.startswith("corrupt control file: ")
    assert entries[corrupt].envelope is None
    problem = entries[bad_version].problem
    assert problem is not None and "version" in problem
    assert entries[truncated].problem == "data file has 5 bytes, control file says 14"
    assert entries[cut_inline].problem == "control file holds 4 bytes of data, says 9"
    assert all(e.mtime > 0 for e in entries.values())

    # Damaged entries are left alone.
    assert store.path_for(no_qf, "df").exists()
    assert store.path_for(corrupt, "qf").exists()
    with pytest.raises(CorruptControlFile):
        store.load(corrupt)
    with pytest.raises(CorruptControlFile), store.claim(corrupt):
        pass
    in_progress.abort()


def test_clean_stale_removes_only_old_unlocked_temp_files(store: QueueStore) -> None:
    live = store.new_message("a@x", ["b@y"])
    live.write(b"x" * 70_000)
    dead = store.directory / f"{new_queue_id()}.df.tmp"
    dead.write_bytes(b"left by a crashed receiver")
    young = store.directory / f"{new_queue_id()}.qf.tmp"
    young.write_bytes(b"{}")
    old = time.time() - 3 * 86400
    for p in store.directory.glob("*.df.tmp"):
        os.utime(p, (old, old))

    assert store.clean_stale() == [dead]
    assert not dead.exists()
    assert young.exists()
    live.commit_blocking()  # the live one, though old, was kept (it is locked)
    assert store.load(live.queue_id).size == 70_000


# -- claim, update, remove -------------------------------------------------------------------


def test_claim_update_remove(store: QueueStore) -> None:
    qid = _commit(store)
    with store.claim(qid) as env:
        assert env is not None
        env.recipients[0].status = "deferred"
        env.recipients[0].attempts = 1
        env.recipients[0].last_error = "451 try later"
        env.recipients[0].next_attempt = 1234.5
        env.extra["note"] = "x"
        store.update(env)
        # Still exclusively ours after the control file was replaced (a second store in this
        # process, like another process, cannot take it: flock, not POSIX record locks).
        other_store = QueueStore(store.directory)
        with other_store.claim(qid) as other:
            assert other is None
        other_store.close()
        store.update(env)
    reloaded = store.load(qid)
    assert asdict(reloaded.recipients[0]) == {
        "address": "bob@example.net",
        "original": None,
        "status": "deferred",
        "attempts": 1,
        "last_error": "451 try later",
        "next_attempt": 1234.5,
        "kind": "address",
        "run_as": None,
    }
    assert reloaded.extra == {"note": "x"}
    assert not list(store.directory.glob("*.tmp"))

    with store.claim(qid) as env:
        assert env is not None
        store.remove(qid)
    assert list(store.directory.iterdir()) == []
    with store.claim(qid) as env:
        assert env is None


def test_update_requires_claim(store: QueueStore) -> None:
    qid = _commit(store)
    with pytest.raises(QueueError):
        store.update(store.load(qid))


def test_nested_claim_in_same_thread_is_an_error(store: QueueStore) -> None:
    qid = _commit(store)
    with store.claim(qid) as env:
        assert env is not None
        with pytest.raises(QueueError), store.claim(qid, blocking=True):
            pass


def test_remove_without_claim(store: QueueStore) -> None:
    qid = _commit(store)
    store.remove(qid)
    assert store.queue_ids() == []
    with pytest.raises(QueueEntryNotFound):
        store.remove(qid)
    damaged = _write_v1(store, b"data")
    store.path_for(damaged, "qf").unlink()
    store.remove(damaged)  # an entry without control file can still be removed
    assert list(store.directory.iterdir()) == []


_HOLDER = """
import sys
from pathlib import Path
from posthouse.mta.queue.store import QueueStore
store = QueueStore(Path(sys.argv[1]))
with store.claim(sys.argv[2]) as env:
    assert env is not None
    if sys.argv[3] == "update":
        env.extra["child"] = "yes"
        store.update(env)
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


def _start_holder(store: QueueStore, qid: str, mode: str = "hold") -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store.directory), qid, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "locked\n"
    return child


def _release(child: subprocess.Popen[str]) -> None:
    out, _ = child.communicate("go\n", timeout=60)
    assert out == "released\n"
    assert child.returncode == 0


def test_claim_is_exclusive_across_processes(store: QueueStore) -> None:
    qid = _commit(store)
    child = _start_holder(store, qid)
    try:
        with store.claim(qid) as env:
            assert env is None
        with pytest.raises(QueueEntryLocked):
            store.remove(qid)
    finally:
        _release(child)
    with store.claim(qid) as env:
        assert env is not None


def _blocked_waiters(path: Path) -> int:
    ino = os.stat(path).st_ino
    with open("/proc/locks") as f:
        return sum(1 for line in f if "->" in line and f":{ino} " in line)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs /proc/locks")
def test_blocking_claim_follows_replaced_control_file(store: QueueStore) -> None:
    """A waiter blocked on the old control file retries on the one update() put in place."""
    qid = _commit(store)
    got: list[Envelope | None] = []
    with store.claim(qid) as env:
        assert env is not None
        old_path = store.path_for(qid)
        waiter = threading.Thread(
            target=lambda: got.append(_claim_and_read(store, qid)), daemon=True
        )
        waiter.start()
        deadline = time.monotonic() + 30
        while _blocked_waiters(old_path) == 0:  # wait until it is queued on the lock
            assert time.monotonic() < deadline, "waiter never blocked"
            threading.Event().wait(0.001)
        env.extra["updated"] = "1"
        store.update(env)
    waiter.join(30)
    assert got and got[0] is not None
    assert got[0].extra == {"updated": "1"}


def _claim_and_read(store: QueueStore, qid: str) -> Envelope | None:
    with store.claim(qid, blocking=True) as env:
        return env


def test_claim_after_other_process_updated(store: QueueStore) -> None:
    qid = _commit(store)
    child = _start_holder(store, qid, "update")
    try:
        with store.claim(qid) as env:
            assert env is None
    finally:
        _release(child)
    with store.claim(qid) as env:
        assert env is not None and env.extra == {"child": "yes"}


# -- crash safety ----------------------------------------------------------------------------

_CRASHER = """
import asyncio, hashlib, os, sys
from pathlib import Path
from posthouse.mta.queue.store import QueueStore

async def main() -> None:
    store = QueueStore(Path(sys.argv[1]))
    i = 0
    while True:
        i += 1
        msg = store.new_message("crash@x", [f"r{i}@y"])
        digest = hashlib.sha256()
        for _ in range(1 + i % 7):
            chunk = os.urandom(3000 + i)
            digest.update(chunk)
            msg.write(chunk)
        qid = await msg.commit()
        sys.stdout.write(f"{qid} {digest.hexdigest()} {msg.size}\\n")
        sys.stdout.flush()

asyncio.run(main())
"""


def test_kill_9_never_loses_an_acknowledged_message(tmp_path: Path) -> None:
    qdir = tmp_path / "queue"
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, str(qdir)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged: list[tuple[str, str, int]] = []
    try:
        while len(acknowledged) < 60:
            line = child.stdout.readline()
            assert line, "child died early"
            qid, digest, size_text = line.split()
            acknowledged.append((qid, digest, int(size_text)))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(60)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    store = QueueStore(qdir)
    try:
        for qid, digest, nbytes in acknowledged:
            env = store.load(qid)
            assert env.size == nbytes
            with store.open_data(qid) as f:
                assert hashlib.sha256(f.read()).hexdigest() == digest
        entries = list(store.list_entries())  # never raises, whatever the kill interrupted
        acked = {a[0] for a in acknowledged}
        assert acked <= {e.queue_id for e in entries}
        assert all(e.problem is None for e in entries if e.queue_id in acked)
    finally:
        store.close()


def test_cancelled_commit_before_pickup_leaves_nothing(tmp_path: Path) -> None:
    async def main(store: QueueStore, gc: GroupCommitter) -> None:
        msg = store.new_message("a@x", ["b@y"])
        msg.write(b"never acknowledged")
        with gc.hold():
            task = asyncio.create_task(msg.commit())
            while gc.pending_count < 1:
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        msg.abort()  # what the SMTP server does; a no-op now

    with GroupCommitter() as gc:
        store = QueueStore(tmp_path / "q", gc)
        asyncio.run(main(store, gc))
    assert list(store.directory.iterdir()) == []


# -- the two layouts ---------------------------------------------------------------------------


def test_a_large_message_keeps_its_data_in_its_own_file(store: QueueStore) -> None:
    data = b"Subject: big\r\n\r\n" + b"x" * 100_000
    qid = _commit(store, data)
    envelope = store.load(qid)
    assert not envelope.inline and envelope.size == len(data)
    assert store.path_for(qid, "df").read_bytes() == data
    assert json.loads(store.path_for(qid, "qf").read_bytes())["v"] == 1
    with store.open_data(qid) as f:
        assert f.read() == data


@pytest.mark.parametrize("size", [10, 100_000])
def test_update_keeps_the_data_of_either_layout(store: QueueStore, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"end"
    qid = _commit(store, data)
    with store.claim(qid) as envelope:
        assert envelope is not None
        envelope.recipients[0].status = "deferred"
        envelope.recipients[0].last_error = "4.4.1 later"
        store.update(envelope)
        envelope.recipients[0].attempts = 2
        store.update(envelope)  # twice: the second copies from the first's new file
    again = store.load(qid)
    assert again.recipients[0].attempts == 2 and again.inline == (size < 65536)
    with store.open_data(qid) as f:
        assert f.read() == data
    assert [e.problem for e in store.list_entries()] == [None]


def test_inline_data_is_a_real_file_at_the_data(store: QueueStore) -> None:
    """Programs get the data as their standard input: the descriptor's offset must be right."""
    qid = _commit(store, b"line one\nline two\n")
    with store.open_data(qid) as f:
        result = subprocess.run(["cat"], stdin=f, capture_output=True, check=True, timeout=30)
    assert result.stdout == b"line one\nline two\n"


def test_version_1_entries_are_still_delivered(store: QueueStore) -> None:
    qid = _write_v1(store, b"old layout")
    with store.claim(qid) as envelope:
        assert envelope is not None and not envelope.inline
    with store.open_data(qid) as f:
        assert f.read() == b"old layout"
    store.remove(qid)
    assert list(store.directory.iterdir()) == []


def test_read_data_gives_the_data_of_either_layout(store: QueueStore) -> None:
    inline = _commit(store, b"small one")
    separate = _write_v1(store, b"old layout")
    assert store.read_data(inline) == b"small one"
    assert store.read_data(separate) == b"old layout"
    store.path_for(separate, "df").unlink()
    with pytest.raises(QueueEntryNotFound):
        store.read_data(separate)  # a version-1 control file holds no data
    with pytest.raises(QueueEntryNotFound):
        store.read_data(new_queue_id())


def test_inline_data_recognises_other_layouts_of_a_version_2_line() -> None:
    qid = new_queue_id()
    envelope = Envelope(qid, "a@x", [RecipientState("b@y")], 1.0, 4, inline=True)
    spaced = json.dumps(json.loads(envelope_to_json(envelope))).encode() + b"\n"
    assert inline_data(spaced + b"data", qid) == b"data"
    envelope.inline = False
    assert inline_data(envelope_to_json(envelope), qid) is None
