"""Tests for posthouse.mta.queue.listing: the mailq listing format, damage, locks and streaming."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.mta.queue.ids import new_queue_id
from posthouse.mta.queue.listing import (
    EMPTY_QUEUE,
    HEADER,
    MESSAGE_COLUMN,
    SENDER_COLUMN,
    format_queue,
    format_time,
    list_queue,
    locked_inodes,
    scan_queue,
)
from posthouse.mta.queue.store import (
    Envelope,
    QueueEntry,
    QueueStore,
    RecipientState,
    envelope_to_json,
)

# Tue Aug 24 10:12:00 2027 UTC
T0 = 1819102320.0
QID_A = "01abcdefghjkmnpq"
QID_B = "01abcdefghjkmnpr"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def entry(
    recipients: list[RecipientState],
    *,
    qid: str = QID_A,
    sender: str = "blaise@example.com",
    size: int = 1442,
    problem: str | None = None,
    **meta: object,
) -> QueueEntry:
    envelope = Envelope(qid, sender, recipients, T0, size, **meta)  # type: ignore[arg-type]
    return QueueEntry(qid, envelope, problem, size, T0 + 5)


def listing(*entries: QueueEntry, **options: object) -> list[str]:
    return list(format_queue(list(entries), now=T0 + 60, **options))  # type: ignore[arg-type]


def test_format_time() -> None:
    assert format_time(T0, T0) == "Tue Aug 24 10:12"
    assert format_time(T0 - 2 * 86400 + 3600, T0) == "Sun Aug 22 11:12"
    assert format_time(T0 - 86400 * 17, T0) == "Sat Aug  7 10:12"
    # More than half a year away: the year instead of the time, still 16 characters.
    assert format_time(T0 - 86400 * 400, T0) == "Mon Jul 20  2026"
    assert len(format_time(T0 - 86400 * 400, T0)) == 16


def test_empty_queue() -> None:
    assert list(format_queue([])) == [EMPTY_QUEUE]
    assert list(format_queue(iter(()), count=0)) == ["Mail queue is empty"]


def test_pending_recipient() -> None:
    assert listing(entry([RecipientState("corcoran@host1.corp.com")])) == [
        "                Mail Queue (1 request)",
        "----Queue-ID---- --Size-- -----Q-Time----- ------------Sender/Recipient------------",
        "01abcdefghjkmnpq     1442 Tue Aug 24 10:12 <blaise@example.com>",
        "                                           <corcoran@host1.corp.com>",
        "-- 2 Kbytes in 1 request.",
    ]


def test_deferred_with_reason_like_the_chapter() -> None:
    rcpt = RecipientState(
        "corcoran@host1.corp.com",
        status="deferred",
        attempts=1,
        last_error="Connection refused by host1.corp.com",
    )
    lines = listing(entry([rcpt]))
    assert lines[2:5] == [
        "01abcdefghjkmnpq     1442 Tue Aug 24 10:12 <blaise@example.com>",
        "                          (Deferred: Connection refused by host1.corp.com)",
        "                                           <corcoran@host1.corp.com>",
    ]
    # Without a recorded reason: just "(Deferred)".
    rcpt.last_error = None
    assert listing(entry([rcpt]))[3] == " " * MESSAGE_COLUMN + "(Deferred)"


def test_failed_and_sent_recipients() -> None:
    rcpts = [
        RecipientState("gone@example.net", status="failed", last_error="5.1.1 No such user"),
        RecipientState("done@example.net", status="sent", attempts=1),
    ]
    lines = listing(entry(rcpts))
    assert lines[3:5] == [
        " " * MESSAGE_COLUMN + "(Failed: 5.1.1 No such user)",
        " " * SENDER_COLUMN + "<gone@example.net>",
    ]
    assert not any("done@" in line for line in lines)  # delivered: not listed
    verbose = listing(entry(rcpts), verbose=True)
    assert " " * MESSAGE_COLUMN + "(Sent; 1 attempt)" in verbose
    assert " " * SENDER_COLUMN + "<done@example.net>" in verbose


def test_multiple_recipients_share_status_lines() -> None:
    refused = "4.4.1 Connection refused by mx.example.net"
    rcpts = [
        RecipientState("a@example.net", status="deferred", last_error=refused),
        RecipientState("b@example.net", status="deferred", last_error=refused),
        RecipientState("c@example.org", status="deferred", last_error="4.2.2 Mailbox full"),
        RecipientState("d@example.org"),
    ]
    lines = listing(entry(rcpts))
    pad, rpad = " " * MESSAGE_COLUMN, " " * SENDER_COLUMN
    assert lines[3:-1] == [
        f"{pad}(Deferred: {refused})",
        f"{rpad}<a@example.net>",
        f"{rpad}<b@example.net>",
        f"{pad}(Deferred: 4.2.2 Mailbox full)",
        f"{rpad}<c@example.org>",
        f"{rpad}<d@example.org>",
    ]


def test_expanded_recipient_shows_original_and_destination() -> None:
    rcpts = [
        RecipientState("\\alice", original="postmaster@example.com"),
        RecipientState("bob@example.com", original="bob@example.com"),
        RecipientState("|/usr/bin/vacation bob", original="bob@example.com"),
    ]
    rpad = " " * SENDER_COLUMN
    assert listing(entry(rcpts))[3:-1] == [
        f"{rpad}<postmaster@example.com> (\\alice)",
        f"{rpad}<bob@example.com>",
        f"{rpad}<bob@example.com> (|/usr/bin/vacation bob)",
    ]


def test_null_sender_and_verbose_details() -> None:
    rcpt = RecipientState(
        "x@example.net",
        status="deferred",
        attempts=3,
        last_error="4.4.1 timeout",
        next_attempt=T0 + 3600,
    )
    e = entry(
        [rcpt],
        sender="",
        client_address="192.0.2.7",
        helo="mx.example.org",
        auth_user="alice",
        protocol="ESMTPSA",
    )
    lines = listing(e, verbose=True)
    assert lines[2].endswith(" <>")
    pad = " " * MESSAGE_COLUMN
    assert lines[3] == (
        f"{pad}Client: 192.0.2.7  HELO: mx.example.org  Auth: alice  Protocol: ESMTPSA"
    )
    assert lines[4] == f"{pad}(Deferred: 4.4.1 timeout; 3 attempts, next Tue Aug 24 11:12)"
    local = entry([RecipientState("y@example.net")], protocol="local")
    assert listing(local, verbose=True)[3] == f"{pad}Client: local  Protocol: local"


def test_damaged_entries() -> None:
    no_control = QueueEntry(QID_A, None, "no control file", 512, T0)
    corrupt = QueueEntry(QID_B, None, "corrupt control file: not JSON", 0, T0)
    no_data = entry(
        [RecipientState("r@example.net")], qid="01abcdefghjkmnps", problem="no data file"
    )
    lines = listing(no_control, corrupt, no_data)
    assert lines[1] == HEADER
    assert lines[2] == "01abcdefghjkmnpq      512 Tue Aug 24 10:12 (no control file)"
    assert lines[3] == "01abcdefghjkmnpr        0 Tue Aug 24 10:12 (corrupt control file: not JSON)"
    assert lines[4] == "01abcdefghjkmnps     1442 Tue Aug 24 10:12 <blaise@example.com>"
    assert lines[5] == " " * MESSAGE_COLUMN + "(no data file)"
    assert lines[6] == " " * SENDER_COLUMN + "<r@example.net>"
    assert lines[-1] == "-- 2 Kbytes in 3 requests."


def test_column_alignment() -> None:
    entries = [
        entry([RecipientState("r@example.net")], qid=new_queue_id(), size=size)
        for size in (0, 7, 1442, 99_999_999)
    ]
    lines = listing(*entries, locked={entries[1].queue_id})
    header = lines[1]
    # The header's columns: 16 (id) + flag, 8 (size), 16 (time), then the sender.
    assert [m.start() for m in re.finditer(r"(?<= )-|^-", header)] == [0, 17, 26, 43]
    first_lines = [line for line in lines[2:-1] if not line.startswith(" ")]
    assert len(first_lines) == 4
    for line, e in zip(first_lines, entries, strict=True):
        assert line[:16] == e.queue_id
        assert line[16] in " *"
        assert line[17:25].lstrip() == str(e.data_size)
        assert line[25] == " " and line[26:42] == "Tue Aug 24 10:12" and line[42] == " "
        assert line[43] == "<"
    assert first_lines[1][16] == "*" and first_lines[0][16] == " "


def test_title_count_and_totals() -> None:
    one = entry([RecipientState("r@example.net")], size=1024)
    two = entry([RecipientState("r@example.net")], qid=QID_B, size=1025)
    lines = list(format_queue(iter([one, two]), now=T0))
    assert lines[0] == " " * 16 + "Mail Queue"  # not sized, no count given
    assert lines[-1] == "-- 3 Kbytes in 2 requests."
    title = next(format_queue(iter([one]), now=T0, count=5))
    assert title.endswith("Mail Queue (5 requests)")


def test_control_characters_are_escaped() -> None:
    rcpt = RecipientState(
        "x@example.net", status="deferred", last_error="4.0.0 bad\x1b[2J\r\nreply\udcff"
    )
    lines = listing(entry([rcpt], sender="evil\x07@example.com"))
    assert all(line.isprintable() for line in lines)
    assert lines[2].endswith("<evil\\x07@example.com>")
    assert "(Deferred: 4.0.0 bad\\x1b[2J\\x0d\\x0areply\\udcff)" in lines[3]


def test_streams_lazily() -> None:
    def endless() -> Iterator[QueueEntry]:
        for n in itertools.count():
            yield entry([RecipientState(f"r{n}@example.net")], size=n)

    lines = list(itertools.islice(format_queue(endless(), now=T0, count=10**6), 8))
    assert lines[0].endswith("(1000000 requests)")
    assert lines[7].endswith("<r2@example.net>")


# -- against a real queue directory -----------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    s = QueueStore(tmp_path / "queue")
    yield s
    s.close()


def _commit(store: QueueStore, *recipients: str, data: bytes = b"Subject: hi\r\n\r\nx\r\n") -> str:
    with store.new_message("sender@example.com", list(recipients), received_at=T0) as msg:
        msg.write(data)
        return msg.commit_blocking()


def test_list_queue_with_damage_and_lock(store: QueueStore) -> None:
    good = _commit(store, "a@example.net")
    claimed = _commit(store, "b@example.net", "c@example.net")
    no_data = new_queue_id()  # a version-1 control file (data in ID.df) whose data file is gone
    lost = Envelope(no_data, "sender@example.com", [RecipientState("d@example.net")], T0, 18)
    store.control_path(no_data).write_bytes(envelope_to_json(lost))
    orphan = new_queue_id()
    store.data_path(orphan).write_bytes(b"left behind")
    corrupt = new_queue_id()
    store.data_path(corrupt).write_bytes(b"x")
    store.control_path(corrupt).write_bytes(b"{not json")
    (store.directory / "README").write_text("ignored")
    (store.directory / f"{new_queue_id()}.df.tmp").write_bytes(b"being received")

    with store.claim(claimed) as envelope:
        assert envelope is not None
        lines = list(list_queue(store, now=T0))
    assert lines[0] == " " * 16 + "Mail Queue (5 requests)"
    by_id = {line[:16]: line for line in lines[2:-1] if not line.startswith(" ")}
    assert set(by_id) == {good, claimed, no_data, orphan, corrupt}
    assert by_id[good][16] == " "
    if Path("/proc/locks").exists():
        assert by_id[claimed][16] == "*"
    assert by_id[orphan].endswith(" (no control file)")
    assert by_id[orphan][17:25] == "      11"
    assert "(corrupt control file:" in by_id[corrupt]
    assert " " * MESSAGE_COLUMN + "(no data file)" in lines
    assert lines[-1] == "-- 1 Kbytes in 5 requests."
    # Released: no longer flagged.
    relisted = [line for line in list_queue(store, now=T0) if line.startswith(claimed)]
    assert relisted[0][16] == " "


def test_list_queue_never_opens_data_files(
    store: QueueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [_commit(store, f"r{n}@example.net") for n in range(3)]

    def forbidden(queue_id: str) -> None:
        raise AssertionError("data file opened")

    monkeypatch.setattr(store, "open_data", forbidden)
    lines = list(list_queue(store, now=T0))
    assert [line[:16] for line in lines if line[:1] not in (" ", "-")] == ids


def test_empty_and_missing_directories(tmp_path: Path) -> None:
    s = QueueStore(tmp_path / "q")
    assert list(list_queue(s)) == [EMPTY_QUEUE]
    assert scan_queue(tmp_path / "missing").count == 0


def test_scan_queue_counts_like_list_entries(store: QueueStore) -> None:
    qid = new_queue_id()
    envelope = Envelope(qid, "s@example.com", [RecipientState("r@example.net")], T0, 1)
    store.control_path(qid).write_bytes(envelope_to_json(envelope))
    store.data_path(qid).write_bytes(b"x")
    store.data_path(new_queue_id()).write_bytes(b"y")
    (store.directory / "ABCDEFGHJKMNPQRS.qf").write_bytes(b"")  # upper case: not an id
    (store.directory / f"{new_queue_id()}.qf.tmp").write_bytes(b"")
    scan = scan_queue(store.directory)
    assert scan.count == 2 == sum(1 for _ in store.list_entries())
    assert scan.locked == frozenset()


def test_locked_inodes_parses_the_kernel_table(tmp_path: Path) -> None:
    table = tmp_path / "locks"
    table.write_text(
        "1: POSIX  ADVISORY  WRITE 28182 fe:00:100 0 EOF\n"
        "2: FLOCK  ADVISORY  WRITE 4242 fe:00:200 0 EOF\n"
        "2: -> FLOCK  ADVISORY  WRITE 4343 fe:00:300 0 EOF\n"
        "3: FLOCK  ADVISORY  READ 4444 00:2d:400 0 EOF\n"
        "garbage\n"
    )
    assert locked_inodes(table) == {200, 400}
    assert locked_inodes(tmp_path / "absent") == frozenset()


_HOLDER = """
import sys, time
from pathlib import Path
from posthouse.mta.queue.store import QueueStore
with QueueStore(Path(sys.argv[1])).claim(sys.argv[2]) as envelope:
    print("1" if envelope is not None else "0", flush=True)
    time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs /proc/locks")
def test_lock_held_by_another_process_is_flagged(store: QueueStore) -> None:
    qid = _commit(store, "r@example.net")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store.directory), qid],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "1\n"
        assert scan_queue(store.directory).locked == {qid}
        line = next(li for li in list_queue(store, now=T0) if li.startswith(qid))
        assert line[16] == "*"
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert scan_queue(store.directory).locked == frozenset()
