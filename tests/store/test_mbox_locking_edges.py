"""Edge cases of posthouse.store.mbox.locking that the mutation run found untested.

Spool file names, the backoff's bounds, waiting the whole timeout, the holder a timeout
names, races with other programs (simulated by wrapping the one system call they race
with), refusals that name the file and the reason, failures while creating a lock file or
a mailbox, and a forked child's in-process locks.  Synchronisation is by handshakes (a
child says "locked" over a pipe); no test sleeps to wait for something.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from posthouse.store.mbox import locking
from posthouse.store.mbox.locking import (
    LockMethod,
    MailboxLockTimeout,
    MailboxNameError,
    UnsafeMailboxError,
    locked_mailbox,
    lockfile_path,
    spool_file,
)

# A child that takes fcntl.lockf on ``length`` bytes from ``start``, reports "locked",
# and releases when it reads a byte from stdin.
RANGE_HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX, int(sys.argv[3]), int(sys.argv[2]))
    sys.stdout.write("locked\\n"); sys.stdout.flush()
    sys.stdin.read(1)
    """
)


class RangeHolder:
    """Another process holding ``fcntl.lockf`` on part (or all: length 0) of ``path``."""

    def __init__(self, path: Path, start: int = 0, length: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RANGE_HOLDER, str(path), str(start), str(length)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "locked\n"

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("x")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
        self.proc.stdout.close()


@pytest.fixture
def holders() -> Iterator[list[RangeHolder]]:
    started: list[RangeHolder] = []
    yield started
    for holder in started:
        holder.release()


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def fresh_lock(box: Path, text: bytes) -> Path:
    lock = lockfile_path(box)
    lock.write_bytes(text)
    return lock


def stale_lock(box: Path) -> Path:
    lock = fresh_lock(box, b"99999\n")
    past = time.time() - 1000
    os.utime(lock, (past, past))
    return lock


# --- spool file names -------------------------------------------------------------------


@pytest.mark.parametrize("user", ["a/b", "mail/../../etc", "a\x7fb", "a\x1fb", "a\nb", "x.lock"])
def test_spool_file_refuses_names_that_are_not_one_mailbox(tmp_path: Path, user: str) -> None:
    with pytest.raises(MailboxNameError):
        spool_file(tmp_path, user)


@pytest.mark.parametrize("user", ["john smith", "a b", "jos\u00e9", "x~1", "a.b"])
def test_spool_file_accepts_printable_names(tmp_path: Path, user: str) -> None:
    # Only control characters, "/", a leading "." or "-" and the lock suffix are refused.
    assert spool_file(tmp_path, user) == tmp_path / user


# --- waiting ------------------------------------------------------------------------------


def test_backoff_doubles_from_the_minimum_to_the_maximum_with_downward_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(locking, "_pause", pauses.append)
    backoff = locking._Backoff(time.monotonic() + 3600)
    for _ in range(40):
        assert backoff.wait()
    for k, pause in enumerate(pauses):
        # A freed lock is seen within _MAX_DELAY; a busy one is not polled in a tight loop.
        delay = min(locking._MIN_DELAY * 2**k, locking._MAX_DELAY)
        assert delay / 2 <= pause <= delay, (k, pause)


def test_a_backoff_past_its_deadline_does_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(locking, "_pause", pauses.append)
    assert not locking._Backoff(time.monotonic() - 1).wait()
    assert pauses == []


@pytest.mark.parametrize("method", [LockMethod.LOCKF, LockMethod.LOCKFILE])
def test_a_busy_lock_is_waited_for_the_whole_timeout(
    tmp_path: Path, method: LockMethod, holders: list[RangeHolder]
) -> None:
    box = tmp_path / "alice"
    if method is LockMethod.LOCKF:
        holders.append(RangeHolder(box))
    else:
        fresh_lock(box, b"4242\n")
    timeout = 2.5
    start = time.monotonic()
    with pytest.raises(MailboxLockTimeout), locked_mailbox(box, method, timeout=timeout):
        pytest.fail("took a busy lock")
    elapsed = time.monotonic() - start
    assert timeout <= elapsed < timeout + 60


# --- the holder a timeout names -----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "holder"),
    [
        (b"", None),
        (b"0\n", None),
        (b"-5\n", None),
        (b"1\n", 1),
        (b"  777 host.example\n", 777),
        (b"\xff\xfe garbage", None),
        (b"not a pid\n", None),
    ],
)
def test_dot_lock_timeout_names_the_pid_in_the_lock_file_if_any(
    tmp_path: Path, content: bytes, holder: int | None
) -> None:
    box = tmp_path / "alice"
    lock = fresh_lock(box, content)
    with (
        pytest.raises(MailboxLockTimeout) as info,
        locked_mailbox(box, LockMethod.LOCKFILE, timeout=0.05),
    ):
        pytest.fail("took a busy dot-lock")
    assert info.value.lock == "lockfile"
    assert info.value.holder == holder
    assert lock.read_bytes() == content


