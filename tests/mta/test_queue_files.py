"""posthouse.mta.queue.files: whole-file reads and writes (mutation testing found a read of
more than two chunks unchecked, docs/mutation.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from posthouse.mta.queue.files import read_fd, write_all


def test_read_fd_reads_a_file_of_several_chunks_from_the_start(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000 + b"tail"  # 256,004 bytes: four chunks and a bit
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        write_all(fd, data)
        assert os.lseek(fd, 0, os.SEEK_CUR) == len(data)  # pread ignores the file position
        assert read_fd(fd) == data
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_read_fd_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert read_fd(fd) == b""
    finally:
        os.close(fd)


def test_write_all_goes_on_after_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.write`` may write less than asked (a signal, a full pipe): the rest follows."""
    real_write = os.write
    calls = []

    def short_write(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, data[:1000])

    data = bytes(range(256)) * 20
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        monkeypatch.setattr(os, "write", short_write)
        write_all(fd, data)
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert path.read_bytes() == data
    assert len(calls) == 6
