"""Whose file system the spool directory is: the check behind ``mailbox_directory = "nfs-client"``.

The Mailbox Setup dialog of chapter 12 (12.3.1 step 4, 12.3.2 steps 5-7) lets a standalone
system or a client import the mailbox directory from a *Mailbox Server* over NFS: the spool
is then the server's, and every host delivers into it and reads from it with the locking
the worksheet names (12.2.3.1: "The locking mechanism you select must match the mechanism
used by the NFS server").  posthouse does not mount anything; it makes sure the spool it
writes to is that server's export, so that mail never lands, unseen by the other hosts, in
a local directory under a mount point whose mount is missing.

This module reads the kernel's mount table (``/proc/self/mountinfo``) and answers, for a
spool directory and a server name, what is wrong, if anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MOUNTINFO", "Mount", "mount_of", "parse_mountinfo", "read_mounts", "spool_problem"]

MOUNTINFO = Path("/proc/self/mountinfo")
NFS_TYPES = ("nfs", "nfs4")


@dataclass(frozen=True)
class Mount:
    """One mounted file system: where, its type and its source (``host:/path`` for NFS)."""

    point: str
    fstype: str
    source: str

    @property
    def nfs_host(self) -> str | None:
        """The server of an NFS mount (``[...]`` of an IPv6 address removed), else None."""
        if self.fstype not in NFS_TYPES or ":" not in self.source:
            return None
        host = self.source.rsplit(":/", 1)[0] if ":/" in self.source else self.source
        return host.strip("[]")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a ``/proc/PID/mountinfo`` text (proc(5)); malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) < dash + 3:
            continue
        mounts.append(Mount(_unescape(fields[4]), fields[dash + 1], _unescape(fields[dash + 2])))
    return mounts


def read_mounts(path: Path = MOUNTINFO) -> list[Mount]:
    """The mounts of this process's mount namespace (empty where there is no /proc)."""
    try:
        return parse_mountinfo(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []


def mount_of(path: Path, mounts: Sequence[Mount]) -> Mount | None:
    """The mount ``path`` (absolute, symbolic links already resolved) lies on: the
    last-mounted of the longest mount points above it."""
    target = os.path.normpath(path)
    best: Mount | None = None
    for mount in mounts:
        point = mount.point.rstrip("/") or "/"
        inside = target == point or target.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    return best


def _same_host(a: str, b: str) -> bool:
    """Host names compared as the chapter's dialogs accept them: case and a trailing dot
    aside, and a short name (``mailhub``) matching its qualified form."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if a == b:
        return True
    if "." in a and "." in b:
        return False
    return a.split(".", 1)[0] == b.split(".", 1)[0]


def spool_problem(spool_dir: Path, server: str, mounts: Sequence[Mount]) -> str | None:
    """Why ``spool_dir`` (resolved) is not the mailbox directory exported by ``server``
    (None: it is)."""
    mount = mount_of(spool_dir, mounts)
    if mount is None:
        return f"cannot tell which file system the mailbox directory {spool_dir} is on"
    host = mount.nfs_host
    if host is None:
        return (
            f"the mailbox directory {spool_dir} is not mounted from the mailbox server "
            f"{server} (it is on {mount.point}, {mount.fstype} {mount.source}): mount "
            f"{server}'s mailbox directory there, or set mailbox_directory to local"
        )
    if not _same_host(host, server):
        return (
            f"the mailbox directory {spool_dir} is mounted from {host}, not from the "
            f"mailbox server {server}"
        )
    return None
