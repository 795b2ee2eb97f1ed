"""Tests for posthouse.store.mbox.locking: lockf and dot-lock locking, interoperating with
dotlockfile (liblockfile), lockfile (procmail) and plain fcntl users in other processes.

Synchronisation is by handshakes only: a child that holds a lock says so over a pipe; a
waiting writer is observed through the backoff seam ``locking._pause``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posthouse.store.mbox import locking
from posthouse.store.mbox.append import MboxMessage, append_messages
from posthouse.store.mbox.locking import (
    LockMethod,
    MailboxLockTimeout,
    UnsafeMailboxError,
    locked_mailbox,
    lockfile_path,
)

DOTLOCKFILE = shutil.which("dotlockfile")
PROCMAIL_LOCKFILE = shutil.which("lockfile")
needs_dotlockfile = pytest.mark.skipif(DOTLOCKFILE is None, reason="liblockfile-bin missing")
needs_lockfile = pytest.mark.skipif(PROCMAIL_LOCKFILE is None, reason="procmail missing")

WHEN = datetime(2026, 11, 26, 0, 1, 29, tzinfo=UTC)

# A child that takes fcntl.lockf on the file, reports "locked", and releases when it
# reads a byte from stdin.
LOCKF_HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    sys.stdout.write("locked\\n"); sys.stdout.flush()
    sys.stdin.read(1)
    fcntl.lockf(fd, fcntl.LOCK_UN)
    os.close(fd)
    """
)

# A child that tries a non-blocking lockf once and prints "busy" or "free".
LOCKF_PROBE = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("busy")
    else:
        print("free")
    """
)


def probe_lockf(path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", LOCKF_PROBE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


class LockfHolder:
    """A separate process holding fcntl.lockf on ``path`` until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCKF_HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "locked\n"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("x")
            self.proc.stdin.close()
            assert self.proc.wait(timeout=30) == 0
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def lockf_holder() -> Iterator[type[LockfHolder]]:
    holders: list[LockfHolder] = []

    class Tracked(LockfHolder):
        def __init__(self, path: Path) -> None:
            super().__init__(path)
            holders.append(self)

    yield Tracked
    for holder in holders:
        holder.release()


class PauseSpy:
    """Replaces locking._pause: counts back-offs and lets a test wait for the n-th one."""

    def __init__(self, on_pause: Callable[[], object] | None = None) -> None:
        self.count = 0
        self.cond = threading.Condition()
        self.observations: list[object] = []
        self._on_pause = on_pause

    def __call__(self, seconds: float) -> None:
        if self._on_pause is not None:
            self.observations.append(self._on_pause())
        with self.cond:
            self.count += 1
            self.cond.notify_all()
        time.sleep(min(seconds, 0.01))

    def wait_for(self, n: int, timeout: float = 30.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= n, timeout=timeout)


