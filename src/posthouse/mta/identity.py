"""Who a program or file destination runs as: an account's identity and its shell check.

This module owns the :class:`Identity` value that travels with a program (``|cmd``) or
file (``/path``) destination from the file that named it (the aliases file, a
``.forward``, an ``:include:`` file) to the agent that runs it
(:mod:`posthouse.mta.agents.program`), plus the two rules about accounts that
sendmail applies before running anything for a user:

* the account's login shell must be listed in ``/etc/shells`` (sendmail:
  "user has no valid shell"); an empty shell field means ``/bin/sh`` (passwd(5)); when
  ``/etc/shells`` does not exist, a short built-in list of the usual shells is used.
  Identities made for the aliases file's default user skip this check
  (``shell_checked=False``): sendmail's ``DefaultUser`` is typically ``mailnull`` or
  ``nobody``, whose shell is ``nologin`` by design;
* the identity is resolved once, from the password database, and then carried as data
  (uid, gid, supplementary groups, name, home, shell) so nothing is looked up again by
  name at delivery time.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_SHELLS",
    "SHELLS_FILE",
    "Identity",
    "valid_shell",
]

SHELLS_FILE = Path("/etc/shells")
# Used when /etc/shells is missing (sendmail's DefaultUserShells, trimmed to what exists today).
DEFAULT_SHELLS = ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash", "/bin/csh", "/bin/ksh")


@dataclass(frozen=True)
class Identity:
    """An account that programs and files run and are written as.

    ``groups`` are the supplementary groups to set (``None``: looked up with
    ``os.getgrouplist(user, gid)`` when needed).  ``shell_checked``: whether ``shell`` must
    be listed in ``/etc/shells`` before a program or file destination may use this identity.
    """

    uid: int
    gid: int
    user: str
    home: str
    shell: str
    groups: tuple[int, ...] | None = None
    shell_checked: bool = True

    @classmethod
    def from_passwd(cls, entry: pwd.struct_passwd, *, shell_checked: bool = True) -> Identity:
        return cls(
            uid=entry.pw_uid,
            gid=entry.pw_gid,
            user=entry.pw_name,
            home=entry.pw_dir,
            shell=entry.pw_shell,
            shell_checked=shell_checked,
        )

    @classmethod
    def for_user(cls, name: str, *, shell_checked: bool = True) -> Identity | None:
        """The account called ``name``, or None when there is no such account."""
        try:
            return cls.from_passwd(pwd.getpwnam(name), shell_checked=shell_checked)
        except KeyError:
            return None

    @classmethod
    def for_uid(cls, uid: int, gid: int) -> Identity:
        """The account with ``uid``; an owner with no passwd entry gets a bare identity
        (name = the number, home ``/``, a shell no list holds, so it may run nothing)."""
        try:
            return cls.from_passwd(pwd.getpwuid(uid))
        except KeyError:
            return cls(uid=uid, gid=gid, user=str(uid), home="/", shell="(no passwd entry)")

    @classmethod
    def current(cls) -> Identity:
        """The running process's effective account (groups: its current ones)."""
        uid, gid = os.geteuid(), os.getegid()
        try:
            entry = pwd.getpwuid(uid)
            user, home, shell = entry.pw_name, entry.pw_dir, entry.pw_shell
        except KeyError:
            user, home, shell = str(uid), "/", ""
        return cls(uid, gid, user, home, shell, groups=tuple(os.getgroups()))

    def supplementary_groups(self) -> tuple[int, ...]:
        """The groups to set with ``setgroups`` when becoming this identity."""
        if self.groups is not None:
            return self.groups
        try:
            return tuple(os.getgrouplist(self.user, self.gid))
        except OSError:
            return (self.gid,)

    def describe(self) -> str:
        return f"{self.user} (uid {self.uid})"


def valid_shell(shell: str, shells_file: Path = SHELLS_FILE) -> bool:
    """Whether ``shell`` is listed in ``shells_file`` (``/etc/shells``); see the module doc."""
    wanted = shell or "/bin/sh"
    try:
        text = shells_file.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return wanted in DEFAULT_SHELLS
    except OSError:
        return False
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#") and entry == wanted:
            return True
    return False
