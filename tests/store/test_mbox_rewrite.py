"""The POP3 deletion rewrite (``store/mbox/rewrite.py``) at its edges, found unchecked by
mutation testing (docs/mutation.md): short ``pwrite`` calls, a region one byte over whole
copy chunks, the journal's file mode, and a journal the crash left half-written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posthouse.store.mbox import maildrop as mbox_maildrop
from posthouse.store.mbox.append import MboxMessage, append_messages
from posthouse.store.mbox.locking import LockMethod, LockSettings
from posthouse.store.mbox.maildrop import MboxMaildrop
from posthouse.store.mbox.mboxrd import mbox_from_line, to_mbox_bytes
from posthouse.store.mbox.scan import CHUNK

WHEN = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SENDER = "bob@example.org"


class Spool:
    def __init__(self, root: Path) -> None:
        self.path = root / "spool" / "alice"
        self.index_dir = root / "index"
        self.lock_dir = root / "locks"

    def open(self) -> MboxMaildrop:
        return MboxMaildrop.open(
            self.path,
            user="alice",
            locking=LockSettings(LockMethod.LOCKF, timeout=30.0),
            index_dir=self.index_dir,
            session_lock_dir=self.lock_dir,
        )

    def deliver(self, *contents: bytes) -> None:
        messages = [MboxMessage(SENDER, c, WHEN) for c in contents]
        append_messages(self.path, messages, method=LockMethod.LOCKF)

    def mbox(self, *contents: bytes) -> bytes:
        return b"".join(to_mbox_bytes(SENDER, c, WHEN) for c in contents)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path)


def _message(n: int, size: int) -> bytes:
    return b"Subject: message %d\n\n" % n + b"x" * size + b"\n"


def _delete(spool: Spool, numbers: list[int]) -> None:
    with spool.open() as drop:
        drop.commit_deletions(numbers)


def test_deletions_survive_short_pwrites(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pwrite`` may write less than asked: the rest follows, at the right offset."""
    contents = [_message(n, 1500 * n) for n in range(1, 6)]
    spool.deliver(*contents)
    real_pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: real_pwrite(fd, data[:700], offset))
    _delete(spool, [1, 3])
    assert spool.path.read_bytes() == spool.mbox(contents[1], contents[3], contents[4])


@pytest.mark.parametrize("chunks", [1, 2])
def test_a_region_one_byte_over_whole_copy_chunks_is_moved_whole(spool: Spool, chunks: int) -> None:
    overhead = len(mbox_from_line(SENDER, WHEN)) + len(_message(2, 0)) + 1  # + separator
    big = _message(2, chunks * CHUNK + 1 - overhead)
    assert len(spool.mbox(big)) == chunks * CHUNK + 1
    spool.deliver(_message(1, 10), big)
    _delete(spool, [1])
    assert spool.path.read_bytes() == spool.mbox(big)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_the_journal_is_readable_by_its_owner_only(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It holds other people's mail on its way to the mailbox."""
    spool.deliver(*(_message(n, 100) for n in range(1, 4)))
    modes: list[int] = []

    def at(point: str) -> None:
        if point == "journal":
            modes.append(stat.S_IMODE((spool.index_dir / "alice.rewrite").stat().st_mode))

    monkeypatch.setattr(mbox_maildrop, "_crash_hook", at)
    _delete(spool, [1])
    assert modes == [0o600]


_CRASH_BEFORE_THE_JOURNAL_IS_RENAMED = """
import os, sys
from pathlib import Path
from posthouse.store.mbox.locking import LockMethod, LockSettings
from posthouse.store.mbox.maildrop import MboxMaildrop

spool, index_dir, lock_dir = (Path(p) for p in sys.argv[1:4])
drop = MboxMaildrop.open(spool, user="alice", locking=LockSettings(LockMethod.LOCKF),
                         index_dir=index_dir, session_lock_dir=lock_dir)
os.replace = lambda src, dst: os._exit(0)  # the process dies with the journal written
drop.commit_deletions([1])
"""


def test_a_journal_the_crash_left_unpublished_is_removed_at_the_next_open(spool: Spool) -> None:
    contents = [_message(n, 100) for n in range(1, 4)]
    spool.deliver(*contents)
    spool.open().close()
    before = sorted(os.listdir(spool.index_dir))
    args = [str(spool.path), str(spool.index_dir), str(spool.lock_dir)]
    command = [sys.executable, "-c", _CRASH_BEFORE_THE_JOURNAL_IS_RENAMED, *args]
    subprocess.run(command, check=True, timeout=120)
    assert sorted(os.listdir(spool.index_dir)) != before, "the crash left no journal"
    with spool.open() as drop:
        assert len(drop.messages) == 3  # nothing was deleted: the journal never took effect
    assert sorted(os.listdir(spool.index_dir)) == before
    assert spool.path.read_bytes() == spool.mbox(*contents)


class _Crash(BaseException):
    pass


def test_a_journal_of_the_wrong_length_is_discarded_not_applied(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    contents = [_message(n, 100) for n in range(1, 4)]
    spool.deliver(*contents)

    def crash(point: str) -> None:
        if point == "journal":
            raise _Crash(point)

    monkeypatch.setattr(mbox_maildrop, "_crash_hook", crash)
    with pytest.raises(_Crash):
        _delete(spool, [1])
    monkeypatch.setattr(mbox_maildrop, "_crash_hook", lambda point: None)
    journal = spool.index_dir / "alice.rewrite"
    os.truncate(journal, journal.stat().st_size - 10)  # damaged: shorter than it says
    with spool.open() as drop:
        assert len(drop.messages) == 3
    assert spool.path.read_bytes() == spool.mbox(*contents)
    assert not journal.exists()
