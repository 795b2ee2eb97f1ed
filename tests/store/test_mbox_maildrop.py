"""Tests for posthouse.store.mbox.maildrop: the mbox maildrop POP3 serves.

Covers exact sizes versus what read() yields, the persistent index (reuse, tail parsing,
full re-index with UID carry-over), the session lock (also across a kill -9), deletions
with concurrent delivery by a real appender process, crash recovery of the in-place
rewrite, and damaged spools.  Mail is delivered with the real delivery agent
(posthouse.store.mbox.append.append_messages) and the real locks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posthouse.protocols.pop3.content import ContentWriter, ReadyWriter
from posthouse.store.maildrop import (
    Maildrop,
    MaildropBusy,
    MaildropError,
    open_maildrop,
)
from posthouse.store.mbox import maildrop as mbox_maildrop
from posthouse.store.mbox.append import MboxMessage, append_messages
from posthouse.store.mbox.locking import LockMethod, LockSettings, locked_mailbox
from posthouse.store.mbox.maildrop import MboxMaildrop
from posthouse.store.mbox.mboxrd import MboxrdDecoder, to_mbox_bytes
from posthouse.store.mbox.scan import Scanned

WHEN = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SRC = Path(__file__).resolve().parents[2] / "src"
UID_RE = re.compile(r"[\x21-\x7e]{1,70}")


class Spool:
    """A user's spool file plus the maildrop's directories, in a temporary directory."""

    def __init__(self, root: Path, method: LockMethod = LockMethod.LOCKF) -> None:
        self.root = root
        self.path = root / "spool" / "alice"
        self.index_dir = root / "index"
        self.lock_dir = root / "locks"
        self.method = method

    def open(self, timeout: float = 30.0) -> MboxMaildrop:
        return MboxMaildrop.open(
            self.path,
            user="alice",
            locking=LockSettings(self.method, timeout=timeout),
            index_dir=self.index_dir,
            session_lock_dir=self.lock_dir,
        )

    def deliver(self, *contents: bytes, sender: str = "bob@example.org") -> None:
        messages = [MboxMessage(sender, content, WHEN) for content in contents]
        append_messages(self.path, messages, method=self.method, timeout=5.0)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path)


def wire(content: bytes) -> bytes:
    """What POP must send (before dot-stuffing) for ``content`` delivered by the MTA."""
    text = content.replace(b"\r\n", b"\n")
    if text and not text.endswith(b"\n"):
        text += b"\n"
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def read_all(drop: Maildrop) -> list[bytes]:
    return [b"".join(drop.read(m.number)) for m in drop.messages]


def msg(n: int | str, body: bytes = b"hello\n") -> bytes:
    tag = str(n).encode()
    return b"Subject: message " + tag + b"\nMessage-ID: <" + tag + b"@example.org>\n\n" + body


# --- reading: exact sizes, unquoting, CRLF ------------------------------------------------


def test_sizes_match_what_read_yields(spool: Spool) -> None:
    contents = [
        msg(1, b"From the start\n>From quoted\n>>From twice\nFrom again\n"),
        b"From at the very start\r\n\r\nbody\r\n",
        msg(3, b"x" * 300_000),  # one long line, longer than the chunk size
        msg(4, (b"line\n" * 30_000) + b">From \n"),
        b"",  # empty message
        msg(6, b"trailing blank lines\n\n\n"),
        msg(7, b"no newline at the end"),
        msg(8, b"bare\rcarriage return\r"),
        msg(9, b">" * 100_000 + b"From deep\n"),
    ]
    spool.deliver(*contents)
    with spool.open() as drop:
        assert len(drop.messages) == len(contents)
        for m, content, data in zip(drop.messages, contents, read_all(drop), strict=True):
            assert m.size == len(data), m
            assert data == wire(content), m
        assert all(len(chunk) <= 2 * mbox_maildrop.CHUNK + 2 for chunk in drop.read(3))


def test_message_without_final_newline_written_by_another_program(spool: Spool) -> None:
    spool.path.parent.mkdir()
    spool.path.write_bytes(
        b"From a@example.org Sun Mar  1 12:00:00 2026\nSubject: one\n\n>From x\n\n"
        b"From b@example.org Sun Mar  1 12:00:00 2026\nSubject: two\n\nno newline"
    )
    with spool.open() as drop:
        data = read_all(drop)
        assert data == [b"Subject: one\r\n\r\nFrom x\r\n", b"Subject: two\r\n\r\nno newline\r\n"]
        assert [m.size for m in drop.messages] == [len(d) for d in data]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.sampled_from([b"From ", b">", b">From ", b"\n", b"\r", b"\r\n", b"a", b" ", b"F"]),
            max_size=30,
        ).map(b"".join),
        min_size=1,
        max_size=4,
    )
)
def test_round_trip_through_delivery(contents: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp))
        spool.deliver(*contents)
        with spool.open() as drop:
            data = read_all(drop)
            assert data == [wire(c) for c in contents]
            assert [m.size for m in drop.messages] == [len(d) for d in data]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([b"From ", b">", b"From", b"\n", b"\r", b"x"]), max_size=40).map(
        b"".join
    ),
    st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_decoder_output_does_not_depend_on_chunking(data: bytes, cuts: list[int]) -> None:
    whole = MboxrdDecoder()
    expected = whole.feed(data) + whole.finish()
    pieces = MboxrdDecoder()
    out, start = b"", 0
    for cut in sorted(c for c in cuts if c <= len(data)):
        out += pieces.feed(data[start:cut])
        start = cut
    out += pieces.feed(data[start:]) + pieces.finish()
    assert out == expected


# --- plain messages: served without the mboxrd decoder and without byte-stuffing ----------


def stuffed(data: bytes) -> bytes:
    """The general path's wire form of content ``data`` (dot-stuffed, terminated)."""
    writer = ContentWriter()
    return writer.feed(data) + writer.finish()


