"""Mailbox locking for mbox spool files: POSIX ``lockf`` record locks and ``.lock`` dot-locks.

This module owns *how* a mailbox file is opened and locked so that posthouse interoperates
with every other program that touches a Unix mail spool (procmail, Postfix ``local``,
``mail.local``, mutt, ``dotlockfile``/``lockfile``):

* :attr:`LockMethod.LOCKF` -- a POSIX record lock over the whole file, taken with
  ``fcntl.lockf(fd, LOCK_EX | LOCK_NB)`` on the open mailbox and polled with bounded
  exponential backoff until the deadline.  These are the same kernel locks as
  ``fcntl(F_SETLK)``, so they conflict with procmail/Postfix/mutt fcntl users.
* :attr:`LockMethod.LOCKFILE` -- the classic ``PATH.lock`` convention: the lock file is
  created with ``O_CREAT|O_EXCL`` (mode 0644) and holds our pid.  A lock file whose mtime
  is older than ``stale_after`` seconds is considered abandoned and removed.  While we
  hold one, a keep-alive thread refreshes its mtime so a long write is never mistaken
  for a stale lock.  On release the file is removed only if it is still ours (same
  device and inode as the one we created, still holding our pid).
* :attr:`LockMethod.BOTH` -- dot-lock first, then ``lockf`` (procmail/liblockfile order);
  released in reverse order.

Two process-level details the kernel does not handle for us:

* ``lockf`` locks belong to the *process*, and closing *any* descriptor of the file drops
  them.  So every :func:`locked_mailbox` call also takes an in-process lock keyed by the
  mailbox's real path *before opening the file*; threads of one process therefore
  serialise among themselves and never close a descriptor under a sibling's lock.
* The mailbox is opened with ``O_NOFOLLOW`` and must be a regular file with a single
  link (the usual defence against symlink/hard-link tricks in a shared spool directory);
  otherwise :class:`UnsafeMailboxError` is raised (and logged).  When the caller names
  the acceptable owners, a mailbox owned by anyone else is refused the same way (the
  mail.local rule; see :func:`posthouse.store.mbox.append.append_messages`).  A new mailbox
  is created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` and handed to its user with ``fchown`` on
  that descriptor, so root never changes the owner of a path someone else could swap.
* A mailbox name ending in ``.lock`` is refused: ``NAME.lock`` is the dot-lock of mailbox
  ``NAME`` (the name procmail and dotlockfile use, so it cannot move), and a user called
  ``NAME.lock`` must never be able to hold, break or read it.  :func:`spool_file` is the
  one place a user name becomes a spool file name, and refuses such names up front
  (:class:`MailboxNameError`).

:class:`LockSettings` is how mailboxes are locked (method, timeout, stale lock age): built
once from the configuration and shared by delivery and the POP3 maildrop, which must lock
the same way.

Residual race (shared with procmail and liblockfile): breaking a stale lock file is a
check-then-unlink, so two breakers racing can remove a lock that a third party created in
between.  Lock files are broken only after ``stale_after`` seconds (default 300, the
liblockfile figure), which keeps that window to abandoned locks.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import logging
import os
import random
import stat
import struct
import sys
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "DEFAULT_STALE_AFTER",
    "DEFAULT_TIMEOUT",
    "LOCK_SUFFIX",
    "LockMethod",
    "LockSettings",
    "MailboxLockTimeout",
    "MailboxNameError",
    "UnsafeMailboxError",
    "locked_mailbox",
    "lockfile_path",
    "spool_file",
]

log = logging.getLogger("posthouse.store.mbox.locking")

LOCK_SUFFIX = ".lock"
#: Seconds to wait for all of a mailbox's locks.
DEFAULT_TIMEOUT = 30.0
#: Age in seconds after which a dot-lock is taken to be abandoned (liblockfile's figure).
DEFAULT_STALE_AFTER = 300.0
_MIN_DELAY = 0.0005  # a writer holds a mailbox for one append and its fsync: about a millisecond
_MAX_DELAY = 0.25


class LockMethod(enum.Enum):
    """Which locks to take on a mailbox (the worksheet choice)."""

    LOCKF = "lockf"
    LOCKFILE = "lockfile"
    BOTH = "both"

    @property
    def uses_lockf(self) -> bool:
        return self in (LockMethod.LOCKF, LockMethod.BOTH)

    @property
    def uses_lockfile(self) -> bool:
        return self in (LockMethod.LOCKFILE, LockMethod.BOTH)


@dataclass(frozen=True)
class LockSettings:
    """How mailboxes are locked: the method, the wait for the locks, when a dot-lock is stale."""

    method: LockMethod
    timeout: float = DEFAULT_TIMEOUT
    stale_after: float = DEFAULT_STALE_AFTER


class MailboxLockTimeout(Exception):
    """The mailbox could not be locked before the deadline: a *temporary* failure.

    ``path`` is the mailbox, ``lock`` names the lock that was busy (``"lockf"``,
    ``"lockfile"`` or ``"process"`` for another thread of this process), and ``holder``
    is the pid of the holder when known (from the lock file's contents or ``F_GETLK``).
    """

    def __init__(self, path: Path, lock: str, holder: int | None = None) -> None:
        self.path = path
        self.lock = lock
        self.holder = holder
        who = f" held by pid {holder}" if holder is not None else ""
        super().__init__(f"timed out waiting for {lock} lock on {path}{who}")


class UnsafeMailboxError(OSError):
    """The mailbox path is a symlink, not a regular file, or has several hard links."""


class MailboxNameError(ValueError):
    """A user name that cannot be a spool file name: a permanent failure."""


def lockfile_path(path: Path) -> Path:
    """The dot-lock belonging to mailbox ``path``: ``PATH.lock``."""
    return path.with_name(path.name + LOCK_SUFFIX)


def spool_file(spool_dir: Path, user: str) -> Path:
    """``spool_dir/user``, or :class:`MailboxNameError` for a name that cannot be a
    mailbox: empty, ``.``/``..``, containing ``/`` or a control character, starting with
    ``.`` or ``-``, or ending in ``.lock``."""
    if (
        not user
        or user.startswith((".", "-"))
        or "/" in user
        or any(ord(char) < 0x20 or ord(char) == 0x7F for char in user)
    ):
        raise MailboxNameError(f"{user!r} cannot be a mailbox name")
    if user.endswith(LOCK_SUFFIX):
        raise MailboxNameError(
            f"{user!r} cannot be a mailbox name: it ends in {LOCK_SUFFIX}, the lock suffix"
        )
    return spool_dir / user


def _pause(seconds: float) -> None:
    """Back off between lock attempts (a seam for tests to observe that we are waiting)."""
    time.sleep(seconds)


class _Backoff:
    """Bounded, jittered exponential backoff towards a fixed deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.delay = _MIN_DELAY

    def wait(self) -> bool:
        """Sleep before the next attempt; False when the deadline has passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return False
        _pause(min(remaining, self.delay * random.uniform(0.5, 1.0)))
        self.delay = min(self.delay * 2, _MAX_DELAY)
        return True


# --- in-process serialisation ------------------------------------------------------------


class _PathLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


_registry_guard = threading.Lock()
_registry: dict[str, _PathLock] = {}


def _reset_registry_after_fork() -> None:
    global _registry_guard
    _registry_guard = threading.Lock()
    _registry.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_registry_after_fork)


@contextmanager
def _process_lock(path: Path, deadline: float) -> Iterator[None]:
    key = os.path.realpath(path)
    with _registry_guard:
        entry = _registry.setdefault(key, _PathLock())
        entry.users += 1
    try:
        if not entry.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise MailboxLockTimeout(path, "process", os.getpid())
        try:
            yield
        finally:
            entry.lock.release()
    finally:
        with _registry_guard:
            entry.users -= 1
            if entry.users == 0:
                _registry.pop(key, None)


# --- dot-lock (PATH.lock) ----------------------------------------------------------------


def _read_pid(lock: Path) -> int | None:
    """The pid written in a dot-lock, if it is a regular file holding one.

    Anyone who may create files in the spool directory may plant ``NAME.lock``: it is
    opened without following a symlink and without blocking (a FIFO would otherwise hang
    the delivery or login that reads it), and only a regular file is read."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, 64).decode("ascii", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        pid = int(text.split()[0]) if text else 0
    except ValueError:
        return None
    return pid if pid > 0 else None


def _break_if_stale(lock: Path, stale_after: float) -> bool:
    """Remove ``lock`` if its mtime is more than ``stale_after`` seconds old."""
    try:
        st = os.lstat(lock)
    except FileNotFoundError:
        return True
    if time.time() - st.st_mtime <= stale_after:
        return False
    with suppress(FileNotFoundError):
        os.unlink(lock)
    return True


def _try_create_lockfile(lock: Path) -> tuple[int, int] | None:
    """Create the lock file exclusively; return its (dev, ino), or None if it exists."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return None
    try:
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        os.unlink(lock)
        raise
    os.close(fd)
    return st.st_dev, st.st_ino


def _still_ours(lock: Path, ident: tuple[int, int]) -> bool:
    """Same device and inode as the file we created, and still holding our pid.

    The pid check matters because a file system may hand a just-freed inode number to
    the next file created, e.g. a lock file somebody made after breaking ours.
    """
    try:
        st = os.lstat(lock)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == ident and _read_pid(lock) == os.getpid()


def _keepalive(lock: Path, ident: tuple[int, int], interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        if not _still_ours(lock, ident):
            return
        try:
            os.utime(lock)
        except OSError:
            return


@contextmanager
def _dot_lock(path: Path, deadline: float, stale_after: float) -> Iterator[None]:
    lock = lockfile_path(path)
    backoff = _Backoff(deadline)
    while True:
        ident = _try_create_lockfile(lock)
        if ident is not None:
            break
        if _break_if_stale(lock, stale_after):
            continue
        if not backoff.wait():
            raise MailboxLockTimeout(path, "lockfile", _read_pid(lock))
    stop = threading.Event()
    keeper: threading.Thread | None = None
    if 0 < stale_after < float("inf"):
        keeper = threading.Thread(
            target=_keepalive,
            args=(lock, ident, max(stale_after / 3, 0.05), stop),
            name=f"dotlock-keepalive {lock}",
            daemon=True,
        )
        keeper.start()
    try:
        yield
    finally:
        stop.set()
        if keeper is not None:
            keeper.join()
        if _still_ours(lock, ident):
            with suppress(FileNotFoundError):
                os.unlink(lock)


# --- lockf -------------------------------------------------------------------------------


def _lockf_holder(fd: int) -> int | None:
    """The pid holding a conflicting record lock, via F_GETLK (Linux layout only)."""
    if sys.platform != "linux":
        return None
    fmt = "hhqqi4x"  # struct flock: l_type, l_whence, l_start, l_len, l_pid (+ padding)
    try:
        query = struct.pack(fmt, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        l_type, _, _, _, l_pid = struct.unpack(fmt, answer)
    except (OSError, struct.error):
        return None
    if l_type == fcntl.F_UNLCK or l_pid <= 0:
        return None
    return int(l_pid)


@contextmanager
def _lockf(path: Path, fd: int, deadline: float) -> Iterator[None]:
    backoff = _Backoff(deadline)
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
        if not backoff.wait():
            raise MailboxLockTimeout(path, "lockf", _lockf_holder(fd))
    try:
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)


# --- the public context manager ------------------------------------------------------------


def _open_or_create(path: Path, create_owner: tuple[int, int] | None) -> int:
    """Open the mailbox, creating it 0600 if missing; a file this call creates is given to
    ``create_owner`` through its descriptor (``fchown``), never by path, and only as root."""
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for _attempt in range(10):
        try:
            return os.open(path, flags)  # the mailbox exists (the common case)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # created between the two opens: open it
        try:
            if create_owner is not None and os.geteuid() == 0:
                os.fchown(fd, create_owner[0], create_owner[1])
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise OSError(errno.EAGAIN, "mailbox keeps appearing and disappearing", str(path))


def _refuse(path: Path, code: int, reason: str) -> UnsafeMailboxError:
    log.warning("mailbox %s refused: %s", path, reason)
    return UnsafeMailboxError(code, reason, str(path))


def _open_mailbox(
    path: Path,
    create_owner: tuple[int, int] | None = None,
    allowed_owners: Collection[int] | None = None,
) -> BinaryIO:
    if path.name.endswith(LOCK_SUFFIX):
        raise _refuse(path, errno.EINVAL, f"mailbox name ends in {LOCK_SUFFIX}")
    try:
        fd = _open_or_create(path, create_owner)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, errno.ELOOP, "mailbox is a symbolic link") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, errno.EINVAL, "mailbox is not a regular file")
        if st.st_nlink != 1:
            raise _refuse(path, errno.EMLINK, "mailbox has several hard links")
        if allowed_owners is not None and st.st_uid not in allowed_owners:
            owners = ", ".join(str(uid) for uid in sorted(set(allowed_owners)))
            raise _refuse(
                path, errno.EPERM, f"mailbox is owned by uid {st.st_uid}, not by uid {owners}"
            )
        os.set_blocking(fd, True)
        return open(fd, "a+b", buffering=0)
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def locked_mailbox(
    path: Path,
    method: LockMethod,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    stale_after: float = DEFAULT_STALE_AFTER,
    create_owner: tuple[int, int] | None = None,
    allowed_owners: Collection[int] | None = None,
) -> Iterator[BinaryIO]:
    """Open (create 0600 if missing) the mbox for read+append, take the locks, yield the file.

    ``create_owner`` ``(uid, gid)``: a mailbox this call creates is handed to it with
    ``fchown`` on the new descriptor (as root only).  ``allowed_owners``: when given, an
    existing mailbox owned by any other uid is refused with :class:`UnsafeMailboxError`
    (logged), as are symlinks, non-regular files, files with several links, and names
    ending in ``.lock`` (the dot-lock of another mailbox).

    The yielded file is *unbuffered* (a raw ``FileIO`` opened ``a+b``) so nothing written
    can linger in a user-space buffer past an error; every write goes to the end of the
    file (``O_APPEND``).  ``timeout`` bounds the total wait for all locks; on expiry
    :class:`MailboxLockTimeout` is raised and nothing has been written.  Locks are always
    released, in reverse order, however the block exits.
    """
    deadline = time.monotonic() + timeout
    with ExitStack() as stack:
        stack.enter_context(_process_lock(path, deadline))
        if method.uses_lockfile:
            stack.enter_context(_dot_lock(path, deadline, stale_after))
        f = stack.enter_context(_open_mailbox(path, create_owner, allowed_owners))
        if method.uses_lockf:
            stack.enter_context(_lockf(path, f.fileno(), deadline))
        yield f
