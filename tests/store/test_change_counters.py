"""The shared change counters (store/fs/notify.py): every increment counts, even from
several processes bumping the same mailbox at once, so a session can tell that the value
moved by its own commit alone (server/imap/session.py ``own_change``)."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Event
from pathlib import Path

from posthouse.store.fs.notify import ChangeCounters

BUMPS = 20_000


def _bump_many(path: str, start: Event) -> None:
    counters = ChangeCounters(Path(path))
    start.wait(60)
    for _ in range(BUMPS):
        counters.bump("mailbox-a")
    counters.close()


def test_no_increment_is_lost_between_processes(tmp_path: Path) -> None:
    path = tmp_path / "notify.counters"
    counters = ChangeCounters(path)
    before = counters.value("mailbox-a")
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    children = [context.Process(target=_bump_many, args=(str(path), start)) for _ in range(3)]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    assert counters.value("mailbox-a") - before == 3 * BUMPS
    counters.close()
