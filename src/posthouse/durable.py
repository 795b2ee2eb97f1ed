"""Durability on disk: the one helper that flushes a directory.

A file's new name (created, renamed over, removed) survives a crash only once its
directory has been ``fsync``\\ ed; the file's own bytes need an ``fsync`` or
``fdatasync`` of the file.  The queue (:mod:`posthouse.mta.queue.groupcommit`), the aliases
database (:mod:`posthouse.mta.aliasdb`) and the mbox spool (:mod:`posthouse.store.mbox`)
all flush directories through :func:`sync_directory`.  This module imports nothing else
of posthouse, so every layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["sync_directory"]


def sync_directory(directory: Path | str) -> None:
    """``fsync`` ``directory``, so the names created, renamed or removed in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