@pytest.mark.skipif(sys.platform != "linux", reason="F_GETLK layout is read on Linux only")
@pytest.mark.parametrize("start", [0, 10])
def test_lockf_timeout_names_a_holder_of_any_part_of_the_file(
    tmp_path: Path, start: int, holders: list[RangeHolder]
) -> None:
    box = tmp_path / "alice"
    box.write_bytes(b"x" * 100)
    holder = RangeHolder(box, start=start, length=1)
    holders.append(holder)
    with (
        pytest.raises(MailboxLockTimeout) as info,
        locked_mailbox(box, LockMethod.LOCKF, timeout=0.05),
    ):
        pytest.fail("took a lock another process holds part of")
    assert info.value.lock == "lockf"
    assert info.value.holder == holder.proc.pid


@pytest.mark.skipif(not hasattr(fcntl, "F_OFD_SETLK"), reason="no open file description locks")
def test_lockf_timeout_names_no_holder_for_an_open_file_description_lock(tmp_path: Path) -> None:
    # The kernel reports an OFD lock's owner as pid -1: there is no process to name.
    box = tmp_path / "alice"
    box.write_bytes(b"")
    fd = os.open(box, os.O_RDWR)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
        with (
            pytest.raises(MailboxLockTimeout) as info,
            locked_mailbox(box, LockMethod.LOCKF, timeout=0.05),
        ):
            pytest.fail("took a lock held through another open file description")
        assert info.value.lock == "lockf"
        assert info.value.holder is None
    finally:
        os.close(fd)


# --- stale dot-locks and races with other programs -----------------------------------------


def test_a_stale_dot_lock_is_broken_and_taken_without_waiting(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    lock = stale_lock(box)
    with locked_mailbox(box, LockMethod.LOCKFILE, timeout=0, stale_after=300):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert not lock.exists()


def test_a_dot_lock_that_is_gone_needs_no_breaking(tmp_path: Path) -> None:
    # Released between our failed create and the staleness check: try again at once.
    assert locking._break_if_stale(tmp_path / "alice.lock", 300.0)


def wrap_once(
    monkeypatch: pytest.MonkeyPatch, name: str, path: Path, race: Callable[..., Any]
) -> None:
    """Replace ``os.NAME``: its first call on ``path`` runs ``race(real, *args)`` instead."""
    real = getattr(os, name)
    armed = [True]

    def wrapper(target: Any, *args: Any, **kwargs: Any) -> Any:
        if armed[0] and os.fspath(target) == str(path):
            armed[0] = False
            return race(real, target, *args, **kwargs)
        return real(target, *args, **kwargs)

    monkeypatch.setattr(os, name, wrapper)


def test_another_breaker_removing_the_stale_lock_first_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "alice"
    lock = stale_lock(box)

    def other_breaker_wins(real: Callable[..., None], target: Any) -> None:
        real(target)  # the other breaker's unlink
        real(target)  # ours: FileNotFoundError

    wrap_once(monkeypatch, "unlink", lock, other_breaker_wins)
    with locked_mailbox(box, LockMethod.LOCKFILE, timeout=5, stale_after=300):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert not lock.exists()


def test_release_leaves_a_lock_made_after_ours_vanished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "alice"
    lock = lockfile_path(box)

    def broken_and_retaken(real: Callable[..., os.stat_result], target: Any) -> os.stat_result:
        os.unlink(lock)  # someone breaks our lock...
        try:
            return real(target)  # ...we find it gone...
        finally:
            lock.write_text("31337\n")  # ...and another program takes it before our unlink

    with locked_mailbox(box, LockMethod.LOCKFILE, stale_after=300):
        wrap_once(monkeypatch, "lstat", lock, broken_and_retaken)
    assert lock.read_text() == "31337\n"


def test_a_lock_file_whose_pid_cannot_be_written_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "alice"
    lock = lockfile_path(box)
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        with_path = ""
        with contextlib.suppress(OSError):
            with_path = os.readlink(f"/proc/self/fd/{fd}")
        if with_path == str(lock):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    before = open_descriptors()
    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError) as info, locked_mailbox(box, LockMethod.LOCKFILE, timeout=5):
        pytest.fail("locked without a lock file")
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert not lock.exists()
    assert open_descriptors() == before