def test_plain_messages_are_marked_dot_free(spool: Spool) -> None:
    contents = {
        msg(1): True,
        msg(2, b"> a quoted reply\n>> and its quote\n>Fro\n"): True,
        msg(3, b"no newline at the end"): True,  # delivery completes the line
        b"": True,
        msg(5, b".leading dot\n"): False,
        msg(6, b"From the start\n"): False,  # stored as ">From ": unquoting needed
        msg(7, b">From already quoted\n"): False,
        msg(8, b"bare\rcarriage return\n"): False,
        b".": False,
    }
    spool.deliver(*contents)
    with spool.open() as drop:
        assert [m.dot_free for m in drop.messages] == list(contents.values())
        assert read_all(drop) == [wire(c) for c in contents]


def test_messages_written_by_other_programs_are_not_plain(spool: Spool) -> None:
    spool.path.parent.mkdir()
    spool.path.write_bytes(
        b"From a@example.org Sun Mar  1 12:00:00 2026\r\nSubject: crlf\r\n\r\nbody\r\n\n"
        b"From b@example.org Sun Mar  1 12:00:00 2026\nSubject: cut\n\nno newline"
    )
    with spool.open() as drop:
        assert [m.dot_free for m in drop.messages] == [False, False]
        assert read_all(drop) == [
            b"Subject: crlf\r\n\r\nbody\r\n",
            b"Subject: cut\r\n\r\nno newline\r\n",
        ]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(
            st.sampled_from(
                [b"From ", b">", b">From ", b"\n", b"\r", b".", b"\n.", b"> x", b"a", b"F"]
            ),
            max_size=30,
        ).map(b"".join),
        min_size=1,
        max_size=4,
    ),
    st.integers(min_value=0, max_value=2),
)
def test_plain_path_gives_the_wire_bytes_of_the_general_path(
    contents: list[bytes], long_body: int
) -> None:
    # Some messages longer than a read chunk, so both plain paths (one read, chunks) run.
    contents = [
        c + b"y" * (70_000 * long_body) + b"\n" if i == 0 else c for i, c in enumerate(contents)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp))
        spool.deliver(*contents)
        with spool.open() as drop:
            for m, content in zip(drop.messages, contents, strict=True):
                data = b"".join(drop.read(m.number))
                assert data == wire(content)
                assert m.size == len(data)
                if m.dot_free:
                    ready = ReadyWriter()
                    fast = b"".join(ready.feed(c) for c in drop.read(m.number)) + ready.finish()
                    assert fast == stuffed(data)


