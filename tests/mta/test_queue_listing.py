"""Tests for the queue listing path: :func:`scan_queue_files`, ``QueueStore.list_entries`` on a
scan, and the exact ``mailq`` lines of healthy and damaged entries written on disk."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.mta.queue.listing import list_queue, scan_queue
from posthouse.mta.queue.store import (
    Envelope,
    QueueStore,
    RecipientState,
    envelope_to_json,
    scan_queue_files,
)

# Tue Aug 24 10:12:00 2027 UTC
T0 = 1819102320.0
IDS = [f"01abcdefghjkmn{n:02d}" for n in range(10)]  # sorted as listed


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    s = QueueStore(tmp_path / "queue")
    yield s
    s.close()


def _write(store: QueueStore, qid: str, data: bytes | None, control: bytes | None) -> None:
    if data is not None:
        store.data_path(qid).write_bytes(data)
        os.utime(store.data_path(qid), (T0, T0))
    if control is not None:
        store.control_path(qid).write_bytes(control)


def _control(qid: str, size: int, *recipients: RecipientState) -> bytes:
    rcpts = list(recipients) or [RecipientState("r@example.net")]
    return envelope_to_json(Envelope(qid, "s@example.com", rcpts, T0, size))


def _deferred(address: str, error: str = "4.4.1 Connection refused") -> RecipientState:
    return RecipientState(address, status="deferred", attempts=1, last_error=error)


def test_exact_lines_of_healthy_and_damaged_entries(store: QueueStore) -> None:
    good, corrupt, wrong_type, no_data, short_data, no_control, escaped = IDS[:7]
    _write(store, good, b"x" * 1442, _control(good, 1442, _deferred("a@x"), _deferred("b@x")))
    _write(store, corrupt, b"y", b'{"v":1,"queue_id":')
    _write(store, wrong_type, b"z", _control(wrong_type, 1).replace(b'"size":1', b'"size":"1"'))
    _write(store, no_data, None, _control(no_data, 10))
    _write(store, short_data, b"12345", _control(short_data, 14))
    _write(store, no_control, b"left behind", None)
    os.utime(store.data_path(no_control), (T0 + 60, T0 + 60))
    # A recipient written with an escape (\\alice) takes json.loads' path: same listing.
    _write(store, escaped, b"e", _control(escaped, 1, RecipientState("\\alice", "pm@x")))

    pad, rpad = " " * 26, " " * 43
    assert list(list_queue(store, now=T0)) == [
        "                Mail Queue (7 requests)",
        "----Queue-ID---- --Size-- -----Q-Time----- ------------Sender/Recipient------------",
        f"{good}     1442 Tue Aug 24 10:12 <s@example.com>",
        f"{pad}(Deferred: 4.4.1 Connection refused)",
        f"{rpad}<a@x>",
        f"{rpad}<b@x>",
        f"{corrupt}        1 Tue Aug 24 10:12 (corrupt control file: not JSON: "
        "Expecting value: line 1 column 19 (char 18))",
        f"{wrong_type}        1 Tue Aug 24 10:12 (corrupt control file: "
        "field 'size' has the wrong type)",
        f"{no_data}       10 Tue Aug 24 10:12 <s@example.com>",
        f"{pad}(no data file)",
        f"{rpad}<r@example.net>",
        f"{short_data}       14 Tue Aug 24 10:12 <s@example.com>",
        f"{pad}(data file has 5 bytes, control file says 14)",
        f"{rpad}<r@example.net>",
        f"{no_control}       11 Tue Aug 24 10:13 (no control file)",
        f"{escaped}        1 Tue Aug 24 10:12 <s@example.com>",
        f"{rpad}<pm@x> (\\alice)",
        "-- 2 Kbytes in 7 requests.",
    ]


def test_corrupt_entries_show_the_data_file_time(store: QueueStore) -> None:
    qid = IDS[0]
    _write(store, qid, b"y", b"[]")
    os.utime(store.data_path(qid), (T0 + 3600, T0 + 3600))
    lines = list(list_queue(store, now=T0))
    assert lines[2] == f"{qid}        1 Tue Aug 24 11:12 (corrupt control file: not a JSON object)"


def test_scan_sees_regular_files_only(store: QueueStore) -> None:
    plain, linked, directory, data_only = IDS[:4]
    _write(store, plain, b"x", _control(plain, 1))
    store.data_path(linked).write_bytes(b"x")
    store.control_path(linked).symlink_to(store.control_path(plain))
    store.control_path(directory).mkdir()
    _write(store, data_only, b"x", None)
    (store.directory / f"{IDS[5]}.qf.tmp").write_bytes(b"")
    (store.directory / "README").write_text("not a queue file")

    files = scan_queue_files(store.directory)
    assert files.ids == [plain, linked, data_only]
    assert set(files.controls) == {plain}
    assert files.controls[plain] == os.stat(store.control_path(plain)).st_ino
    entries = {e.queue_id: e.problem for e in store.list_entries(files)}
    assert entries == {plain: None, linked: "no control file", data_only: "no control file"}


def test_entries_reflect_changes_since_the_scan(store: QueueStore) -> None:
    delivered, orphaned, completed, grown = IDS[:4]
    for qid in (delivered, orphaned, grown):
        _write(store, qid, b"x", _control(qid, 1))
    _write(store, completed, b"x", None)
    files = scan_queue_files(store.directory)

    store.remove(delivered)  # gone entirely: not listed
    store.control_path(orphaned).unlink()  # only its data file is left
    store.control_path(completed).write_bytes(_control(completed, 1))  # not seen by the scan
    store.data_path(grown).write_bytes(b"xx")
    entries = {e.queue_id: e.problem for e in store.list_entries(files)}
    assert entries == {
        orphaned: "no control file",
        completed: "no control file",
        grown: "data file has 2 bytes, control file says 1",
    }


def test_unreadable_control_file(store: QueueStore, monkeypatch: pytest.MonkeyPatch) -> None:
    qid = IDS[0]
    _write(store, qid, b"x", _control(qid, 1))
    real_open = os.open

    def deny(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if str(path).endswith(".qf"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)
    (entry,) = store.list_entries()
    assert entry.problem == "unreadable control file: Permission denied"
    assert entry.data_size == 1


def test_scan_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    scan = scan_queue(tmp_path / "absent")
    assert scan.count == 0 and scan.files.ids == [] and scan.locked == frozenset()


def test_times_out_of_range_do_not_stop_the_listing(store: QueueStore) -> None:
    for qid, when in zip(IDS, ("1e300", "NaN", "-1e18"), strict=False):
        control = _control(qid, 1).replace(
            b'"received_at":1819102320.0', f'"received_at":{when}'.encode()
        )
        _write(store, qid, b"x", control)
    lines = list(list_queue(store, now=T0))
    assert [line[:43] for line in lines[2:-1] if not line.startswith(" ")] == [
        f"{qid}        1 ?                " for qid in IDS[:3]
    ]


# -- the listing in two processes -------------------------------------------------------------


def _mixed_queue(store: QueueStore, count: int) -> list[str]:
    """``count`` entries, some damaged in each way, with varied sizes and times."""
    ids = [f"01abcdefghjk{n:04d}" for n in range(count)]
    for n, qid in enumerate(ids):
        kind = n % 7
        data = b"x" * (n * 37 % 5000)
        control = envelope_to_json(
            Envelope(
                qid,
                f"s{n}@example.com",
                [_deferred(f"r{n}@x", f"4.4.{n % 3} refused"), RecipientState(f"\\u{n}", "pm@x")],
                T0 - n * 61.5,
                len(data),
                client_address="192.0.2.1",
            )
        )
        if kind == 1:
            control = control[: n % len(control)]
        _write(
            store,
            qid,
            None if kind == 2 else data + (b"!" if kind == 3 else b""),
            None if kind == 4 else control,
        )
    return ids