# --- opening the mailbox ------------------------------------------------------------------


def test_a_mailbox_created_between_the_two_opens_is_appended_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "alice"

    def created_after_the_first_open(real: Callable[..., int], target: Any, *args: Any) -> int:
        try:
            return real(target, *args)  # FileNotFoundError
        finally:
            box.write_bytes(b"theirs\n")  # another writer creates it meanwhile

    wrap_once(monkeypatch, "open", box, created_after_the_first_open)
    with locked_mailbox(box, LockMethod.LOCKF, timeout=5) as f:
        f.write(b"new\n")
    assert box.read_bytes() == b"theirs\nnew\n"


def test_a_mailbox_that_keeps_vanishing_is_a_temporary_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "alice"
    real_open = os.open
    attempts = [0]

    def flickering(target: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(target) != str(box):
            return real_open(target, flags, *args, **kwargs)
        attempts[0] += 1
        if flags & os.O_EXCL:
            raise FileExistsError(errno.EEXIST, "File exists", str(box))
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(box))

    monkeypatch.setattr(os, "open", flickering)
    with pytest.raises(OSError) as info, locked_mailbox(box, LockMethod.LOCKF, timeout=5):
        pytest.fail("opened a mailbox that is never there")
    monkeypatch.undo()
    assert not isinstance(info.value, UnsafeMailboxError)
    assert info.value.errno == errno.EAGAIN
    assert info.value.filename == str(box)
    assert 2 < attempts[0] < 100  # retried, and bounded


def test_a_new_mailbox_that_cannot_be_given_away_is_not_leaked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "alice"

    def fchown(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    before = open_descriptors()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "fchown", fchown)
    with (
        pytest.raises(PermissionError),
        locked_mailbox(box, LockMethod.LOCKF, create_owner=(4321, 4321)),
    ):
        pytest.fail("handed over a mailbox its owner did not get")
    monkeypatch.undo()
    assert open_descriptors() == before


def test_what_is_written_is_in_the_file_before_the_block_ends(tmp_path: Path) -> None:
    # Unbuffered: nothing lingers in a user-space buffer past a failure.
    box = tmp_path / "alice"
    with locked_mailbox(box, LockMethod.LOCKF) as f:
        f.write(b"From a@b Thu Nov 26 00:01:29 2026\n")
        assert box.read_bytes() == b"From a@b Thu Nov 26 00:01:29 2026\n"


# --- refusals name the mailbox and the reason ---------------------------------------------


