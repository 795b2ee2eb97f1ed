"""Connection records: one small file per live connection in the ``proc`` directory.

Like Cyrus's ``proc/`` directory, each record says which process serves whom
from where and, once known, as which user and on which mailbox.  Records are
plain text so an administrator (or ``cyradm``) can read them; they are not
fsynced because they describe live state only, and a worker removes stale
records of dead processes at start-up.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

_counter = itertools.count(1)


@dataclass
class ConnectionRecord:
    """Who is connected, from where, to which service."""

    protocol: str
    client: str
    directory: Path | None
    user: str = ""
    mailbox: str = ""
    name: str = field(default_factory=lambda: f"{os.getpid()}-{next(_counter)}")

    def publish(self) -> None:
        if self.directory is None:
            return
        line = f"{self.protocol}\t{self.client}\t{self.user}\t{self.mailbox}\n"
        with contextlib.suppress(OSError):
            (self.directory / self.name).write_text(line, encoding="utf-8")

    def update(self, *, user: str | None = None, mailbox: str | None = None) -> None:
        if user is not None:
            self.user = user
        if mailbox is not None:
            self.mailbox = mailbox
        self.publish()

    def remove(self) -> None:
        if self.directory is None:
            return
        with contextlib.suppress(OSError):
            (self.directory / self.name).unlink()


def remove_stale_records(directory: Path) -> int:
    """Delete records whose process no longer exists; returns how many."""
    removed = 0
    if not directory.is_dir():
        return 0
    for entry in directory.iterdir():
        pid_text = entry.name.split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                entry.unlink()
                removed += 1
        except PermissionError:
            continue
    return removed