def start_writer(path: Path, method: LockMethod) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            append_messages(
                path,
                [MboxMessage("a@example.org", b"Subject: waited\n\nbody\n", WHEN)],
                method=method,
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


# --- basic behaviour ---------------------------------------------------------------------


@pytest.mark.parametrize("method", list(LockMethod))
def test_creates_mailbox_0600_and_yields_append_file(tmp_path: Path, method: LockMethod) -> None:
    box = tmp_path / "alice"
    with locked_mailbox(box, method) as f:
        assert (box.stat().st_mode & 0o777) == 0o600
        f.write(b"one\n")
        f.seek(0)
        f.write(b"two\n")  # O_APPEND: still goes to the end
        assert lockfile_path(box).exists() == method.uses_lockfile
    assert box.read_bytes() == b"one\ntwo\n"
    assert not lockfile_path(box).exists()


def test_lockfile_contains_our_pid_with_mode_0644(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    old = os.umask(0o022)
    try:
        with locked_mailbox(box, LockMethod.LOCKFILE):
            lock = lockfile_path(box)
            assert lock.read_text() == f"{os.getpid()}\n"
            assert (lock.stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(old)


@pytest.mark.parametrize("method", list(LockMethod))
def test_exception_in_block_releases_everything(tmp_path: Path, method: LockMethod) -> None:
    box = tmp_path / "alice"
    with pytest.raises(RuntimeError, match="boom"), locked_mailbox(box, method):
        raise RuntimeError("boom")
    assert not lockfile_path(box).exists()
    assert probe_lockf(box) == "free"
    with locked_mailbox(box, method, timeout=0.5):
        pass


def test_release_leaves_a_lockfile_that_is_no_longer_ours(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    lock = lockfile_path(box)
    with locked_mailbox(box, LockMethod.LOCKFILE):
        lock.unlink()  # somebody broke our lock and took their own
        lock.write_text("4242\n")
    assert lock.read_text() == "4242\n"


@pytest.mark.parametrize("method", list(LockMethod))
def test_threads_of_one_process_exclude_each_other(tmp_path: Path, method: LockMethod) -> None:
    box = tmp_path / "alice"
    with locked_mailbox(box, method):
        outcome: list[object] = []

        def other() -> None:
            try:
                with locked_mailbox(box, method, timeout=0.1):
                    outcome.append("got it")
            except MailboxLockTimeout as exc:
                outcome.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(outcome) == 1
        assert isinstance(outcome[0], MailboxLockTimeout)
        assert outcome[0].lock == "process"
        # the failed sibling must not have dropped our process's lockf lock
        if method.uses_lockf:
            assert probe_lockf(box) == "busy"
    with locked_mailbox(box, method, timeout=0.5):
        pass
    assert locking._registry == {}


# --- what other programs see while we hold the lock ----------------------------------------


@pytest.mark.parametrize("method", [LockMethod.LOCKF, LockMethod.BOTH])
def test_our_lockf_is_seen_by_other_processes(tmp_path: Path, method: LockMethod) -> None:
    box = tmp_path / "alice"
    with locked_mailbox(box, method):
        assert probe_lockf(box) == "busy"
    assert probe_lockf(box) == "free"


@needs_dotlockfile
@pytest.mark.parametrize("method", [LockMethod.LOCKFILE, LockMethod.BOTH])
def test_dotlockfile_cannot_take_our_lock(tmp_path: Path, method: LockMethod) -> None:
    box = tmp_path / "alice"
    lock = lockfile_path(box)
    assert DOTLOCKFILE is not None
    with locked_mailbox(box, method):
        held = subprocess.run([DOTLOCKFILE, "-r", "0", "-l", str(lock)], capture_output=True)
        assert held.returncode != 0
        assert lock.read_text() == f"{os.getpid()}\n"
    free = subprocess.run([DOTLOCKFILE, "-r", "0", "-l", str(lock)], capture_output=True)
    assert free.returncode == 0
    assert lock.exists()


@needs_lockfile
def test_procmail_lockfile_cannot_take_our_lock(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    lock = lockfile_path(box)
    assert PROCMAIL_LOCKFILE is not None
    with locked_mailbox(box, LockMethod.LOCKFILE):
        held = subprocess.run([PROCMAIL_LOCKFILE, "-r0", str(lock)], capture_output=True)
        assert held.returncode != 0
    free = subprocess.run([PROCMAIL_LOCKFILE, "-r0", str(lock)], capture_output=True)
    assert free.returncode == 0


# --- we wait for other programs' locks -------------------------------------------------------


def _assert_waits_then_completes(
    box: Path,
    method: LockMethod,
    monkeypatch: pytest.MonkeyPatch,
    release: Callable[[], None],
) -> PauseSpy:
    before = box.read_bytes() if box.exists() else b""
    lock = lockfile_path(box)
    spy = PauseSpy(on_pause=lambda: lock.read_text() if lock.exists() else None)
    monkeypatch.setattr(locking, "_pause", spy)
    thread, errors = start_writer(box, method)
    # The writer found the lock busy three times and is still waiting.
    assert spy.wait_for(3)
    assert thread.is_alive()
    assert (box.read_bytes() if box.exists() else b"") == before
    release()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    after = box.read_bytes()
    assert after.startswith(before)
    assert after.endswith(b"Subject: waited\n\nbody\n\n")
    return spy


@needs_dotlockfile
@pytest.mark.parametrize("method", [LockMethod.LOCKFILE, LockMethod.BOTH])
def test_waits_for_dotlockfile(
    tmp_path: Path, method: LockMethod, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DOTLOCKFILE is not None
    box = tmp_path / "alice"
    box.write_bytes(b"From x Thu Nov 26 00:01:29 2026\n\nold\n\n")
    lock = lockfile_path(box)
    subprocess.run([DOTLOCKFILE, "-p", "-l", str(lock)], check=True)
    assert lock.exists()

    def release() -> None:
        subprocess.run([DOTLOCKFILE, "-u", str(lock)], check=True)

    _assert_waits_then_completes(box, method, monkeypatch, release)
    assert not lock.exists()


@needs_lockfile
def test_waits_for_procmail_lockfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert PROCMAIL_LOCKFILE is not None
    box = tmp_path / "alice"
    lock = lockfile_path(box)
    subprocess.run([PROCMAIL_LOCKFILE, "-r0", str(lock)], check=True)
    assert lock.exists()

    def release() -> None:
        os.unlink(lock)  # procmail's convention: rm -f

    _assert_waits_then_completes(box, LockMethod.LOCKFILE, monkeypatch, release)
    assert not lock.exists()


@pytest.mark.parametrize("method", [LockMethod.LOCKF, LockMethod.BOTH])
def test_waits_for_fcntl_lockf_in_another_process(
    tmp_path: Path,
    method: LockMethod,
    monkeypatch: pytest.MonkeyPatch,
    lockf_holder: type[LockfHolder],
) -> None:
    box = tmp_path / "alice"
    holder = lockf_holder(box)
    spy = _assert_waits_then_completes(box, method, monkeypatch, holder.release)
    if method is LockMethod.BOTH:
        # dot-lock is taken first: it was ours all the time we waited for lockf
        assert spy.observations[:3] == [f"{os.getpid()}\n"] * 3
    else:
        assert spy.observations[:3] == [None] * 3


# --- stale lock files and timeouts ----------------------------------------------------------


def test_stale_lockfile_is_broken(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    lock = lockfile_path(box)
    lock.write_text("99999\n")
    past = time.time() - 1000
    os.utime(lock, (past, past))
    with locked_mailbox(box, LockMethod.LOCKFILE, timeout=1.0, stale_after=300):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert not lock.exists()


@pytest.mark.parametrize("method", [LockMethod.LOCKFILE, LockMethod.BOTH])
def test_fresh_lockfile_times_out_and_leaves_mailbox_untouched(
    tmp_path: Path, method: LockMethod
) -> None:
    box = tmp_path / "alice"
    original = b"From x Thu Nov 26 00:01:29 2026\n\nold\n\n"
    box.write_bytes(original)
    box.chmod(0o600)
    stamp = box.stat().st_mtime_ns
    lock = lockfile_path(box)
    lock.write_text("4321\n")
    past = time.time() - 200  # old, but younger than stale_after
    os.utime(lock, (past, past))
    with pytest.raises(MailboxLockTimeout) as info:
        append_messages(
            box,
            [MboxMessage("a@b", b"x\n", WHEN)],
            method=method,
            timeout=0.2,
            stale_after=300,
        )
    assert info.value.path == box
    assert info.value.lock == "lockfile"
    assert info.value.holder == 4321
    assert "4321" in str(info.value)
    assert box.read_bytes() == original
    assert box.stat().st_mtime_ns == stamp
    assert lock.read_text() == "4321\n"  # neither broken nor removed


def test_lockf_timeout_names_the_holder(tmp_path: Path, lockf_holder: type[LockfHolder]) -> None:
    box = tmp_path / "alice"
    box.write_bytes(b"")
    holder = lockf_holder(box)
    with pytest.raises(MailboxLockTimeout) as info:
        append_messages(
            box, [MboxMessage("a@b", b"x\n", WHEN)], method=LockMethod.LOCKF, timeout=0.2
        )
    assert info.value.lock == "lockf"
    if sys.platform == "linux":
        assert info.value.holder == holder.proc.pid
    assert box.read_bytes() == b""


def test_both_timeout_on_lockf_removes_our_dotlock(
    tmp_path: Path, lockf_holder: type[LockfHolder]
) -> None:
    box = tmp_path / "alice"
    lockf_holder(box)
    with pytest.raises(MailboxLockTimeout), locked_mailbox(box, LockMethod.BOTH, timeout=0.2):
        pytest.fail("must not get the lock")
    assert not lockfile_path(box).exists()


def test_keepalive_refreshes_lockfile_mtime_while_held(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    lock = lockfile_path(box)
    with locked_mailbox(box, LockMethod.LOCKFILE, stale_after=0.3):
        past = time.time() - 1000
        os.utime(lock, (past, past))
        deadline = time.monotonic() + 30
        while lock.stat().st_mtime < past + 500 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lock.stat().st_mtime > past + 500
    assert not lock.exists()


# --- unsafe mailboxes ---------------------------------------------------------------------


def test_symlinked_mailbox_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"precious\n")
    box = tmp_path / "alice"
    box.symlink_to(target)
    with pytest.raises(UnsafeMailboxError), locked_mailbox(box, LockMethod.LOCKF):
        pytest.fail("opened a symlink")
    assert target.read_bytes() == b"precious\n"


def test_hard_linked_mailbox_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"precious\n")
    box = tmp_path / "alice"
    os.link(target, box)
    with pytest.raises(UnsafeMailboxError), locked_mailbox(box, LockMethod.BOTH):
        pytest.fail("opened a hard link")
    assert target.read_bytes() == b"precious\n"
    assert not lockfile_path(box).exists()


def test_fifo_mailbox_is_refused(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    os.mkfifo(box)
    with pytest.raises(UnsafeMailboxError), locked_mailbox(box, LockMethod.LOCKF):
        pytest.fail("opened a fifo")
