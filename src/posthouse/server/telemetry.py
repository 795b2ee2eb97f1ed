"""The telemetry log: whole IMAP and POP3 sessions of chosen users written to files (chapter
12.5.5).

When a folder named after a user exists under the IMAP configuration directory's
``log/`` (``DATA/imap/log/USER/``), every session that logs in as that user is recorded
there, over IMAP or POP3 (as Cyrus's imapd and pop3d both do), one file per session, in
Cyrus's format::

    ---------- USER Thu Dec  3 15:56:13 2026
    (a blank line)
    <1796313373<what the client sent, as it came
    >1796313373>what the server sent

(``<`` client to server, ``>`` server to client, each with the time in seconds, one
record per read or write).  Unlike Cyrus, which starts recording after the login, the
session is recorded from the greeting: what was said before the login is held in memory
(at most `PRELOGIN_LIMIT` octets) and written once the user is known, or dropped.
Passwords never reach the file: client input goes through the protocol's mask (a
:class:`~posthouse.protocols.redact.LineMask`: IMAP's masks LOGIN and the SASL exchange of
AUTHENTICATE, POP3's PASS, the APOP digest and the SASL exchange of AUTH).  The files are
named ``PROTOCOL-PID-SECONDS-N`` (``imap-…``, ``pop3-…``; Cyrus names them after the
process and appends the sessions a process serves one after another; a posthouse worker
serves many at once) and created mode 0600; the folder must be a real directory, not a
symbolic link, and a user name that is not one plain path component has no log.  A write
that fails stops the log, never the session.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

PRELOGIN_LIMIT = 64 * 1024  # octets of the conversation before the login kept in memory
_sessions = itertools.count(1)


class Mask(Protocol):
    """A protocol's client input with its secrets masked (see the module docstring)."""

    def feed(self, data: bytes) -> bytes: ...

    def authentication_done(self) -> None: ...


class TelemetryDirectory:
    """The ``log/`` folder; looks at most every ``recheck`` seconds whether it has any user
    folder at all, so that sessions pay nothing for telemetry while nobody is logged."""

    def __init__(self, path: Path, recheck: float = 2.0) -> None:
        self.path = path
        self.recheck = recheck
        self._checked = -recheck
        self._any = False

    def session_log(self, protocol: str, mask: Callable[[], Mask]) -> TelemetryLog | None:
        """A new ``protocol`` session's telemetry, its client input masked by a new
        ``mask()``, or None when no user is logged."""
        now = time.monotonic()
        if now - self._checked >= self.recheck:
            self._checked = now
            try:
                with os.scandir(self.path) as entries:
                    self._any = any(entry.is_dir(follow_symlinks=False) for entry in entries)
            except OSError:
                self._any = False
        return TelemetryLog(self.path, protocol, mask()) if self._any else None


class TelemetryLog:
    """One session's telemetry: the engine's `Tap` (see the module docstring)."""

    def __init__(self, log_dir: Path, protocol: str, mask: Mask) -> None:
        self.log_dir = log_dir
        self.protocol = protocol
        self.mask = mask
        self._log = logging.getLogger(f"posthouse.{protocol}")
        self._held: list[bytes] | None = []  # before the login; None once decided
        self._held_size = 0
        self._fd: int | None = None

    @property
    def recording(self) -> bool:
        """Still listening: before the login, or writing a logged-in user's file."""
        return self._held is not None or self._fd is not None

    def received(self, data: bytes) -> None:
        masked = self.mask.feed(data)
        if masked:
            self._record(b"<", masked)

    def sent(self, data: bytes) -> None:
        self._record(b">", data)

    def _record(self, direction: bytes, data: bytes) -> None:
        stamp = direction + str(int(time.time())).encode("ascii") + direction
        if self._fd is not None:
            self._write(stamp + data)
        elif self._held is not None and self._held_size + len(data) <= PRELOGIN_LIMIT:
            self._held.append(stamp + data)
            self._held_size += len(data)

    def logged_in(self, user: str) -> None:
        """The session is ``user``'s: open the file if the user's folder exists, else stop."""
        held, self._held = self._held, None
        if held is None or self._fd is not None:
            return
        folder = self.log_dir / user
        if not _one_component(user) or not _real_directory(folder):
            return
        name = f"{self.protocol}-{os.getpid()}-{int(time.time())}-{next(_sessions)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._fd = os.open(folder / name, flags, 0o600)
        except OSError as error:
            self._log.error(
                "%s: the telemetry log of %s cannot be opened: %s", self.protocol, user, error
            )
            return
        header = f"---------- {user} {time.ctime()}\n\n".encode("utf-8", "replace")
        self._write(header + b"".join(held))

    def login_attempted(self) -> None:
        """The engine has the credentials: the lines after them are commands again."""
        self.mask.authentication_done()

    def _write(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as error:
            self._log.error(
                "%s: writing the telemetry log failed, it stops: %s", self.protocol, error
            )
            self.close()

    def close(self) -> None:
        fd, self._fd, self._held = self._fd, None, None
        if fd is not None:
            os.close(fd)


def _one_component(user: str) -> bool:
    return bool(user) and user not in (".", "..") and "/" not in user and "\0" not in user


def _real_directory(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink()
    except OSError:
        return False
