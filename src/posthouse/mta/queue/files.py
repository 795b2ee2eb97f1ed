"""File modes and small descriptor helpers shared by the queue modules.

Owned here so that :mod:`posthouse.mta.queue.store` (the store) and
:mod:`posthouse.mta.queue.incoming` (receiving) use the same permissions and the same
retry-until-done reads and writes.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "read_fd", "same_file", "unlink_if_exists", "write_all"]

DIR_MODE = 0o775
FILE_MODE = 0o660


def read_fd(fd: int) -> bytes:
    """The whole content of ``fd`` (read with ``pread`` from offset 0)."""
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` at ``fd``'s position, however many ``write`` calls it takes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def unlink_if_exists(path: Path) -> bool:
    """Remove ``path``; False if it did not exist."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stat results are of the same inode."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
