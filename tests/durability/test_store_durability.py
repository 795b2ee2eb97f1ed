"""Durability of the other stores, checked on their system calls: the mbox append (local
delivery), the POP3 rewrite after QUIT (deletions) and ``newaliases``.

Each test checks that the data is flushed before the step that publishes it (a rename, the
end of the call), that a new name is made durable by a flush of its directory, and that the
caller (the SMTP ``250`` or the POP3 ``+OK`` waits on it) is not told before the flushes
returned.  The POP3 rewrite is also put through a power cut at each of its steps.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posthouse.mta.agents.mbox import MailboxWriter
from posthouse.mta.aliasdb import AliasDatabase, build_alias_database
from posthouse.store.mbox import maildrop as mbox_maildrop
from posthouse.store.mbox.append import MboxMessage, append_messages
from posthouse.store.mbox.locking import LockMethod, LockSettings
from posthouse.store.mbox.maildrop import MboxMaildrop
from posthouse.store.mbox.mboxrd import to_mbox_bytes
from tests.durability.syscalls import WAIT_SECONDS, Call, PowerLoss, SyscallTrace, inode_of

WHEN = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch) -> SyscallTrace:
    return SyscallTrace(monkeypatch)


def _message(n: int, size: int = 200) -> bytes:
    return b"Subject: message %d\n\nFrom here on\n" % n + b"x" * size + b"\n"


# -- the mbox append (local delivery) ----------------------------------------------------------


def test_mbox_append_syncs_the_mailbox_with_all_its_data_and_a_new_one_s_directory(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    path = spool / "alice"
    contents = [_message(1), _message(2, 5000)]
    append_messages(
        path, [MboxMessage("bob@example.org", c, WHEN) for c in contents], method=LockMethod.LOCKF
    )
    trace.mark("returned")
    expected = b"".join(to_mbox_bytes("bob@example.org", c, WHEN) for c in contents)
    assert path.read_bytes() == expected
    returned = trace.index(lambda c: c.dst == "returned", "return")
    synced = trace.index(trace.file_synced(inode_of(path), len(expected)), "mailbox sync")
    dir_synced = trace.index(trace.dir_synced(spool), "spool directory sync")
    assert synced < dir_synced < returned, trace.describe()

    # Appending to an existing mailbox: the whole new length is flushed before returning.
    more = _message(3)
    append_messages(path, [MboxMessage("carol@example.org", more, WHEN)], method=LockMethod.LOCKF)
    trace.mark("returned again")
    size = path.stat().st_size
    assert size == len(expected) + len(to_mbox_bytes("carol@example.org", more, WHEN))
    synced = trace.last_index(trace.file_synced(inode_of(path), size), "second sync")
    assert synced < trace.index(lambda c: c.dst == "returned again", "return")


def test_mbox_append_into_a_new_spool_directory_syncs_its_parent_too(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    spool = tmp_path / "spool"  # missing: created by the append
    append_messages(
        spool / "alice",
        [MboxMessage("bob@example.org", _message(1), WHEN)],
        method=LockMethod.LOCKF,
    )
    trace.mark("returned")
    returned = trace.index(lambda c: c.dst == "returned", "return")
    assert trace.index(trace.dir_synced(spool), "spool directory sync") < returned
    assert trace.index(trace.dir_synced(tmp_path), "its parent's sync") < returned


def test_mailbox_writer_does_not_answer_before_the_mailbox_sync_returns(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    """What the SMTP 250 of a directly delivered message waits on."""
    path = tmp_path / "alice"
    path.write_bytes(b"")
    writer = MailboxWriter(locking=LockSettings(LockMethod.LOCKF, timeout=30.0, stale_after=300.0))
    mailbox = inode_of(path)

    async def main() -> None:
        with trace.hold_syncs(lambda c: c.inode == mailbox and not c.is_dir) as hold:
            task = asyncio.create_task(
                writer.append(path, MboxMessage("bob@example.org", _message(1), WHEN))
            )
            assert await asyncio.to_thread(hold.entered.wait, WAIT_SECONDS)
            await asyncio.sleep(0.05)  # a chance to answer early, if the code were wrong
            assert not task.done(), "the append was acknowledged before its fsync returned"
            hold.release.set()
            assert await asyncio.wait_for(task, WAIT_SECONDS) is None
        trace.mark("ack")

    asyncio.run(main())
    size = path.stat().st_size
    assert size > 0
    synced = trace.index(trace.file_synced(mailbox, size), "mailbox sync")
    assert synced < trace.index(lambda c: c.dst == "ack", "ack")


# -- the POP3 rewrite --------------------------------------------------------------------------


class _Spool:
    def __init__(self, root: Path) -> None:
        self.dir = root / "spool"
        self.path = self.dir / "alice"
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
        messages = [MboxMessage("bob@example.org", c, WHEN) for c in contents]
        append_messages(self.path, messages, method=LockMethod.LOCKF)

    def mbox(self, *contents: bytes) -> bytes:
        return b"".join(to_mbox_bytes("bob@example.org", c, WHEN) for c in contents)


def test_pop3_rewrite_journal_and_mailbox_are_synced_in_order(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    spool = _Spool(tmp_path)
    contents = [_message(i, 300 * i) for i in range(1, 6)]
    spool.deliver(*contents)
    with spool.open() as drop:
        start = len(trace.snapshot())
        drop.commit_deletions([1, 3])
        trace.mark("+OK")
    kept = [contents[i] for i in (1, 3, 4)]
    assert spool.path.read_bytes() == spool.mbox(*kept)
    calls = trace.snapshot()[start:]
    journal = spool.index_dir / "alice.rewrite"
    mailbox = inode_of(spool.path)
    index_dir_synced = trace.dir_synced(spool.index_dir)

    def at(predicate: Callable[[Call], bool], what: str, after: int = 0) -> int:
        for i in range(after, len(calls)):
            if predicate(calls[i]):
                return i
        raise AssertionError(f"no {what} after {after}:\n{trace.describe()}")

    published = at(lambda c: c.kind == "rename" and c.dst == str(journal), "journal rename")
    journal_inode = calls[published].inode
    journal_written = max(
        i for i, c in enumerate(calls[:published]) if c.kind == "write" and c.inode == journal_inode
    )
    assert journal_written < at(trace.file_synced(journal_inode), "journal sync") < published
    # The journal is durable (file and name) before the mailbox is touched.
    journal_durable = at(index_dir_synced, "index directory sync", published)
    touched = at(lambda c: c.kind == "write" and c.inode == mailbox, "write to the mailbox")
    assert journal_durable < touched, trace.describe()
    # The copied data is flushed before the journal says so (phase 2), then truncated.
    copied = at(trace.file_synced(mailbox), "sync of the copied data", touched)
    phase2 = at(lambda c: c.kind == "write" and c.inode == journal_inode, "phase 2", copied)
    truncated = at(lambda c: c.kind == "ftruncate" and c.inode == mailbox, "truncation", phase2)
    final_size = len(spool.mbox(*kept))
    final_sync = at(trace.file_synced(mailbox, final_size), "truncated mailbox sync", truncated)
    removed = at(lambda c: c.kind == "unlink" and c.dst == str(journal), "journal removal")
    removal_durable = at(index_dir_synced, "index directory sync", removed)
    ok = at(lambda c: c.dst == "+OK", "+OK")
    assert final_sync < removed < removal_durable < ok, trace.describe()


def test_pop3_quit_is_not_answered_before_the_rewrite_is_synced(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    """The server runs commit_deletions in a thread and answers +OK when it returns."""
    spool = _Spool(tmp_path)
    contents = [_message(i) for i in range(1, 4)]
    spool.deliver(*contents)
    mailbox = inode_of(spool.path)
    final_size = len(spool.mbox(contents[0], contents[2]))

    async def main(drop: MboxMaildrop) -> None:
        held = trace.hold_syncs(lambda c: c.inode == mailbox and c.size == final_size)
        with held as hold:
            task = asyncio.create_task(asyncio.to_thread(drop.commit_deletions, [2]))
            assert await asyncio.to_thread(hold.entered.wait, WAIT_SECONDS)
            await asyncio.sleep(0.05)
            assert not task.done(), "QUIT answered before the truncation was synced"
            hold.release.set()
            await asyncio.wait_for(task, WAIT_SECONDS)

    with spool.open() as drop:
        asyncio.run(main(drop))
    assert spool.path.read_bytes() == spool.mbox(contents[0], contents[2])


class _Crash(BaseException):
    pass


@pytest.mark.parametrize("doomed", [(2, 5), (5, 6)], ids=["middle", "tail"])
@pytest.mark.parametrize("point", ["none", "journal", "copied", "padded", "phase2", "truncated"])
def test_power_loss_during_a_pop3_rewrite_loses_no_mail(
    tmp_path: Path,
    trace: SyscallTrace,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    doomed: tuple[int, int],
) -> None:
    """Cut the power at each step of the rewrite (or after QUIT was answered): reopened,
    the mailbox holds every message, whole, and the deletions if they were acknowledged.
    Deleting the last messages leaves the journal no content to copy (an empty region)."""
    spool = _Spool(tmp_path)
    contents = [_message(i, 400 * i) for i in range(1, 7)]
    spool.deliver(*contents)
    spool.open().close()  # creates the index directory
    power = PowerLoss(trace, spool.dir, spool.index_dir)

    def crash(reached: str) -> None:
        if reached == point:
            raise _Crash(reached)

    monkeypatch.setattr(mbox_maildrop, "_crash_hook", crash)
    acknowledged = False
    with spool.open() as drop:
        try:
            drop.commit_deletions(doomed)
            acknowledged = True
        except _Crash:
            pass
    assert acknowledged == (point == "none")
    power.cut()
    monkeypatch.setattr(mbox_maildrop, "_crash_hook", lambda _point: None)

    kept = [c for n, c in enumerate(contents, 1) if n not in doomed]
    with spool.open() as drop:
        read = [b"".join(drop.read(n)) for n in range(1, len(drop.messages) + 1)]
    after = spool.path.read_bytes()
    if acknowledged:
        assert after == spool.mbox(*kept)
    else:
        # Not acknowledged: either outcome, but whole (recovery completes a durable journal).
        assert after in (spool.mbox(*kept), spool.mbox(*contents)), after[:200]
    assert len(read) == len(after.split(b"\n\nFrom ")) and all(read)
    assert not (spool.index_dir / "alice.rewrite").exists()


# -- newaliases --------------------------------------------------------------------------------


def test_newaliases_syncs_the_database_before_the_rename_and_the_directory_after(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("postmaster: root\nstaff: alice, bob\n")
    db = tmp_path / "aliases.db"
    for round_ in range(2):  # a new database, then one replacing it
        aliases.write_text(f"postmaster: root\nstaff: alice, bob\nround{round_}: carol\n")
        assert build_alias_database(aliases, db) == 3
        trace.mark("built")
        dir_sync = trace.assert_published_durably(db, db.stat().st_size)
        assert dir_sync < trace.index(lambda c: c.dst == "built", "built")
        # The next round must publish a new file: forget this round's calls.
        trace.calls.clear()
    with AliasDatabase(db) as database:
        assert database.lookup("round1") == ("carol",)


def test_newaliases_power_loss_keeps_the_old_or_the_new_database(
    tmp_path: Path, trace: SyscallTrace
) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("staff: alice\n")
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    db = db_dir / "aliases.db"
    power = PowerLoss(trace, db_dir)
    build_alias_database(aliases, db)
    aliases.write_text("staff: bob\n")
    build_alias_database(aliases, db)
    power.cut()
    with AliasDatabase(db) as database:
        assert database.lookup("staff") == ("bob",)  # both builds returned: the second holds


def test_threads_may_hold_their_own_syncs(tmp_path: Path, trace: SyscallTrace) -> None:
    """The trace's hold works across threads (the harness the tests above rely on)."""
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    done = threading.Event()

    def sync() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        done.set()

    with trace.hold_syncs(trace.file_synced(inode_of(path))) as hold:
        worker = threading.Thread(target=sync)
        worker.start()
        assert hold.entered.wait(WAIT_SECONDS)
        assert not done.is_set()
        hold.release.set()
        worker.join(WAIT_SECONDS)
    assert done.is_set() and trace.index(trace.file_synced(inode_of(path), 3), "the sync") >= 0


def test_a_power_cut_keeps_the_files_inode_numbers(tmp_path: Path, trace: SyscallTrace) -> None:
    """The harness's power cut restores what was durable in the same inodes, as a real one
    does: the rewrite journal names its mailbox by inode, so recovery after a cut that
    renumbered the files would wrongly find the mailbox replaced."""
    directory = tmp_path / "spool"
    directory.mkdir()
    kept = directory / "kept"
    kept.write_bytes(b"durable\n")
    # A second name outside keeps the inode alive, so a recreated file cannot get it back.
    os.link(kept, tmp_path / "elsewhere")
    inode = inode_of(kept)
    power = PowerLoss(trace, directory)
    with open(kept, "ab") as file:
        file.write(b"never synced\n")
    (directory / "new").write_bytes(b"never synced either\n")
    power.cut()
    assert os.listdir(directory) == ["kept"]
    assert kept.read_bytes() == b"durable\n"
    assert inode_of(kept) == inode
