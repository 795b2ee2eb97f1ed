"""The log thread: every line arrives, in order, from the event loop and from forked workers."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.config.schema import ServerSection
from posthouse.logsetup import LogThread, setup_logging


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    path = tmp_path / "posthouse.log"
    setup_logging(ServerSection(log_file=str(path)))
    yield path
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level = saved_handlers, saved_level


def log_thread() -> LogThread:
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, LogThread)]
    return handler


def lines(path: Path) -> list[str]:
    return [line.split(": ", 1)[1] for line in path.read_text().splitlines()]


def test_lines_are_written_by_the_log_thread_in_order(log_file: Path) -> None:
    handler = log_thread()
    written_by: list[str] = []
    target_emit = handler.target.emit

    def emit(record: logging.LogRecord) -> None:
        written_by.append(threading.current_thread().name)
        target_emit(record)

    handler.target.emit = emit  # type: ignore[method-assign]
    log = logging.getLogger("posthouse")

    async def deliveries() -> None:
        for number in range(2000):
            log.info("Q%04d: from=<a@example.test>, size=%d", number, number)
            if number % 100 == 0:
                await asyncio.sleep(0)

    asyncio.run(deliveries())
    handler.flush()
    assert lines(log_file) == [f"Q{n:04d}: from=<a@example.test>, size={n}" for n in range(2000)]
    assert written_by and threading.current_thread().name not in written_by


def test_a_forked_worker_keeps_logging_and_loses_nothing(log_file: Path) -> None:
    log = logging.getLogger("posthouse")
    log.info("before the fork")
    pid = os.fork()
    if pid == 0:  # the worker: log, then end as the supervisor's workers do
        try:
            for number in range(500):
                log.info("worker line %d", number)
            log_thread().flush()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    log.info("after the fork")
    log_thread().flush()
    got = lines(log_file)
    assert got[0] == "before the fork" and got[-1] == "after the fork"
    assert got[1:-1] == [f"worker line {n}" for n in range(500)]