def _dot_lock_name(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    return tmp_path / "bob.lock", {}


def _symlink(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    (tmp_path / "target").write_bytes(b"")
    (tmp_path / "alice").symlink_to(tmp_path / "target")
    return tmp_path / "alice", {}


def _fifo(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    os.mkfifo(tmp_path / "alice")
    return tmp_path / "alice", {}


def _hard_link(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    (tmp_path / "target").write_bytes(b"")
    os.link(tmp_path / "target", tmp_path / "alice")
    return tmp_path / "alice", {}


def _foreign_owner(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    (tmp_path / "alice").write_bytes(b"")
    return tmp_path / "alice", {"allowed_owners": {os.getuid() + 4321}}


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (_dot_lock_name, errno.EINVAL),
        (_symlink, errno.ELOOP),
        (_fifo, errno.EINVAL),
        (_hard_link, errno.EMLINK),
        (_foreign_owner, errno.EPERM),
    ],
)
def test_a_refused_mailbox_error_names_the_file_and_the_reason(
    tmp_path: Path,
    make: Callable[[Path], tuple[Path, dict[str, Any]]],
    code: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    box, options = make(tmp_path)
    with (
        pytest.raises(UnsafeMailboxError) as info,
        locked_mailbox(box, LockMethod.LOCKF, **options),
    ):
        pytest.fail("opened an unsafe mailbox")
    assert info.value.errno == code
    assert info.value.filename == str(box)
    assert isinstance(info.value.strerror, str) and info.value.strerror
    assert str(box) in caplog.text


# --- fork -----------------------------------------------------------------------------------

# The parent holds a mailbox's in-process lock when it forks; the child does not inherit it
# (it waits for the parent's lockf instead, a lock between processes) and exits 0 when its
# attempt times out on "lockf"; 1 on "process", 2 on any other error, 3 if it got the lock.
FORK_CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from posthouse.store.mbox.locking import LockMethod, MailboxLockTimeout, locked_mailbox

    box = Path(sys.argv[1])
    with locked_mailbox(box, LockMethod.LOCKF):
        pid = os.fork()
        if pid == 0:
            try:
                with locked_mailbox(box, LockMethod.LOCKF, timeout=0.2):
                    os._exit(3)
            except MailboxLockTimeout as exc:
                os._exit(0 if exc.lock == "lockf" else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_does_not_inherit_in_process_locks(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORK_CHILD, str(tmp_path / "alice")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "0", result.stderr


# --- holders in other pid namespaces ---------------------------------------------------------

# Tries the lockf once (it is busy) and prints the holder the timeout names.
HOLDER_CHECK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from posthouse.store.mbox.locking import LockMethod, MailboxLockTimeout, locked_mailbox

    try:
        with locked_mailbox(Path(sys.argv[1]), LockMethod.LOCKF, timeout=0.05):
            print("got the lock")
    except MailboxLockTimeout as exc:
        print(exc.holder)
    """
)

# Pid 1 of a new pid namespace: holds the lockf and runs HOLDER_CHECK as its child.
PID_ONE_HOLDER = textwrap.dedent(
    """
    import fcntl, os, subprocess, sys
    assert os.getpid() == 1
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    check = subprocess.run([sys.executable, "-c", sys.argv[2], sys.argv[1]],
                           capture_output=True, text=True, check=True)
    print(check.stdout.strip())
    """
)

UNSHARE = shutil.which("unshare")


def in_new_pid_namespace(*argv: str) -> list[str]:
    return [str(UNSHARE), "--pid", "--fork", "--kill-child", *argv]


def pid_namespaces_available() -> bool:
    if sys.platform != "linux" or UNSHARE is None:
        return False
    probe = subprocess.run(in_new_pid_namespace("true"), capture_output=True, timeout=60)
    return probe.returncode == 0


needs_pid_namespaces = pytest.mark.skipif(
    not pid_namespaces_available(), reason="cannot create pid namespaces (needs root)"
)


@needs_pid_namespaces
def test_lockf_timeout_names_pid_1_as_the_holder(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    result = subprocess.run(
        in_new_pid_namespace(sys.executable, "-c", PID_ONE_HOLDER, str(box), HOLDER_CHECK),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "1", result.stderr


@needs_pid_namespaces
def test_lockf_timeout_names_no_holder_outside_our_pid_namespace(
    tmp_path: Path, holders: list[RangeHolder]
) -> None:
    # The kernel reports a holder we cannot see (another namespace) as pid 0: unknown.
    box = tmp_path / "alice"
    holders.append(RangeHolder(box))
    result = subprocess.run(
        in_new_pid_namespace(sys.executable, "-c", HOLDER_CHECK, str(box)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "None", result.stderr


# --- a foreign lock file that never ends ------------------------------------------------------

# Under a 1 GiB address-space limit (so a read without a bound fails here, not the machine),
# times out on a dot-lock that is a symlink to /dev/zero and prints the holder it names.
ENDLESS_LOCK_CHECK = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from pathlib import Path
    from posthouse.store.mbox.locking import LockMethod, MailboxLockTimeout, locked_mailbox

    try:
        with locked_mailbox(Path(sys.argv[1]), LockMethod.LOCKFILE, timeout=0.05):
            print("got the lock")
    except MailboxLockTimeout as exc:
        print(exc.holder)
    """
)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_dot_lock_that_never_ends_is_read_only_in_part(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    lockfile_path(box).symlink_to("/dev/zero")
    result = subprocess.run(
        [sys.executable, "-c", ENDLESS_LOCK_CHECK, str(box)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "None"), result.stderr
    assert lockfile_path(box).is_symlink()  # fresh (the link is new): not broken


def test_a_fifo_planted_as_the_dot_lock_is_a_busy_lock_not_a_hang(tmp_path: Path) -> None:
    # Anyone who may create files in the spool directory may plant NAME.lock as a FIFO:
    # reading the holder's pid from it must not block the delivery or the login for ever.
    box = tmp_path / "alice"
    os.mkfifo(lockfile_path(box))
    result = subprocess.run(
        [sys.executable, "-c", ENDLESS_LOCK_CHECK, str(box)],
        capture_output=True,
        text=True,
        timeout=60,  # the old code never returned: the run fails here instead of hanging
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "None"), result.stderr
    assert stat.S_ISFIFO(os.lstat(lockfile_path(box)).st_mode)  # fresh: left where it is
