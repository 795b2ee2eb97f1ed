"""Which groups a user belongs to, for the ACL identifiers ``group:NAME`` (chapter 12.5.7).

:class:`GroupDirectory` is the store's ``groups`` callable (see
:class:`~posthouse.store.policy.CyrusAccess`).  A user's groups come from two places:

* the system's groups: every group in the group database (``/etc/group``, NSS) that lists the
  user as a member, and the primary group of a user who is a system account;
* posthouse's own group table, the file ``groups`` in the IMAP configuration directory
  (``DATA/imap/groups`` unless ``[imap] configdirectory`` says otherwise), for the mail users
  of the user database, who are no system accounts.  One group a line, its name, a colon, and
  its members separated by spaces or commas; ``#`` starts a comment::

      # group      members
      staff:       alice bob carol
      interns:     dave, erin

  A group named in both places has the members of both.  The file may be missing (no groups
  of posthouse's own).

Both are read again at most every ``ttl`` seconds (10 by default), so LIST, which asks for
the rights on every mailbox, does not read them per mailbox; a change to either takes effect
within that time without a restart.  A line of the file that is not ``NAME: MEMBERS`` is
reported (file, line, problem) to the log once per change of the file and left out.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import pwd
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GroupDirectory", "GroupFileError", "parse_group_table", "system_groups"]

log = logging.getLogger("posthouse.groups")

MAX_TABLE_BYTES = 4 * 1024 * 1024
MAX_CACHED_USERS = 10_000
_NAME_FORBIDDEN = frozenset(" \t,:#")


class GroupFileError(ValueError):
    """A line of the group table that says no group."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path, self.line, self.problem = path, line, problem


def parse_group_table(
    path: Path, text: str
) -> tuple[dict[str, frozenset[str]], list[GroupFileError]]:
    """The groups of the table ``text`` (read from ``path``) and the lines left out."""
    groups: dict[str, set[str]] = {}
    problems: list[GroupFileError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, colon, members = line.partition(":")
        name = name.strip()
        if not colon:
            problems.append(GroupFileError(path, number, "expected NAME: MEMBERS"))
        elif not name or _NAME_FORBIDDEN & set(name):
            problems.append(GroupFileError(path, number, f"bad group name {name!r}"))
        else:
            groups.setdefault(name, set()).update(members.replace(",", " ").split())
    return {name: frozenset(members) for name, members in groups.items()}, problems


def system_groups(user: str) -> frozenset[str]:
    """The system groups listing ``user`` as a member, and its primary group."""
    names = {group.gr_name for group in grp.getgrall() if user in group.gr_mem}
    with contextlib.suppress(KeyError):  # no system account, or a primary group without a name
        names.add(grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name)
    return frozenset(names)


@dataclass
class GroupDirectory:
    """``directory(user)`` is the names of ``user``'s groups (see the module docstring)."""

    table: Path | None
    system: bool = True
    ttl: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _table: Mapping[str, frozenset[str]] = field(default_factory=dict, init=False)
    _table_read_at: float | None = field(default=None, init=False)
    _table_stamp: tuple[int, int] | None = field(default=None, init=False)
    _users: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict, init=False)

    def __call__(self, user: str) -> frozenset[str]:
        now = self.clock()
        cached = self._users.get(user)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        table = self._current_table(now)
        names = {name for name, members in table.items() if user in members}
        if self.system:
            names |= system_groups(user)
        if len(self._users) >= MAX_CACHED_USERS:
            self._users.clear()
        result = frozenset(names)
        self._users[user] = (now, result)
        return result

    def _current_table(self, now: float) -> Mapping[str, frozenset[str]]:
        if self.table is None:
            return {}
        if self._table_read_at is not None and now - self._table_read_at < self.ttl:
            return self._table
        self._table_read_at = now
        try:
            info = self.table.stat()
        except FileNotFoundError:
            self._table, self._table_stamp = {}, None
            return self._table
        except OSError as error:
            return self._unreadable(error)
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._table_stamp:
            return self._table
        try:
            text = self.table.read_bytes()[:MAX_TABLE_BYTES].decode("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            return self._unreadable(error)
        self._table, problems = parse_group_table(self.table, text)
        self._table_stamp = stamp
        for problem in problems:
            log.error("groups: %s (line left out)", problem)
        return self._table

    def _unreadable(self, error: Exception) -> Mapping[str, frozenset[str]]:
        log.error("groups: %s cannot be read: %s (the groups read before stay)", self.table, error)
        return self._table
