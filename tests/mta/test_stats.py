"""Tests for posthouse.mta.stats: counting, batching, concurrency, reset by truncation."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.mta.stats import (
    AgentStats,
    CorruptStatistics,
    Statistics,
    StatsTable,
    format_stats,
    format_stats_program,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "statistics"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_counting(path: Path) -> None:
    with Statistics(path, flush_interval=0) as stats:
        stats.record_received("esmtp", 1000)
        stats.record_received("esmtp", 2500)
        stats.record_sent("local", 1000)
        stats.record_sent("esmtp", 2500)
        stats.record_rejected("esmtp")
        stats.record_discarded("local")
        stats.record_received("prog", 10)
        table = stats.read()
    assert [a.name for a in table.agents] == ["esmtp", "local", "prog"]
    assert table.agent("esmtp") == AgentStats("esmtp", 2, 3500, 1, 2500, 1, 0)
    assert table.agent("local") == AgentStats("local", 0, 0, 1, 1000, 0, 1)
    assert table.agent("smtp") == AgentStats("smtp")
    assert table.total == AgentStats("", 3, 3510, 2, 3500, 1, 1)
    assert abs(table.since - time.time()) < 5


def test_batching_by_count_and_time(path: Path) -> None:
    clock = FakeClock()
    stats = Statistics(path, flush_interval=1.0, max_pending=3, clock=clock)
    stats.record_received("smtp", 10)
    stats.record_received("smtp", 10)
    assert not path.exists()
    assert stats.pending_events == 2
    stats.record_received("smtp", 10)  # third event: flushed
    assert stats.pending_events == 0
    assert stats.read().agent("smtp").msgsfr == 3
    stats.record_sent("local", 5)
    assert stats.read().agent("local").msgsto == 0
    clock.now += 1.5  # the interval has passed: the next event flushes
    stats.record_sent("local", 5)
    assert stats.read().agent("local") == AgentStats("local", 0, 0, 2, 10, 0, 0)
    stats.record_rejected("smtp")
    stats.flush()  # explicit (periodic) flush
    assert stats.read().agent("smtp").msgsrej == 1
    stats.flush()  # nothing pending: no effect
    stats.record_discarded("smtp")
    stats.close()
    assert stats.read().agent("smtp").msgsdis == 1


def test_missing_and_empty_files(path: Path) -> None:
    stats = Statistics(path)
    table = stats.read()
    assert table.agents == () and table.total == AgentStats("")
    assert not path.exists()  # reading does not create it
    path.write_bytes(b"")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    assert stats.read() == StatsTable(1_700_000_000.0, ())


def test_reset_by_truncation_while_writer_lives(path: Path) -> None:
    writer = Statistics(path, flush_interval=0)
    for _ in range(5):
        writer.record_received("smtp", 100)
    assert writer.read().agent("smtp").msgsfr == 5
    # The administrator resets: cp /dev/null statistics
    with open(path, "wb"):
        pass
    os.utime(path, (1_800_000_000, 1_800_000_000))
    assert writer.read() == StatsTable(1_800_000_000.0, ())
    writer.record_received("smtp", 100)
    table = writer.read()
    assert table.agent("smtp") == AgentStats("smtp", 1, 100, 0, 0, 0, 0)
    assert table.since == 1_800_000_000.0  # the counting period starts at the reset


def test_reset_with_pending_increments(path: Path) -> None:
    clock = FakeClock()
    writer = Statistics(path, flush_interval=60, max_pending=1000, clock=clock)
    for _ in range(10):
        writer.record_sent("local", 1)
    writer.flush()
    writer.record_sent("local", 1)  # pending when the file is reset
    path.write_bytes(b"")
    writer.record_sent("local", 1)
    writer.flush()
    # Only what was not yet written before the reset counts; the old 10 are gone.
    assert writer.read().agent("local").msgsto == 2


def test_removed_file_is_recreated(path: Path) -> None:
    writer = Statistics(path, flush_interval=0)
    writer.record_received("smtp", 1)
    path.unlink()
    writer.record_received("smtp", 1)
    assert writer.read().agent("smtp").msgsfr == 1


def test_read_and_reset(path: Path) -> None:
    writer = Statistics(path, flush_interval=0)
    writer.record_received("smtp", 2048)
    table = writer.read_and_reset()
    assert table.agent("smtp").bytes_from == 2048
    assert path.stat().st_size == 0
    assert writer.read().agents == ()


def test_corrupt_file(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path.write_bytes(b"\x00\x01binary sendmail.st")
    stats = Statistics(path, flush_interval=0)
    with pytest.raises(CorruptStatistics):
        stats.read()
    for bad in (
        {"v": 2, "since": 0, "agents": {}},
        {"v": 1, "since": "x", "agents": {}},
        {"v": 1, "since": 0, "agents": {"smtp": [1, 2, 3]}},
        {"v": 1, "since": 0, "agents": {"smtp": [1, 2, 3, 4, 5, -6]}},
        {"v": 1, "since": 0, "agents": {"smtp": [1, 2, 3, 4, 5, True]}},
    ):
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(CorruptStatistics):
            stats.read()
    # A writer does not stop counting: it starts again from zero, with a warning.
    with caplog.at_level(logging.WARNING, logger="posthouse.mta.stats"):
        stats.record_rejected("smtp")
    assert "counting from zero" in caplog.text
    assert stats.read().agent("smtp") == AgentStats("smtp", 0, 0, 0, 0, 1, 0)


def test_trailing_bytes_after_the_first_line_are_ignored(path: Path) -> None:
    stats = Statistics(path, flush_interval=0)
    stats.record_received("a-rather-long-agent-name", 1)
    with open(path, "ab") as f:
        f.write(b'0,0,0]}}\n{"junk"')  # what a crash between write and truncate leaves
    assert stats.read().agent("a-rather-long-agent-name").msgsfr == 1
    stats.record_received("a-rather-long-agent-name", 1)
    assert stats.read().total.msgsfr == 2


def test_failed_flush_keeps_increments(path: Path) -> None:
    path.mkdir()  # cannot be opened for writing
    stats = Statistics(path, flush_interval=3600, max_pending=1000)
    stats.record_received("smtp", 5)
    stats.record_received("smtp", 5)
    with pytest.raises(IsADirectoryError):
        stats.flush()
    path.rmdir()
    stats.flush()
    assert stats.read().agent("smtp") == AgentStats("smtp", 2, 10, 0, 0, 0, 0)


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_child_drops_inherited_increments(path: Path) -> None:
    stats = Statistics(path, flush_interval=3600, max_pending=1000)
    stats.record_received("smtp", 1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            stats.record_sent("local", 1)
            stats.flush()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    stats.flush()
    table = stats.read()
    assert table.agent("smtp").msgsfr == 1  # once, not twice
    assert table.agent("local").msgsto == 1


_WORKER = """
import sys
from pathlib import Path
from posthouse.mta.stats import Statistics
path, n = Path(sys.argv[1]), int(sys.argv[2])
stats = Statistics(path, flush_interval=float(sys.argv[3]), max_pending=int(sys.argv[4]))
for i in range(n):
    kind = i % 4
    if kind == 0:
        stats.record_received("esmtp", 100)
    elif kind == 1:
        stats.record_sent("local", 10)
    elif kind == 2:
        stats.record_rejected("esmtp")
    else:
        stats.record_discarded("prog")