def test_old_index_is_upgraded_keeping_the_uids(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    spool.deliver(msg(1), msg(2, b".dot\n"))
    with spool.open() as drop:
        uids = [m.uid for m in drop.messages]
    index = spool.index_dir / "alice.idx"
    header, *rows = index.read_bytes().splitlines()
    old_header = header.replace(b'"version": 2', b'"version": 1')
    old_rows = [json.dumps(json.loads(row)[:7]).encode() for row in rows]
    assert old_header != header
    index.write_bytes(b"\n".join([old_header, *old_rows]) + b"\n")
    with caplog.at_level(logging.INFO, logger="posthouse.store"), spool.open() as drop:
        assert drop.index_stats.mode == "full"
        assert [m.uid for m in drop.messages] == uids
        assert [m.dot_free for m in drop.messages] == [True, False]
    assert "older format" in caplog.text
    assert index.read_bytes().startswith(header)


@pytest.mark.parametrize("body_size", [5_000, 100_000])
def test_plain_message_changed_in_place_is_not_served(spool: Spool, body_size: int) -> None:
    # The change lies beyond the bytes the message's ident covers, and keeps the size.
    spool.deliver(msg(1, b"x" * body_size + b"\nline\n"), msg(2))
    with spool.open() as drop:
        assert drop.messages[0].dot_free
        data = spool.path.read_bytes()
        spool.path.write_bytes(data.replace(b"\nline\n", b"\n.ine\n", 1))
        with pytest.raises(MaildropError):
            b"".join(drop.read(1))
        assert b"".join(drop.read(2)) == wire(msg(2))


def test_read_out_of_range_raises_index_error(spool: Spool) -> None:
    spool.deliver(msg(1))
    with spool.open() as drop:
        for number in (0, 2, -1):
            with pytest.raises(IndexError):
                drop.read(number)


# --- empty and missing ----------------------------------------------------------------------


def test_missing_mailbox_is_empty_and_not_created(spool: Spool) -> None:
    with spool.open() as drop:
        assert drop.messages == ()
        assert drop.index_stats.mode == "missing"
        drop.commit_deletions([])
    assert not spool.path.exists()


def test_empty_mailbox(spool: Spool) -> None:
    spool.path.parent.mkdir()
    spool.path.write_bytes(b"")
    with spool.open() as drop:
        assert drop.messages == ()


def test_factory_returns_a_maildrop(spool: Spool) -> None:
    spool.deliver(msg(1))
    drop = open_maildrop(
        spool.path,
        user="alice",
        locking=LockSettings(LockMethod.LOCKF, timeout=1.0),
        index_dir=spool.index_dir,
        session_lock_dir=spool.lock_dir,
    )
    try:
        assert isinstance(drop, Maildrop)
        assert [m.number for m in drop.messages] == [1]
    finally:
        drop.close()


def test_unusable_user_names_are_refused(spool: Spool) -> None:
    for user in ("", "../etc", "a/b", ".hidden", "nul\x00"):
        with pytest.raises(ValueError):
            MboxMaildrop.open(
                spool.path,
                user=user,
                locking=LockSettings(LockMethod.LOCKF),
                index_dir=spool.index_dir,
                session_lock_dir=spool.lock_dir,
            )


# --- the persistent index ------------------------------------------------------------------


@pytest.fixture
def count_scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the start offset of every parse of the mailbox."""
    starts: list[int] = []
    real = mbox_maildrop._scan

    def counting(fd: int, start: int, path: Path) -> tuple[list[Scanned], int]:
        starts.append(start)
        return real(fd, start, path)

    monkeypatch.setattr(mbox_maildrop, "_scan", counting)
    return starts


def test_index_is_reused_and_only_the_tail_is_parsed(spool: Spool, count_scans: list[int]) -> None:
    spool.deliver(*(msg(i) for i in range(2000)))
    with spool.open() as drop:
        assert drop.index_stats.mode == "full"
        assert len(drop.messages) == 2000
        uids = [m.uid for m in drop.messages]
    assert count_scans == [0]
    assert len(set(uids)) == 2000 and all(UID_RE.fullmatch(u) for u in uids)

    with spool.open() as drop:
        assert drop.index_stats.mode == "unchanged"
        assert drop.index_stats.scanned_bytes == 0
        assert [m.uid for m in drop.messages] == uids
    assert count_scans == [0]  # no second parse

    size_before = spool.path.stat().st_size
    spool.deliver(msg("new-1"), msg("new-2"))
    with spool.open() as drop:
        assert drop.index_stats.mode == "tail"
        last_length = len(to_mbox_bytes("bob@example.org", msg(1999), WHEN))
        tail = spool.path.stat().st_size - size_before
        assert drop.index_stats.scanned_bytes == last_length + tail
        assert [m.uid for m in drop.messages[:2000]] == uids
        new = [m.uid for m in drop.messages[2000:]]
        assert len(new) == 2 and not set(new) & set(uids)
        assert read_all(drop)[-1] == wire(msg("new-2"))
    assert count_scans[1] == size_before - last_length


def test_same_size_change_in_place_forces_full_reindex(spool: Spool) -> None:
    spool.deliver(msg(1), msg(2))
    with spool.open() as drop:
        uids = [m.uid for m in drop.messages]
    data = spool.path.read_bytes().replace(b"message 1", b"MESSAGE 1")
    with open(spool.path, "r+b") as f:
        f.write(data)
    os.utime(spool.path, ns=(1, 1))  # mtime differs from the indexed one whatever the clock
    with spool.open() as drop:
        assert drop.index_stats.mode == "full"
        assert read_all(drop)[0] == wire(msg(1)).replace(b"message 1", b"MESSAGE 1")
        assert drop.messages[0].uid != uids[0]
        assert drop.messages[1].uid == uids[1]


def test_mailbox_rewritten_by_another_program_keeps_uids_of_unchanged_messages(
    spool: Spool,
) -> None:
    contents = [msg(1), msg(2), msg(2), msg(3), msg(4)]  # includes identical duplicates
    spool.deliver(*contents)
    with spool.open() as drop:
        uids = [m.uid for m in drop.messages]
    # A mail reader deletes message 1, edits message 4 and writes a new file over the old.
    new = [contents[1], contents[2], contents[3], msg(4, b"edited\n")]
    replacement = spool.path.with_name("alice.new")
    replacement.write_bytes(b"".join(to_mbox_bytes("bob@example.org", c, WHEN) for c in new))
    os.replace(replacement, spool.path)
    with spool.open() as drop:
        assert drop.index_stats.mode == "full"
        assert read_all(drop) == [wire(c) for c in new]
        got = [m.uid for m in drop.messages]
    assert got[:3] == uids[1:4]
    assert got[3] not in uids


def test_damaged_index_is_rebuilt(spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    spool.deliver(msg(1), msg(2))
    with spool.open():
        pass
    (spool.index_dir / "alice.idx").write_bytes(b'{"format": "posthouse-mbox-index", "ver')
    with caplog.at_level(logging.WARNING, logger="posthouse.store"), spool.open() as drop:
        assert drop.index_stats.mode == "full"
        assert read_all(drop) == [wire(msg(1)), wire(msg(2))]
    assert "unusable index" in caplog.text


@pytest.mark.parametrize(
    "bad",
    [
        b"[1,2]",
        b'[-1,1,1,1,1,"u","i",1]',
        b'[true,1,1,1,1,"u","i",1]',
        b'[1,1,1,1,1,2,"i",1]',
        b'[1,1,1,1,1,"u","i",2]',
        b'[1,1,1,1,1,"u","i",true]',
        b"{}",
    ],
)
def test_index_with_a_bad_entry_is_rebuilt(spool: Spool, bad: bytes) -> None:
    spool.deliver(msg(1), msg(2))
    with spool.open():
        pass
    index = spool.index_dir / "alice.idx"
    header, first, _ = index.read_bytes().splitlines()
    index.write_bytes(b"\n".join([header, first, bad]) + b"\n")
    with spool.open() as drop:
        assert drop.index_stats.mode == "full"
        assert read_all(drop) == [wire(msg(1)), wire(msg(2))]


def test_last_message_completed_by_a_later_append_keeps_its_uid(spool: Spool) -> None:
    spool.path.parent.mkdir()
    spool.path.write_bytes(b"From a@example.org Sun Mar  1 12:00:00 2026\nSubject: cut\n\nhalf")
    with spool.open() as drop:
        (uid,) = [m.uid for m in drop.messages]
    spool.deliver(msg(2))
    with spool.open() as drop:
        assert drop.index_stats.mode == "tail"
        assert drop.messages[0].uid == uid
        assert read_all(drop) == [b"Subject: cut\r\n\r\nhalf\r\n", wire(msg(2))]


# --- damaged spools ------------------------------------------------------------------------


def test_corrupt_spool_serves_intact_messages_and_logs(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    good = [msg(1), msg(2)]
    spool.path.parent.mkdir()
    spool.path.write_bytes(
        b"garbage that is not an mbox\n\x00\x01 more\n"
        + b"".join(to_mbox_bytes("bob@example.org", c, WHEN) for c in good)
        + b"From carol@example.org Sun Mar  1 12:00:00 2026\nSubject: truncated\n\nhalf a li"
    )
    with caplog.at_level(logging.WARNING, logger="posthouse.store"), spool.open() as drop:
        data = read_all(drop)
        assert data[:2] == [wire(c) for c in good]
        assert data[2] == b"Subject: truncated\r\n\r\nhalf a li\r\n"
        assert [m.size for m in drop.messages] == [len(d) for d in data]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and str(spool.path) in errors[0].getMessage()
    assert "offset 0" in errors[0].getMessage()
    assert "truncated" in caplog.text


def test_garbage_only_spool_is_empty_and_logged(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    spool.path.parent.mkdir()
    spool.path.write_bytes(b"\x00" * 100 + b"\nnot mail\n")
    with caplog.at_level(logging.ERROR, logger="posthouse.store"), spool.open() as drop:
        assert drop.messages == ()
    assert "no From_ line" in caplog.text


def test_mailbox_changed_in_place_during_the_session_is_detected(spool: Spool) -> None:
    spool.deliver(msg(1), msg(2), msg(3))
    before = spool.path.read_bytes()
    with spool.open() as drop:
        first = len(to_mbox_bytes("bob@example.org", msg(1), WHEN))
        with open(spool.path, "r+b") as f:  # another program deletes message 1 in place
            f.write(before[first:])
            f.truncate()
        changed = spool.path.read_bytes()
        with pytest.raises(MaildropError):
            drop.read(2)
        with pytest.raises(MaildropError):
            drop.commit_deletions([3])
    assert spool.path.read_bytes() == changed


# --- session lock ---------------------------------------------------------------------------


def test_second_session_is_busy_until_the_first_closes(spool: Spool) -> None:
    spool.deliver(msg(1))
    first = spool.open()
    with pytest.raises(MaildropBusy):
        spool.open()
    other_user = MboxMaildrop.open(
        spool.path.with_name("bob"),
        user="bob",
        locking=LockSettings(spool.method),
        index_dir=spool.index_dir,
        session_lock_dir=spool.lock_dir,
    )
    other_user.close()
    first.close()
    first.close()  # idempotent
    with spool.open() as again:
        assert len(again.messages) == 1


def _python(script: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(script)]


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


def test_session_lock_dies_with_a_killed_process(spool: Spool) -> None:
    spool.deliver(msg(1))
    proc = subprocess.Popen(
        _python(
            f"""
            import sys
            from pathlib import Path
            from posthouse.store.mbox.locking import LockMethod, LockSettings
            from posthouse.store.mbox.maildrop import MboxMaildrop
            drop = MboxMaildrop.open(
                Path({str(spool.path)!r}), user="alice",
                locking=LockSettings(LockMethod.LOCKF, timeout=5.0),
                index_dir=Path({str(spool.index_dir)!r}),
                session_lock_dir=Path({str(spool.lock_dir)!r}))
            print(len(drop.messages), flush=True)
            sys.stdin.read()
            """
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_child_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"1\n"
        with pytest.raises(MaildropBusy):
            spool.open()
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.stdout.close()
    assert proc.returncode == -9
    with spool.open() as drop:
        assert len(drop.messages) == 1


def test_lock_timeout_is_a_temporary_error_and_frees_the_session(spool: Spool) -> None:
    spool.deliver(msg(1))
    with locked_mailbox(spool.path, spool.method, timeout=1.0):
        with pytest.raises(MaildropError) as info:
            spool.open(timeout=0.05)
        assert info.value.temporary
    with spool.open() as drop:
        assert len(drop.messages) == 1


def test_symlinked_mailbox_is_a_permanent_error(spool: Spool) -> None:
    spool.deliver(msg(1))
    target = spool.root / "elsewhere"
    os.replace(spool.path, target)
    spool.path.symlink_to(target)
    with pytest.raises(MaildropError) as info:
        spool.open()
    assert not info.value.temporary


# --- deletions ------------------------------------------------------------------------------


def test_deletions_keep_the_other_uids_and_the_file_exact(spool: Spool) -> None:
    contents = [msg(i) for i in range(1, 8)]
    spool.deliver(*contents)
    with spool.open() as drop:
        uids = [m.uid for m in drop.messages]
        drop.commit_deletions([2, 3, 6])
    keep = [0, 3, 4, 6]
    assert spool.path.read_bytes() == b"".join(
        to_mbox_bytes("bob@example.org", contents[i], WHEN) for i in keep
    )
    with spool.open() as drop:
        assert drop.index_stats.mode == "unchanged"
        assert [m.uid for m in drop.messages] == [uids[i] for i in keep]
        assert read_all(drop) == [wire(contents[i]) for i in keep]
        drop.commit_deletions([1, 2, 3, 4])
    assert spool.path.read_bytes() == b""
    with spool.open() as drop:
        assert drop.messages == ()
    assert not (spool.index_dir / "alice.rewrite").exists()


@pytest.mark.parametrize("method", list(LockMethod))
def test_delivery_during_the_session(tmp_path: Path, method: LockMethod) -> None:
    spool = Spool(tmp_path, method)
    spool.deliver(msg(1), msg(2), msg(3))
    with spool.open() as drop:
        uids = [m.uid for m in drop.messages]
        spool.deliver(msg("late", b"From the session\n" + b"y" * 100_000 + b"\n"))
        assert len(drop.messages) == 3
        assert read_all(drop) == [wire(msg(i)) for i in (1, 2, 3)]
        drop.commit_deletions([1, 3])
    with spool.open() as drop:
        assert drop.index_stats.mode == "tail"
        assert read_all(drop) == [
            wire(msg(2)),
            wire(msg("late", b"From the session\n" + b"y" * 100_000 + b"\n")),
        ]
        assert drop.messages[0].uid == uids[1]
        assert drop.messages[1].uid not in uids


def test_deleting_a_truncated_last_message_takes_the_newlines_that_completed_it(
    spool: Spool,
) -> None:
    spool.path.parent.mkdir()
    first = to_mbox_bytes("bob@example.org", msg(1), WHEN)
    spool.path.write_bytes(first + b"From a@example.org Sun Mar  1 12:00:00 2026\n\ncut")
    with spool.open() as drop:
        spool.deliver(msg(3))  # adds "\n\n" after "cut"
        drop.commit_deletions([2])
    assert spool.path.read_bytes() == first + to_mbox_bytes("bob@example.org", msg(3), WHEN)


def test_commit_happens_once(spool: Spool) -> None:
    spool.deliver(msg(1), msg(2))
    with spool.open() as drop:
        with pytest.raises(IndexError):
            drop.commit_deletions([3])
        drop.commit_deletions([1])
        with pytest.raises(MaildropError):
            drop.commit_deletions([2])
        with pytest.raises(MaildropError):
            drop.read(2)


APPENDER = """
    import sys
    from datetime import UTC, datetime
    from pathlib import Path
    from posthouse.store.mbox.append import MboxMessage, append_messages
    from posthouse.store.mbox.locking import LockMethod
    path, method = Path(sys.argv[1]), LockMethod(sys.argv[2])
    when = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    for line in sys.stdin:
        batch, count = line.split()
        for i in range(int(count)):
            body = b"Subject: keep %s-%d\\n\\nFrom here\\n" % (batch.encode(), i)
            body += b"z" * (i * 997 % 20000) + b"\\n"
            append_messages(path, [MboxMessage("app@example.org", body, when)],
                            method=method, timeout=30.0)
            if i == 0:
                print("started", flush=True)
        print("done", flush=True)
"""


def appended(batch: int, i: int) -> bytes:
    return b"Subject: keep %d-%d\n\nFrom here\n" % (batch, i) + b"z" * (i * 997 % 20000) + b"\n"


@pytest.mark.parametrize("method", list(LockMethod))
def test_concurrent_appender_while_deleting_loses_nothing(
    tmp_path: Path, method: LockMethod
) -> None:
    spool = Spool(tmp_path, method)
    doomed = [msg(f"doomed-{i}", b"x" * (i * 1500)) for i in range(40)]
    spool.deliver(*doomed)
    proc = subprocess.Popen(
        [*_python(APPENDER), str(spool.path), method.value],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_child_env(),
    )
    assert proc.stdin is not None and proc.stdout is not None
    batches, per_batch = 5, 25
    try:
        for batch in range(batches):
            with spool.open() as drop:
                proc.stdin.write(b"%d %d\n" % (batch, per_batch))
                proc.stdin.flush()
                assert proc.stdout.readline() == b"started\n"  # a delivery after our snapshot
                numbers = [
                    m.number
                    for m, data in zip(drop.messages, read_all(drop), strict=True)
                    if b"doomed" in data
                ]
                drop.commit_deletions(numbers[::2])  # runs while the appender appends
            assert proc.stdout.readline() == b"done\n"
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        proc.stdout.close()
    with spool.open() as drop:
        data = read_all(drop)
    expected_keep = {wire(appended(b, i)) for b in range(batches) for i in range(per_batch)}
    kept = [d for d in data if b"keep" in d]
    assert len(kept) == len(expected_keep) and set(kept) == expected_keep
    left = [d for d in data if b"doomed" in d]
    assert len(left) == 1 and all(d in {wire(c) for c in doomed} for d in left)
    assert len(data) == len(kept) + len(left)


# --- crash recovery of the rewrite -----------------------------------------------------------


class Crash(BaseException):
    pass


@pytest.fixture
def crash_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Points to crash at: ``"name"`` for its next occurrence, ``"name@n"`` for the n-th."""
    points: list[str] = []
    seen: dict[str, int] = {}

    def hook(point: str) -> None:
        seen[point] = seen.get(point, 0) + 1
        for wanted in (point, f"{point}@{seen[point]}"):
            if wanted in points:
                points.remove(wanted)
                seen.clear()
                raise Crash(point)

    monkeypatch.setattr(mbox_maildrop, "_crash_hook", hook)
    yield points


@pytest.mark.parametrize("point", ["journal", "copied", "padded", "phase2", "truncated"])
@pytest.mark.parametrize("deliver_after_crash", [False, True])
def test_interrupted_rewrite_is_completed_at_next_open(
    spool: Spool, crash_at: list[str], point: str, deliver_after_crash: bool
) -> None:
    contents = [msg(i, b"b" * (i * 300)) for i in range(1, 7)]
    spool.deliver(*contents)
    late, after = msg("late"), msg("after-crash", b"a" * 5000)
    with spool.open() as drop:
        uids = [m.uid for m in drop.messages]
        spool.deliver(late)
        crash_at.append(point)
        with pytest.raises(Crash):
            drop.commit_deletions([2, 5])
    assert (spool.index_dir / "alice.rewrite").exists()
    if deliver_after_crash:
        spool.deliver(after)
    keep = [contents[i] for i in (0, 2, 3, 5)] + [late] + ([after] if deliver_after_crash else [])
    with spool.open() as drop:
        assert read_all(drop) == [wire(c) for c in keep]
        assert [m.uid for m in drop.messages[:4]] == [uids[i] for i in (0, 2, 3, 5)]
    assert spool.path.read_bytes() == b"".join(
        to_mbox_bytes("bob@example.org", c, WHEN) for c in keep
    )
    assert not (spool.index_dir / "alice.rewrite").exists()


@pytest.mark.parametrize("second", ["journal", "copied@2", "padded@2", "phase2@2", "truncated"])
def test_crash_while_moving_mail_delivered_after_a_crash(
    spool: Spool, crash_at: list[str], second: str
) -> None:
    contents = [msg(i) for i in range(1, 5)]
    spool.deliver(*contents)
    with spool.open() as drop:
        crash_at.append("copied")
        with pytest.raises(Crash):
            drop.commit_deletions([1])
    spool.deliver(msg("after-1"))
    crash_at.append(second)  # the old journal is redone, then moving "after-1" down crashes
    with pytest.raises(Crash):
        spool.open()
    assert not crash_at
    spool.deliver(msg("after-2"))
    with spool.open() as drop:
        assert read_all(drop) == [wire(c) for c in [*contents[1:], msg("after-1"), msg("after-2")]]


def test_incomplete_journal_leaves_the_mailbox_alone(spool: Spool) -> None:
    spool.deliver(msg(1), msg(2))
    before = spool.path.read_bytes()
    spool.index_dir.mkdir()
    (spool.index_dir / "alice.rewrite.tmp").write_bytes(b"1{partial")
    (spool.index_dir / "alice.rewrite").write_bytes(b"garbage")
    with spool.open() as drop:
        assert len(drop.messages) == 2
    assert spool.path.read_bytes() == before
    assert not list(spool.index_dir.glob("alice.rewrite*"))


def test_close_does_not_drop_another_threads_lockf_lock(spool: Spool) -> None:
    """Closing our read descriptor waits for a delivery in progress in this process."""
    spool.deliver(msg(1))
    drop = spool.open()
    entered, release = threading.Event(), threading.Event()

    def deliver_slowly() -> None:
        with locked_mailbox(spool.path, LockMethod.LOCKF, timeout=5.0):
            entered.set()
            release.wait(5.0)

    worker = threading.Thread(target=deliver_slowly)
    worker.start()
    assert entered.wait(5.0)
    closer = threading.Thread(target=drop.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # blocked on the mailbox lock, descriptor still open
    release.set()
    worker.join()
    closer.join(5.0)
    assert not closer.is_alive()
