"""Short store reads run in place on the event loop (store/fs/backend.py ``_light``), but
never wait there: a mailbox whose connection another thread holds (a commit in progress)
is read on a thread instead, while the loop goes on; writes are never done in place."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from posthouse.store.backend import Viewer
from posthouse.store.fs.backend import FsBackend
from posthouse.store.fs.sqlite import WouldBlock, inline_reads
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import message, open_store, run


def test_a_read_waits_on_a_thread_not_on_the_loop(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    backend = store.backend
    assert isinstance(backend, FsBackend)

    async def main() -> None:
        await store.create_user("hansen")
        await store.session("hansen").append("INBOX", [message(1), message(2)])
        record = await backend.get_mailbox("user.hansen")
        assert record is not None
        index = backend._index(record.id)
        held, release = threading.Event(), threading.Event()

        def commit_in_progress() -> None:
            with index.db._mutex:
                held.set()
                release.wait(30)

        holder = threading.Thread(target=commit_in_progress)
        holder.start()
        assert held.wait(30)
        started = time.monotonic()
        fetch = asyncio.create_task(backend.fetch(record.id, UidSet.of([2]), viewer=Viewer("")))
        for _ in range(20):  # the loop keeps turning while the fetch waits
            await asyncio.sleep(0)
        assert time.monotonic() - started < 10  # it did not wait for the holder's 30 s
        assert not fetch.done()
        release.set()
        metas = await asyncio.wait_for(fetch, 30)
        assert [m.uid for m in metas] == [2]
        holder.join(30)
        await backend.close()

    run(main())


def test_writes_are_refused_in_place(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    backend = store.backend
    assert isinstance(backend, FsBackend)
    with inline_reads(), pytest.raises(WouldBlock), backend.quotas.db.write():
        pass
    run(backend.close())
