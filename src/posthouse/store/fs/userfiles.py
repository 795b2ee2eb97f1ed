"""Per-user files under the configuration directory's ``user/``: subscriptions (``U.sub``).

A file is replaced whole: written to a temporary file, ``fsync``\\ ed, renamed over the old
one, and the directory ``fsync``\\ ed, under a per-user ``flock`` so two processes changing the
same user's subscriptions do not lose one change.  File names come from
:func:`posthouse.store.fs.layout.user_file_stem`, never from the raw user name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from posthouse.durable import sync_directory
from posthouse.store.fs.layout import TEMP_PREFIX, FsLayout
from posthouse.store.subscriptions import format_subscriptions, parse_subscriptions, updated

__all__ = ["SubscriptionFiles", "user_lock"]


@contextlib.contextmanager
def user_lock(path: Path, *, blocking: bool = True) -> Iterator[int]:
    """An exclusive ``flock`` on ``path`` (created if missing), released on exit or death."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)


class SubscriptionFiles:
    def __init__(self, layout: FsLayout) -> None:
        self.layout = layout

    def read(self, user: str) -> frozenset[str]:
        try:
            text = self.layout.subscriptions_file(user).read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return frozenset()
        return parse_subscriptions(text)

    def set(self, user: str, name: str, subscribed: bool) -> None:
        path = self.layout.subscriptions_file(user)
        with user_lock(self.layout.user_lock_file(user, "sub")):
            names = updated(self.read(user), name, subscribed)
            temp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                data = format_subscriptions(names).encode("utf-8")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
            sync_directory(path.parent)

    def forget(self, user: str) -> None:
        """Remove ``user``'s file: the user was deleted.  The empty lock file stays (a
        process waiting on it would otherwise lock a file no other process can see)."""
        path = self.layout.subscriptions_file(user)
        with (
            user_lock(self.layout.user_lock_file(user, "sub")),
            contextlib.suppress(FileNotFoundError),
        ):
            path.unlink()
            sync_directory(path.parent)
