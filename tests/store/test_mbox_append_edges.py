"""The mbox append at its edges, found unchecked by mutation testing (docs/mutation.md):
short and empty writes, a mailbox that is one newline, the parent directory's mode, the
smallest chunk size, a failed roll-back, the lock timeout and staleness it is given,
streaming a file without reading it whole, and the ``From_`` line's sender and time."""

from __future__ import annotations

import errno
import os
import stat
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from posthouse.store.mbox import locking
from posthouse.store.mbox.append import MboxMessage, append_messages
from posthouse.store.mbox.locking import DEFAULT_TIMEOUT, LockMethod, MailboxLockTimeout
from posthouse.store.mbox.mboxrd import mbox_from_line, to_mbox_bytes

WHEN = datetime(2026, 11, 26, 0, 1, 29, tzinfo=UTC)
SENDER = "a@example.org"
CONTENT = b"Subject: hi\n\n" + b"line of text\n" * 200


def _append(box: Path, content: bytes = CONTENT, **options: object) -> None:
    options.setdefault("method", LockMethod.LOCKF)
    append_messages(box, [MboxMessage(SENDER, content, WHEN)], **options)  # type: ignore[arg-type]


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.write`` may write less than asked, down to one byte: the rest follows."""
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:1]))
    box = tmp_path / "alice"
    _append(box)
    monkeypatch.undo()
    assert box.read_bytes() == to_mbox_bytes(SENDER, CONTENT, WHEN)


def test_a_write_that_writes_nothing_is_an_error_and_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "alice"
    _append(box)
    before = box.read_bytes()
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    with pytest.raises(OSError):
        _append(box)
    monkeypatch.undo()
    assert box.read_bytes() == before


def test_a_failed_roll_back_keeps_the_first_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full, then the truncation back fails too: the caller sees the disk full."""
    box = tmp_path / "alice"
    _append(box)

    def fail(code: int) -> object:
        def call(*args: object) -> None:
            raise OSError(code, os.strerror(code))

        return call

    monkeypatch.setattr(os, "write", fail(errno.ENOSPC))
    monkeypatch.setattr(os, "ftruncate", fail(errno.EIO))
    with pytest.raises(OSError) as failure:
        _append(box)
    assert failure.value.errno == errno.ENOSPC


def test_a_mailbox_of_one_newline_needs_no_separator(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    box.write_bytes(b"\n")
    _append(box)
    assert box.read_bytes() == b"\n" + to_mbox_bytes(SENDER, CONTENT, WHEN)


@pytest.fixture
def umask_002() -> Iterator[None]:
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_002")
def test_a_missing_parent_directory_is_created_0755(tmp_path: Path) -> None:
    box = tmp_path / "spool" / "alice"
    _append(box)
    assert stat.S_IMODE(box.parent.stat().st_mode) == 0o755


def test_the_smallest_chunk_size_works(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    _append(box, chunk_size=1)
    assert box.read_bytes() == to_mbox_bytes(SENDER, CONTENT, WHEN)


def test_the_given_lock_timeout_is_used(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    locking.lockfile_path(box).write_bytes(b"")  # held by someone else, just now
    started = time.monotonic()
    with pytest.raises(MailboxLockTimeout):
        _append(box, method=LockMethod.LOCKFILE, timeout=0.2)
    assert time.monotonic() - started < DEFAULT_TIMEOUT / 2
    assert not box.exists()


def test_the_given_staleness_is_used(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    lock = locking.lockfile_path(box)
    lock.write_bytes(b"")
    old = time.time() - 120  # stale after a minute, not after the default five
    os.utime(lock, (old, old))
    _append(box, method=LockMethod.LOCKFILE, timeout=5.0, stale_after=60.0)
    assert box.read_bytes() == to_mbox_bytes(SENDER, CONTENT, WHEN)
    assert not lock.exists()


def test_a_message_file_is_streamed_not_read_whole(tmp_path: Path) -> None:
    source = tmp_path / "message"
    source.write_bytes(b"Subject: big\n\n" + (b"x" * 1000 + b"\n") * 16_000)  # 16 MB
    box = tmp_path / "alice"
    tracemalloc.start()
    try:
        append_messages(box, [MboxMessage(SENDER, source, WHEN)], method=LockMethod.LOCKF)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert box.stat().st_size > source.stat().st_size
    assert peak < 4_000_000, f"peak {peak} bytes: the message was held in memory"


def test_unbalanced_angle_brackets_are_kept_in_the_sender() -> None:
    assert mbox_from_line("<bob@example.org", WHEN).startswith(b"From <bob@example.org ")
    assert mbox_from_line("bob@example.org>", WHEN).startswith(b"From bob@example.org> ")


def test_the_from_line_time_is_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "EST+5")
    time.tzset()
    try:
        when = datetime(2026, 11, 26, 3, 1, 29, tzinfo=timezone(timedelta(hours=3)))
        assert mbox_from_line(SENDER, when) == b"From a@example.org Thu Nov 26 00:01:29 2026\n"
    finally:
        monkeypatch.undo()
        time.tzset()
