"""Tests for posthouse.store.mbox.append and .mboxrd: the mboxrd format, the append transaction
(separation, durability, roll-back on failure) and concurrent writers using each lock
method, checked by parsing the resulting mailbox."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.mta.agents.mbox import MailboxWriter, mailbox_path
from posthouse.mta.errors import MailError
from posthouse.store.mbox import append as mbox
from posthouse.store.mbox import locking
from posthouse.store.mbox.append import MboxMessage, append_messages
from posthouse.store.mbox.locking import LockMethod, LockSettings, UnsafeMailboxError
from posthouse.store.mbox.mboxrd import MboxrdEncoder, mbox_from_line, to_mbox_bytes

WHEN = datetime(2026, 11, 26, 0, 1, 29, tzinfo=UTC)
FROM_LINE = b"From a@example.org Thu Nov 26 00:01:29 2026\n"
SRC = Path(__file__).resolve().parents[2] / "src"


def parse_mbox(data: bytes) -> list[bytes]:
    """Split an mboxrd file into message contents (unquoted, separator line removed)."""
    messages: list[list[bytes]] = []
    for line in re.findall(rb"[^\n]*\n|[^\n]+$", data):
        if line.startswith(b"From "):
            messages.append([])
            continue
        assert messages, "mailbox does not start with a From_ line"
        messages[-1].append(re.sub(rb"^>(>*From )", rb"\1", line))
    out = []
    for lines in messages:
        assert lines and lines[-1] == b"\n", "message not followed by a blank line"
        out.append(b"".join(lines[:-1]))
    return out


def encode_in_chunks(data: bytes, cuts: list[int]) -> bytes:
    encoder = MboxrdEncoder()
    pieces = []
    start = 0
    for cut in sorted(cuts):
        pieces.append(encoder.feed(data[start:cut]))
        start = cut
    pieces.append(encoder.feed(data[start:]))
    return b"".join(pieces) + encoder.finish()


# --- From_ line ---------------------------------------------------------------------------


def test_from_line_format() -> None:
    assert mbox_from_line("a@example.org", WHEN) == FROM_LINE


def test_from_line_pads_day_with_space_and_uses_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    when = datetime(2026, 3, 5, 1, 2, 3, tzinfo=plus_two)  # = Mar 4 23:02:03 UTC
    assert mbox_from_line("a@b", when) == b"From a@b Wed Mar  4 23:02:03 2026\n"
    naive = datetime(2026, 3, 5, 1, 2, 3)
    assert mbox_from_line("a@b", naive) == b"From a@b Thu Mar  5 01:02:03 2026\n"


@pytest.mark.parametrize("sender", ["", "<>", "  "])
def test_null_sender_is_mailer_daemon(sender: str) -> None:
    assert mbox_from_line(sender, WHEN) == b"From MAILER-DAEMON Thu Nov 26 00:01:29 2026\n"


def test_sender_brackets_dropped_and_whitespace_made_safe() -> None:
    assert mbox_from_line("<a@b>", WHEN).startswith(b"From a@b Thu ")
    assert mbox_from_line('"a b"@c\r\n', WHEN).startswith(b'From "a_b"@c Thu ')
    assert mbox_from_line("jörg@bücher.de", WHEN).startswith("From jörg@bücher.de ".encode())


# --- message body format ------------------------------------------------------------------


def test_to_mbox_bytes_quotes_from_lines_mboxrd() -> None:
    content = b"Subject: x\n\nFrom here\n>From there\n>>From far\n From not\nFromage\nx From y\n"
    assert to_mbox_bytes("a@example.org", content, WHEN) == FROM_LINE + (
        b"Subject: x\n\n>From here\n>>From there\n>>>From far\n From not\nFromage\nx From y\n\n"
    )


def test_to_mbox_bytes_first_line_and_last_line_quoted() -> None:
    assert to_mbox_bytes("a@example.org", b"From x", WHEN) == FROM_LINE + b">From x\n\n"


def test_crlf_becomes_lf_but_lone_cr_is_kept() -> None:
    content = b"A: b\r\n\r\nline\rmid\r\nFrom x\r\n"
    assert to_mbox_bytes("a@example.org", content, WHEN) == (
        FROM_LINE + b"A: b\n\nline\rmid\n>From x\n\n"
    )


@pytest.mark.parametrize(
    ("content", "stored"),
    [
        (b"body", b"body\n\n"),
        (b"body\n", b"body\n\n"),
        (b"body\r\n", b"body\n\n"),
        (b"body\n\n", b"body\n\n\n"),  # content's own blank line is kept
        (b"", b"\n"),
        (b"body\r", b"body\r\n\n"),
    ],
)
def test_message_ends_with_newline_and_one_separator_line(content: bytes, stored: bytes) -> None:
    assert to_mbox_bytes("a@example.org", content, WHEN) == FROM_LINE + stored


@pytest.mark.parametrize(
    ("data", "cut"),
    [
        (b"x\nFrom y\n", 3),  # "F|rom "
        (b"x\nFrom y\n", 6),  # "From| "
        (b"x\nFrom y\n", 2),  # "\n|From"
        (b"x\n>>From y\n", 3),  # ">|>From"
        (b"x\n>>From y\n", 5),  # ">>F|rom"
        (b"x\r\nFrom y\n", 2),  # "\r|\n"
        (b"x\nFro", 4),  # an undecided prefix at the very end
    ],
)
def test_quoting_across_a_chunk_boundary(data: bytes, cut: int) -> None:
    encoder = MboxrdEncoder()
    whole = encoder.feed(data) + encoder.finish()
    assert encode_in_chunks(data, [cut]) == whole


def test_quoting_byte_by_byte() -> None:
    data = b"From a\r\n>From b\r\n>>>From c\nFrom\nFro\n>F>From \n\r\nx\r"
    expected = b">From a\n>>From b\n>>>>From c\nFrom\nFro\n>F>From \n\nx\r\n\n"
    assert encode_in_chunks(data, list(range(1, len(data)))) == expected


_mail_text = st.lists(
    st.sampled_from([b"From ", b">", b"From", b"\r\n", b"\n", b"\r", b"x", b" ", b"F", b"rom "]),
    max_size=40,
).map(b"".join)


@given(data=_mail_text, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_chunking_never_changes_output(data: bytes, cuts: list[int]) -> None:
    whole = MboxrdEncoder()
    assert encode_in_chunks(data, [c for c in cuts if c <= len(data)]) == (
        whole.feed(data) + whole.finish()
    )


@given(data=_mail_text)
def test_round_trip_through_parser(data: bytes) -> None:
    normalised = data.replace(b"\r\n", b"\n")
    if normalised and not normalised.endswith(b"\n"):
        normalised += b"\n"
    stored = to_mbox_bytes("a@b", data, WHEN)
    assert parse_mbox(stored) == [normalised]


# --- append_messages ------------------------------------------------------------------------


class FailingReader(io.RawIOBase):
    """A message source that yields ``good`` bytes and then raises."""

    def __init__(self, good: bytes) -> None:
        self._good = io.BytesIO(good)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._good.read(len(buffer))
        if not data:
            raise OSError("queue file vanished")
        buffer[: len(data)] = data
        return len(data)


@pytest.mark.parametrize("method", list(LockMethod))
def test_append_creates_parent_and_mailbox(tmp_path: Path, method: LockMethod) -> None:
    box = tmp_path / "spool" / "mail" / "alice"
    old = os.umask(0o022)
    try:
        append_messages(box, [MboxMessage("a@example.org", b"S: 1\n\nbody\n", WHEN)], method=method)
    finally:
        os.umask(old)
    assert box.read_bytes() == FROM_LINE + b"S: 1\n\nbody\n\n"
    assert (box.stat().st_mode & 0o777) == 0o600
    assert (box.parent.stat().st_mode & 0o777) == 0o755
    assert not locking.lockfile_path(box).exists()


def test_append_several_messages_and_sources(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    queued = tmp_path / "df123"
    queued.write_bytes(b"S: 2\r\n\r\nFrom the queue\r\n")
    append_messages(
        box,
        [
            MboxMessage("a@example.org", b"S: 1\n\nfirst\n", WHEN),
            MboxMessage("a@example.org", queued, WHEN),
            MboxMessage("", io.BytesIO(b"S: 3\n\n>From stream"), WHEN),
        ],
        method=LockMethod.BOTH,
        chunk_size=3,
    )
    append_messages(box, [MboxMessage("a@example.org", b"S: 4\n\n", WHEN)], method=LockMethod.LOCKF)
    data = box.read_bytes()
    assert data == (
        FROM_LINE
        + b"S: 1\n\nfirst\n\n"
        + FROM_LINE
        + b"S: 2\n\n>From the queue\n\n"
        + b"From MAILER-DAEMON Thu Nov 26 00:01:29 2026\n"
        + b"S: 3\n\n>>From stream\n\n"
        + FROM_LINE
        + b"S: 4\n\n\n"
    )
    assert parse_mbox(data) == [
        b"S: 1\n\nfirst\n",
        b"S: 2\n\nFrom the queue\n",
        b"S: 3\n\n>From stream\n",
        b"S: 4\n\n",
    ]
    assert queued.read_bytes() == b"S: 2\r\n\r\nFrom the queue\r\n"  # can be delivered again


@pytest.mark.parametrize(
    ("existing", "joined"),
    [
        (b"From x Thu Nov 26 00:01:29 2026\nS: 0\n\nold", b"old\n\n"),
        (b"From x Thu Nov 26 00:01:29 2026\nS: 0\n\nold\n", b"old\n\n"),
        (b"From x Thu Nov 26 00:01:29 2026\nS: 0\n\nold\n\n", b"old\n\n"),
    ],
)
def test_existing_mailbox_gets_separated(tmp_path: Path, existing: bytes, joined: bytes) -> None:
    box = tmp_path / "alice"
    box.write_bytes(existing)
    append_messages(
        box, [MboxMessage("a@example.org", b"S: 1\n\nnew\n", WHEN)], method=LockMethod.LOCKF
    )
    prefix = b"From x Thu Nov 26 00:01:29 2026\nS: 0\n\n"
    assert box.read_bytes() == prefix + joined + FROM_LINE + b"S: 1\n\nnew\n\n"


@pytest.mark.parametrize("method", list(LockMethod))
def test_failure_mid_message_truncates_back(tmp_path: Path, method: LockMethod) -> None:
    box = tmp_path / "alice"
    original = b"From x Thu Nov 26 00:01:29 2026\nS: 0\n\nold"  # also needs separation
    box.write_bytes(original)
    sizes: list[int] = []
    real_write_all = mbox._write_all

    def spying_write_all(fd: int, data: bytes | bytearray) -> None:
        real_write_all(fd, data)
        sizes.append(os.fstat(fd).st_size)

    good = b"S: 2\n\n" + b"line of the second message\n" * 50
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mbox, "_write_all", spying_write_all)
        with pytest.raises(OSError, match="queue file vanished"):
            append_messages(
                box,
                [
                    MboxMessage("a@example.org", b"S: 1\n\ncomplete first message\n", WHEN),
                    MboxMessage("a@example.org", io.BufferedReader(FailingReader(good)), WHEN),
                ],
                method=method,
                chunk_size=64,
            )
    assert sizes and max(sizes) > len(original) + len(good) // 2  # it really wrote a lot
    assert box.read_bytes() == original
    assert not locking.lockfile_path(box).exists()


def test_disk_full_truncates_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = tmp_path / "alice"
    original = FROM_LINE + b"S: 0\n\nold\n\n"
    box.write_bytes(original)
    real_write_all = mbox._write_all
    calls = 0

    def filling_write_all(fd: int, data: bytes | bytearray) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            real_write_all(fd, bytes(data)[: len(data) // 2])
            raise OSError(28, "No space left on device")
        real_write_all(fd, data)

    monkeypatch.setattr(mbox, "_write_all", filling_write_all)
    with pytest.raises(OSError, match="No space left"):
        append_messages(
            box,
            [MboxMessage("a@example.org", b"S: 1\n\n" + b"z" * 500, WHEN)],
            method=LockMethod.BOTH,
            chunk_size=100,
        )
    assert calls == 3
    assert box.read_bytes() == original


def test_fsyncs_before_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = tmp_path / "alice"
    synced: list[bytes] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        if os.path.samestat(os.fstat(fd), box.stat()):
            synced.append(box.read_bytes())

    monkeypatch.setattr(os, "fsync", recording_fsync)
    append_messages(box, [MboxMessage("a@b", b"x\n", WHEN)], method=LockMethod.LOCKF)
    assert synced == [b"From a@b Thu Nov 26 00:01:29 2026\nx\n\n"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_applied_to_new_mailbox_only(tmp_path: Path) -> None:
    box = tmp_path / "alice"
    append_messages(
        box, [MboxMessage("a@b", b"x\n", WHEN)], method=LockMethod.LOCKF, owner=(4321, 8765)
    )
    st_new = box.stat()
    assert (st_new.st_uid, st_new.st_gid) == (4321, 8765)
    assert (st_new.st_mode & 0o777) == 0o600
    other = tmp_path / "bob"
    other.write_bytes(b"")
    append_messages(
        other, [MboxMessage("a@b", b"x\n", WHEN)], method=LockMethod.LOCKF, owner=(4321, 8765)
    )
    assert other.stat().st_uid == os.geteuid()


def test_rejects_non_positive_chunk_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        append_messages(tmp_path / "a", [], method=LockMethod.LOCKF, chunk_size=0)


# --- concurrent writers -----------------------------------------------------------------------

MESSAGE_SRC = textwrap.dedent(
    '''
    import hashlib

    def make_message(writer: str, i: int) -> tuple[bytes, bytes]:
        """(content to hand over, the LF form a reader must get back)."""
        lines = [b"From the writer %s message %d\\n" % (writer.encode(), i)]
        for n in range((i * 37) % 200 + 1):
            lines.append(b">" * (n % 3) + b"From line %d of %s/%d\\n" % (n, writer.encode(), i))
            lines.append(b"plain %d " % n * (n % 7) + b"\\n")
        body = b"".join(lines)
        head = (
            b"Message-ID: <%d.%s@test>\\n" % (i, writer.encode())
            + b"X-Body-SHA256: " + hashlib.sha256(body).hexdigest().encode() + b"\\n\\n"
        )
        lf = head + body
        return (lf.replace(b"\\n", b"\\r\\n") if i % 2 else lf), lf
    '''
)

POSTHOUSE_WRITER = MESSAGE_SRC + textwrap.dedent(
    """
    import sys
    from datetime import datetime, timezone
    from pathlib import Path
    from posthouse.store.mbox.append import MboxMessage, append_messages
    from posthouse.store.mbox.locking import LockMethod

    path, method, writer, count, chunk = sys.argv[1:6]
    print("ready", flush=True)
    sys.stdin.read(1)
    for i in range(int(count)):
        content, _ = make_message(writer, i)
        append_messages(
            Path(path),
            [MboxMessage(writer + "@test", content, datetime.now(timezone.utc))],
            method=LockMethod(method),
            chunk_size=int(chunk),
        )
    print("done", flush=True)
    """
)

# A foreign writer: plain fcntl.lockf, its own mboxrd quoting, one write() per line.
FCNTL_WRITER = MESSAGE_SRC + textwrap.dedent(
    """
    import fcntl, os, re, sys
    path, writer, count = sys.argv[1:4]
    print("ready", flush=True)
    sys.stdin.read(1)
    for i in range(int(count)):
        _, lf = make_message(writer, i)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        os.write(fd, b"From " + writer.encode() + b"@test Thu Nov 26 00:01:29 2026\\n")
        for line in lf.splitlines(keepends=True):
            os.write(fd, re.sub(rb"^(>*From )", rb">\\1", line))
        os.write(fd, b"\\n")
        os.fsync(fd)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)
    print("done", flush=True)
    """
)


def run_writers(commands: list[list[str]]) -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    procs = [
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for cmd in commands
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:  # start them all together
            assert proc.stdin is not None
            proc.stdin.write("g")
            proc.stdin.close()
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.read() == "done\n"
            assert proc.wait(timeout=240) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.mark.parametrize("method", list(LockMethod))
def test_concurrent_writers_never_interleave(tmp_path: Path, method: LockMethod) -> None:
    box = tmp_path / "alice"
    count = 50
    chunk_sizes = ["17", "256", "4096", "65536"]
    writers = [f"w{n}" for n in range(4)]
    commands = [
        [sys.executable, "-c", POSTHOUSE_WRITER, str(box), method.value, w, str(count), chunk]
        for w, chunk in zip(writers, chunk_sizes, strict=True)
    ]
    if method.uses_lockf:
        writers.append("fcntl")
        commands.append([sys.executable, "-c", FCNTL_WRITER, str(box), "fcntl", str(count)])
    run_writers(commands)

    namespace: dict[str, object] = {}
    exec(MESSAGE_SRC, namespace)
    make_message = namespace["make_message"]
    assert callable(make_message)
    expected = {make_message(w, i)[1] for w in writers for i in range(count)}

    stored = parse_mbox(box.read_bytes())
    assert len(stored) == len(writers) * count
    ids = [re.search(rb"^Message-ID: (\S+)$", m, re.MULTILINE) for m in stored]
    assert all(ids)
    assert len({m.group(1) for m in ids if m}) == len(stored)  # each exactly once
    for message in stored:
        head, _, body = message.partition(b"\n\n")
        digest = re.search(rb"^X-Body-SHA256: (\w+)$", head, re.MULTILINE)
        assert digest is not None
        assert hashlib.sha256(body).hexdigest().encode() == digest.group(1)
    assert set(stored) == expected
    assert not locking.lockfile_path(box).exists()


# --- ownership (mail.local's rule) and names ------------------------------------------------


def test_mailbox_of_an_unexpected_owner_is_refused_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = tmp_path / "alice"
    box.write_bytes(b"planted\n")
    stranger = os.geteuid() + 1
    with (
        caplog.at_level(logging.WARNING, logger="posthouse.store.mbox.locking"),
        pytest.raises(UnsafeMailboxError, match="owned by uid"),
        locking.locked_mailbox(box, LockMethod.LOCKF, allowed_owners={stranger}),
    ):
        pytest.fail("opened a mailbox of the wrong owner")
    assert f"mailbox {box} refused: mailbox is owned by uid {os.geteuid()}" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another uid (CI is root)")
def test_mailbox_owned_by_someone_else_is_not_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = tmp_path / "alice"
    box.write_bytes(b"planted\n")
    os.chown(box, 65534, 65534)  # nobody pre-created alice's mailbox to read her mail
    message = [MboxMessage("a@b", b"secret\n", WHEN)]
    with (
        caplog.at_level(logging.WARNING, logger="posthouse.store.mbox.locking"),
        pytest.raises(UnsafeMailboxError),
    ):
        append_messages(box, message, method=LockMethod.BOTH, owner=(4321, 4321))
    assert box.read_bytes() == b"planted\n"
    assert not locking.lockfile_path(box).exists()
    assert "owned by uid 65534" in caplog.text
    # The daemon's account (trusted_uids) and the user's own are accepted.
    append_messages(box, message, method=LockMethod.LOCKF, owner=(4321, 4321), trusted_uids=[65534])
    os.chown(box, 4321, 4321)
    append_messages(box, message, method=LockMethod.LOCKF, owner=(4321, 4321))
    assert box.read_bytes().count(b"secret") == 2


def test_new_mailbox_is_never_created_through_a_dangling_symlink(tmp_path: Path) -> None:
    target = tmp_path / "etc-shadow"
    box = tmp_path / "alice"
    box.symlink_to(target)
    with pytest.raises(UnsafeMailboxError, match="symbolic link"):
        append_messages(
            box, [MboxMessage("a@b", b"x\n", WHEN)], method=LockMethod.LOCKF, owner=(4321, 4321)
        )
    assert not target.exists()


@pytest.mark.parametrize("method", list(LockMethod))
def test_mailbox_named_like_a_lock_is_refused(tmp_path: Path, method: LockMethod) -> None:
    """A user called ``x.lock`` must not own (or hold) the dot-lock of user ``x``."""
    with pytest.raises(UnsafeMailboxError, match=r"ends in \.lock"):
        append_messages(tmp_path / "x.lock", [MboxMessage("a@b", b"x\n", WHEN)], method=method)
    assert not (tmp_path / "x.lock").exists()
    append_messages(tmp_path / "x", [MboxMessage("a@b", b"x\n", WHEN)], method=method)
    assert not (tmp_path / "x.lock").exists()


@pytest.mark.parametrize(
    "name", ["x.lock", "", ".", "..", "../etc/passwd", ".hidden", "-x", "a\nb"]
)
def test_mailbox_path_refuses_names_that_are_not_mailboxes(tmp_path: Path, name: str) -> None:
    with pytest.raises(MailError) as caught:
        mailbox_path(tmp_path, name)
    assert caught.value.status == "5.1.3"
    assert mailbox_path(tmp_path, "x.lockstep") == tmp_path / "x.lockstep"


def test_writer_turns_an_unsafe_mailbox_into_a_temporary_error(tmp_path: Path) -> None:
    (tmp_path / "alice").symlink_to(tmp_path / "elsewhere")
    writer = MailboxWriter(locking=LockSettings(LockMethod.LOCKF, timeout=5, stale_after=300))
    error = asyncio.run(writer.append(tmp_path / "alice", MboxMessage("a@b", b"x\n", WHEN)))
    assert error is not None and error.status == "4.2.0" and error.temporary
    assert "refused: mailbox is a symbolic link" in error.message