stats.close()
"""


@pytest.mark.parametrize(("interval", "pending"), [(0.0, 1), (0.001, 7)])
def test_concurrent_processes_exact_totals(path: Path, interval: float, pending: int) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), "500", str(interval), str(pending)]
        )
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    table = Statistics(path).read()
    assert table.agent("esmtp") == AgentStats("esmtp", 500, 50_000, 0, 0, 500, 0)
    assert table.agent("local") == AgentStats("local", 0, 0, 500, 5_000, 0, 0)
    assert table.agent("prog") == AgentStats("prog", 0, 0, 0, 0, 0, 500)
    assert table.total.counters() == (500, 50_000, 500, 5_000, 500, 500)


def test_recording_is_cheap(path: Path) -> None:
    stats = Statistics(path)  # defaults: one flush per second or per 100 events
    start = time.perf_counter()
    for _ in range(10_000):
        stats.record_received("smtp", 1000)
    elapsed = time.perf_counter() - start
    stats.close()
    assert stats.read().agent("smtp").msgsfr == 10_000
    assert elapsed < 5.0  # about 100 small locked rewrites; normally a few tens of ms


def test_format_stats() -> None:
    table = StatsTable(
        1_795_600_800.0,  # Wed Nov 25 10:00:00 2026 UTC
        (
            AgentStats("local", 12, 34 * 1024, 10, 30 * 1024 - 5, 1, 0),
            AgentStats("esmtp", 3, 1, 4, 2049, 0, 2),
        ),
    )
    assert list(format_stats(table)) == [
        "Statistics from Wed Nov 25 10:00:00 2026",
        " M   msgsfr  bytes_from   msgsto    bytes_to  msgsrej msgsdis  Mailer",
        " 0       12         34K       10         30K        1       0  local",
        " 1        3          1K        4          3K        0       2  esmtp",
        " " + "=" * 60,
        " T       15         35K       14         32K        1       2",
    ]
    assert list(format_stats_program(table, now=1_795_604_400.0)) == [
        "1795600800 1795604400",
        " 0       12       34       10       30        1        0  local",
        " 1        3        1        4        3        0        2  esmtp",
        " T       15       35       14       32        1        2",
    ]
    empty = list(format_stats(StatsTable(0.0, ())))
    assert empty[-1] == " T        0          0K        0          0K        0       0"


def test_agent_names_are_printed_safely() -> None:
    lines = list(format_stats(StatsTable(0.0, (AgentStats("bad\x1b[0m", 1),))))
    assert all(line.isprintable() for line in lines)
    assert lines[2].endswith("bad\\x1b[0m")
