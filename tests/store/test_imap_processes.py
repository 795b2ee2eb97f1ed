"""Several processes on one IMAP store: changes are visible across processes, concurrent
appends get distinct increasing UIDs, a waiting session hears another process's delivery
within a second, and a process killed (-9) in the middle of appending loses nothing it
acknowledged and leaves every index readable."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import message, open_store, run

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 120.0


def worker(root: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.imap_worker", str(root), *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def test_append_in_one_process_seen_in_another(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    appender = worker(tmp_path, "append", "hansen", "3")
    out, _ = appender.communicate(timeout=DEADLINE)
    assert out.split() == ["1", "2", "3"]
    session = store.session("hansen")
    opened = run(session.select("INBOX"))
    assert list(opened.snapshot.uids) == [1, 2, 3]  # another process's commit is visible here

    marker = worker(tmp_path, "seen", "hansen", "2")
    assert marker.communicate(timeout=DEADLINE)[0].strip() == "done"
    metas = run(session.fetch(opened, UidSet.of([1, 2, 3])))
    assert ["\\Seen" in m.flags for m in metas] == [False, True, False]


def test_concurrent_appends_from_processes_get_distinct_increasing_uids(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    workers = [worker(tmp_path, "append", "hansen", "40", str(batch)) for batch in (1, 3)]
    here = store.session("hansen")
    mine = [uid for _ in range(20) for uid in run(here.append("INBOX", [message(0)])).uids]
    theirs = [[int(x) for x in w.communicate(timeout=DEADLINE)[0].split()] for w in workers]
    for uids in [mine, *theirs]:
        assert uids == sorted(uids)  # each writer's UIDs increase
    everything = mine + theirs[0] + theirs[1]
    assert sorted(everything) == list(range(1, 101))  # distinct, no gaps
    snapshot = run(here.select("INBOX")).snapshot
    assert list(snapshot.uids) == list(range(1, 101))
    assert snapshot.status.uidnext == 101


def test_a_waiting_process_hears_another_process_s_delivery_within_a_second(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    with worker(tmp_path, "wait", "hansen") as waiter:
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "ready"
        started = time.monotonic()
        run(store.deliver("hansen", [message(1)]))
        line = waiter.stdout.readline().strip()
        elapsed = time.monotonic() - started
        waiter.wait(timeout=DEADLINE)
    assert line == "woken"
    assert elapsed < 1.0, f"woken after {elapsed:.2f} s"


def _check_indexes(root: Path) -> None:
    """Every index and the mailboxes list open and are consistent; every row has its file."""
    with sqlite3.connect(root / "imap" / "mailboxes.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for index in (root / "partition-default").rglob("index.db"):
        with sqlite3.connect(index) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            for (uid,) in conn.execute("SELECT uid FROM messages"):
                assert (index.parent / f"{uid}.").is_file(), f"row {uid} without its file"


def test_kill_9_during_appends_loses_no_acknowledged_message(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    acknowledged: list[int] = []
    for kill_after in (7, 31, 58):  # different points in the append cycle
        with worker(tmp_path, "append", "hansen", "100000", "2") as appender:
            assert appender.stdout is not None
            for _ in range(kill_after):
                line = appender.stdout.readline()
                assert line, "the appender stopped early"
                acknowledged.append(int(line))
            os.kill(appender.pid, signal.SIGKILL)
            appender.wait(timeout=DEADLINE)
            acknowledged += [int(x) for x in appender.stdout.read().split()]
        _check_indexes(tmp_path)

        reopened = open_store(tmp_path)
        session = reopened.session("hansen")
        opened = run(session.select("INBOX"))
        present = set(opened.snapshot.uids)
        assert set(acknowledged) <= present
        for uid in acknowledged:
            content = run(session.read_message(opened, uid))
            assert content.startswith(b"From: bob@example.org\r\nSubject: message ")
        run(reopened.backend.close())
    # The store goes on: the next UID is above everything, even past orphan files.
    session = open_store(tmp_path).session("hansen")
    assert run(session.append("INBOX", [message(0)])).uids[0] > max(acknowledged)


def test_a_store_opened_before_fork_works_in_the_child(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    run(store.deliver("hansen", [message(1)]))  # the parent's pools have threads now
    pid = os.fork()
    if pid == 0:  # the child: as a worker process forked by the supervisor
        code = 1
        try:
            result = run(store.deliver("hansen", [message(2)]))
            code = 0 if result.uids == (2,) else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + DEADLINE
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hangs on the store")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    assert list(run(store.session("hansen").select("INBOX")).snapshot.uids) == [1, 2]


def test_kill_9_during_copy_and_expunge_keeps_every_acknowledged_copy(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    copies: list[tuple[int, int]] = []
    for kill_after in (6, 22):  # lines come in pairs, one pair per loop
        with worker(tmp_path, "churn", "hansen") as churner:
            assert churner.stdout is not None
            for _ in range(kill_after):
                line = churner.stdout.readline()
                assert line, "the worker stopped early"
                source, target = line.split()
                copies.append((int(source), int(target)))
            os.kill(churner.pid, signal.SIGKILL)
            churner.wait(timeout=DEADLINE)
        _check_indexes(tmp_path)
        session = open_store(tmp_path).session("hansen")
        trash = run(session.select("INBOX.Trash"))
        assert {target for _, target in copies} <= set(trash.snapshot.uids)
        for _, target in copies:
            assert run(session.read_message(trash, target)).startswith(b"From: bob@example.org")
        inbox = run(session.select("INBOX"))
        # the second of each pair was never expunged; the first may or may not be (killed)
        kept = {source for n, (source, _) in enumerate(copies) if n % 2 == 1}
        assert kept <= set(inbox.snapshot.uids)
