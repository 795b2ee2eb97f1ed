"""Dropping root after the privileged ports are bound."""

from __future__ import annotations

import importlib
import os
import pwd
from pathlib import Path

# Modules the server imports lazily, loaded while still root: after the switch the Python
# installation may not be readable (e.g. an interpreter under /root).
LAZY_MODULES = (
    "concurrent.futures.thread",
    "encodings.idna",
    "_strptime",
    "dns.rdtypes.ANY.MX",
    "dns.rdtypes.IN.A",
    "dns.rdtypes.IN.AAAA",
    "dns.rdtypes.ANY.CNAME",
    "dns.asyncbackend",
    "dns._asyncio_backend",
    "email.mime.text",
    "email.headerregistry",
)


class PrivilegeError(Exception):
    """The configured unprivileged account cannot be used."""


class HandOverError(PrivilegeError):
    """A directory could not be given to the account."""

    def __init__(self, directory: Path, account: str, error: OSError) -> None:
        self.directory = directory
        super().__init__(f"cannot give {directory} to {account}: {error.strerror or error}")


def drop_privileges(account: str, owned_dirs: list[Path]) -> str | None:
    """When running as root, hand ``owned_dirs`` to ``account`` and become it.

    Returns the account name switched to, or None when nothing was done (not
    root, or no account configured).
    """
    if os.geteuid() != 0 or not account:
        return None
    try:
        entry = pwd.getpwnam(account)
    except KeyError as exc:
        raise PrivilegeError(f"server.run_as: no such account {account!r}") from exc
    for name in LAZY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    for directory in owned_dirs:
        try:
            _chown_tree(directory, entry.pw_uid, entry.pw_gid)
        except OSError as exc:
            raise HandOverError(directory, account, exc) from exc
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    return account


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything below it to ``uid``/``gid`` without ever following a
    symbolic link: ``os.fwalk`` descends through directory descriptors opened with
    ``O_NOFOLLOW``, and each entry is changed relative to its directory's descriptor, so an
    account that can write inside the tree cannot swap a directory for a link to make root
    change the owner of a file elsewhere."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
    for _dirpath, dirnames, filenames, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in dirnames + filenames:
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
