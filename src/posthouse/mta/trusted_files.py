"""Opening ``.forward`` and ``:include:`` files safely, and deciding whether they are honoured.

This module owns sendmail's safety rules for the two kinds of file a user can write that
make the MTA run programs or write files (issue 8, item 2).  A file is honoured only when
all of these hold; otherwise it is refused with a reason, logged as a warning on the
``posthouse.mta.trusted_files`` logger (and, for a ``.forward``, the caller delivers to
the plain mailbox, as sendmail and Postfix do):

1. **Directory chain.**  The file's directory is resolved once (``realpath``: symbolic
   links in the *home directory path from passwd* are followed, so ``/home -> /srv/home``
   works), then walked again from ``/`` one component at a time with
   ``openat(O_DIRECTORY | O_NOFOLLOW)``; every directory, ``/`` included, must be owned by
   root or by the file's trusted owner (below) and must not be group- or world-writable.
   The sticky bit does not make a world-writable directory safe (sendmail's
   ``DontBlameSendmail`` flags ``TrustStickyBit`` and ``GroupWritableDirPathSafe`` are off
   by default, and so is their equivalent here): a ``.forward`` below ``/tmp`` is refused.
   Since every check is made on an open descriptor, nothing can be swapped between the
   check and the read.
2. **The file.**  Opened with ``openat(O_NOFOLLOW | O_NONBLOCK)`` relative to the last
   checked directory and examined with ``fstat`` on that descriptor: it must be a regular
   file (not a symlink, FIFO or device), have exactly one link (stricter than sendmail's
   defaults, which refuse hard links only in unsafe directories: a hard link to someone
   else's file is how a file changes owner without changing content), not be group- or
   world-writable (``GroupWritableForwardFileSafe`` / ``GroupWritableIncludeFileSafe`` and
   the world-writable variants are off), and be at most ``max_bytes`` long.
3. **Owner.**  A ``.forward`` must be owned by the user whose home it is in, or by root
   (Postfix local(8) and sendmail agree); its programs and files run as that user, also
   when root owns the file.  An ``:include:`` file may have any owner, and its programs
   and files run as that owner (sendmail's rule), except that a root-owned include file
   runs as the identity of whatever included it (``parent``): the aliases file's default
   user (sendmail's ``DefaultUser``) or the ``.forward``'s user.  The directory chain of
   an include file is checked against its owner.  So a file's programs always run with
   the rights of someone who can change the file, never more.

Whether the identity may actually run programs (its shell in ``/etc/shells``) and whether
this process can become it (root, or the identity is the process itself) is decided when
the destination is delivered, by :mod:`posthouse.mta.agents.program`.

``fstat`` and ``top`` are seams for tests: ``fstat`` lets a test that is not root
simulate other owners and modes; ``top`` is the directory the chain check starts at
(default ``/``; ``tmp_path`` lives below the world-writable ``/tmp``, which is refused).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from posthouse.mta.errors import MailError
from posthouse.mta.identity import Identity

__all__ = [
    "MAX_BYTES",
    "Refusal",
    "TrustedFile",
    "read_forward",
    "read_include",
]

log = logging.getLogger("posthouse.mta.trusted_files")

MAX_BYTES = 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

Fstat = Callable[[int], os.stat_result]


@dataclass(frozen=True)
class TrustedFile:
    """A file that passed the rules: its text, its owner, and who its destinations run as."""

    path: Path
    text: str
    owner: int
    identity: Identity


@dataclass(frozen=True)
class Refusal:
    """Why a file is not honoured.  ``temporary``: an I/O error worth retrying, as opposed
    to a file that breaks a rule (which stays refused until someone fixes it)."""

    path: Path
    reason: str
    temporary: bool = False

    def error(self) -> MailError:
        """The delivery error for an address whose ``:include:`` file was refused."""
        status = "4.3.0" if self.temporary else "5.3.0"
        return MailError(status, f"{self.path}: {self.reason}")


class _Refused(Exception):
    def __init__(self, reason: str, *, temporary: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary


def read_forward(
    path: Path,
    user: Identity,
    *,
    max_bytes: int = MAX_BYTES,
    top: Path = Path("/"),
    fstat: Fstat = os.fstat,
) -> TrustedFile | Refusal | None:
    """Read ``user``'s ``.forward`` at ``path`` under the rules of the module docstring.

    Returns the file (its destinations run as ``user``), a :class:`Refusal` (already
    logged; deliver to the plain mailbox), or None when there is no such file.
    """
    try:
        text, st = _read_checked(path, {user.uid}, max_bytes, top, fstat)
    except FileNotFoundError:
        return None
    except _Refused as exc:
        return _refuse("forward", path, exc)
    if st.st_uid not in (user.uid, 0):
        return _refuse(
            "forward", path, _Refused(f"owned by uid {st.st_uid}, not by {user.describe()}")
        )
    return TrustedFile(path, text, st.st_uid, user)


def read_include(
    path: Path,
    *,
    parent: Identity,
    max_bytes: int = MAX_BYTES,
    top: Path = Path("/"),
    fstat: Fstat = os.fstat,
    lookup_uid: Callable[[int, int], Identity] = Identity.for_uid,
) -> TrustedFile | Refusal:
    """Read the ``:include:`` file at ``path`` under the rules of the module docstring.

    ``parent`` is the identity of what included it (the aliases file's default user, or
    the user whose ``.forward`` named it); a root-owned include file runs as ``parent``,
    any other as its owner (``lookup_uid(uid, gid)``).  A missing file is a temporary
    refusal (sendmail defers too: the file system may not be mounted yet).
    """
    try:
        text, st = _read_checked(path, None, max_bytes, top, fstat)
    except FileNotFoundError:
        return _refuse("include", path, _Refused("no such file", temporary=True))
    except _Refused as exc:
        return _refuse("include", path, exc)
    identity = parent if st.st_uid == 0 else lookup_uid(st.st_uid, st.st_gid)
    return TrustedFile(path, text, st.st_uid, identity)


def _refuse(kind: str, path: Path, exc: _Refused) -> Refusal:
    log.warning("%s file %s refused: %s", kind, path, exc.reason)
    return Refusal(path, exc.reason, exc.temporary)


def _read_checked(
    path: Path,
    owners: Collection[int] | None,
    max_bytes: int,
    top: Path,
    fstat: Fstat,
) -> tuple[str, os.stat_result]:
    """Walk, open and check; ``owners`` None means "whoever owns the file" (include)."""
    if not path.is_absolute():
        raise _Refused("not an absolute path")
    if path.name in ("", ".", ".."):
        raise _Refused("not a file name")
    try:
        directory = Path(os.path.realpath(path.parent))
        start = Path(os.path.realpath(top))
    except OSError as exc:  # pragma: no cover - realpath only fails on loops (ELOOP)
        raise _Refused(f"cannot resolve its directory: {exc.strerror}") from exc
    if directory != start and start not in directory.parents:
        raise _Refused(f"not below {start}")
    dir_fds: list[tuple[str, int]] = []
    try:
        try:
            dir_fds.append((str(start), os.open(start, _DIR_FLAGS)))
            for part in directory.relative_to(start).parts:
                where = os.path.join(dir_fds[-1][0], part)
                dir_fds.append((where, os.open(part, _DIR_FLAGS, dir_fd=dir_fds[-1][1])))
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _Refused("its directory path changed while being checked") from exc
            raise _Refused(f"cannot open its directory: {exc.strerror}", temporary=True) from exc
        # The file's owner decides which directory owners are acceptable, so open it first.
        try:
            fd = os.open(path.name, _FILE_FLAGS, dir_fd=dir_fds[-1][1])
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Refused("is a symbolic link") from exc
            raise _Refused(f"cannot open: {exc.strerror}", temporary=True) from exc
        try:
            st = fstat(fd)
            _check_file(st, max_bytes)
            trusted = {0, st.st_uid} if owners is None else {0, *owners}
            for where, dir_fd in dir_fds:
                _check_directory(where, fstat(dir_fd), trusted)
            return _read_all(fd, max_bytes), st
        except OSError as exc:
            raise _Refused(f"cannot read: {exc.strerror}", temporary=True) from exc
        finally:
            os.close(fd)
    finally:
        for _where, dir_fd in dir_fds:
            os.close(dir_fd)


def _check_file(st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _Refused("not a regular file")
    if st.st_nlink != 1:
        raise _Refused(f"has {st.st_nlink} hard links")
    if st.st_mode & stat.S_IWOTH:
        raise _Refused("world writable file")
    if st.st_mode & stat.S_IWGRP:
        raise _Refused("group writable file")
    if st.st_size > max_bytes:
        raise _Refused(f"larger than {max_bytes} bytes")


def _check_directory(where: str, st: os.stat_result, trusted: Collection[int]) -> None:
    if st.st_mode & stat.S_IWOTH:
        raise _Refused(f"world writable directory {where}")
    if st.st_mode & stat.S_IWGRP:
        raise _Refused(f"group writable directory {where}")
    if st.st_uid not in trusted:
        raise _Refused(f"directory {where} owned by uid {st.st_uid}")


def _read_all(fd: int, max_bytes: int) -> str:
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, 65536):
        size += len(chunk)
        if size > max_bytes:
            raise _Refused(f"larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "surrogateescape")
