"""Tests for posthouse.mta.queue.groupcommit: batching, ordering, errors, cancellation."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.mta.queue.groupcommit import CommitRequest, GroupCommitter


def _temp_file(directory: Path, name: str, data: bytes) -> tuple[int, Path]:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    return fd, path


@pytest.fixture
def committer() -> Iterator[GroupCommitter]:
    gc = GroupCommitter()
    yield gc
    gc.close()


def test_blocking_commit_syncs_and_renames(tmp_path: Path, committer: GroupCommitter) -> None:
    fd, src = _temp_file(tmp_path, "a.tmp", b"hello")
    committer.commit_blocking(CommitRequest(files=[fd], renames=[(src, tmp_path / "a")]))
    os.close(fd)
    assert (tmp_path / "a").read_bytes() == b"hello"
    assert not src.exists()
    stats = committer.stats
    assert (stats.requests, stats.batches, stats.file_syncs, stats.dir_syncs) == (1, 1, 1, 1)


def test_paths_and_explicit_directories(tmp_path: Path, committer: GroupCommitter) -> None:
    (tmp_path / "p").write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    committer.commit_blocking(CommitRequest(files=[tmp_path / "p"], directories=[tmp_path, sub]))
    assert committer.stats.dir_syncs == 2


def test_concurrent_async_commits_form_one_batch(tmp_path: Path) -> None:
    n = 50

    async def main(gc: GroupCommitter) -> None:
        fds = []
        tasks = []
        with gc.hold():
            for i in range(n):
                fd, src = _temp_file(tmp_path, f"{i}.tmp", b"x" * i)
                fds.append(fd)
                req = CommitRequest(files=[fd], renames=[(src, tmp_path / f"{i}.done")])
                tasks.append(asyncio.create_task(gc.commit(req)))
            while gc.pending_count < n:  # let every task submit; the batch thread is held
                await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        for fd in fds:
            os.close(fd)

    with GroupCommitter() as gc:
        asyncio.run(main(gc))
        stats = gc.stats
    assert stats.requests == n
    assert stats.batches == 1
    assert stats.dir_syncs == 1  # one directory flush for all fifty commits
    assert stats.file_syncs == n
    assert stats.largest_batch == n
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.done" for i in range(n))


def test_unheld_concurrency_batches_and_never_exceeds_requests(tmp_path: Path) -> None:
    async def main(gc: GroupCommitter) -> None:
        async def one(i: int) -> None:
            fd, src = _temp_file(tmp_path, f"{i}.tmp", b"data")
            try:
                await gc.commit(CommitRequest(files=[fd], renames=[(src, tmp_path / f"{i}")]))
            finally:
                os.close(fd)

        await asyncio.gather(*(one(i) for i in range(100)))

    with GroupCommitter() as gc:
        asyncio.run(main(gc))
        stats = gc.stats
    assert stats.requests == 100
    assert 1 <= stats.batches <= 100
    assert stats.dir_syncs == stats.batches  # one directory, flushed once per batch


def test_commit_blocking_from_threads(tmp_path: Path, committer: GroupCommitter) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(10):
                fd, src = _temp_file(tmp_path, f"{k}-{i}.tmp", b"t")
                committer.commit_blocking(
                    CommitRequest(files=[fd], renames=[(src, tmp_path / f"{k}-{i}")])
                )
                os.close(fd)
                assert (tmp_path / f"{k}-{i}").exists()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert committer.stats.requests == 80


def test_failure_is_reported_to_its_request_only(tmp_path: Path) -> None:
    async def main(gc: GroupCommitter) -> list[BaseException | None]:
        fd, src = _temp_file(tmp_path, "ok.tmp", b"ok")
        good = CommitRequest(files=[fd], renames=[(src, tmp_path / "ok")])
        bad = CommitRequest(renames=[(tmp_path / "missing", tmp_path / "never")])
        with gc.hold():
            tasks = [asyncio.create_task(gc.commit(r)) for r in (good, bad)]
            while gc.pending_count < 2:
                await asyncio.sleep(0)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        os.close(fd)
        return list(results)

    with GroupCommitter() as gc:
        results = asyncio.run(main(gc))
        assert gc.stats.failed_requests == 1
    assert results[0] is None
    assert isinstance(results[1], FileNotFoundError)
    assert (tmp_path / "ok").read_bytes() == b"ok"


def test_bad_file_descriptor_fails_request(tmp_path: Path, committer: GroupCommitter) -> None:
    fd, _ = _temp_file(tmp_path, "x", b"")
    os.close(fd)
    with pytest.raises(OSError):
        committer.commit_blocking(CommitRequest(files=[fd]))


def test_cancel_before_pickup_withdraws_request(tmp_path: Path) -> None:
    async def main(gc: GroupCommitter) -> None:
        fd, src = _temp_file(tmp_path, "c.tmp", b"c")
        with gc.hold():
            task = asyncio.create_task(
                gc.commit(CommitRequest(files=[fd], renames=[(src, tmp_path / "c")]))
            )
            while gc.pending_count < 1:
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        os.close(fd)

    with GroupCommitter() as gc:
        asyncio.run(main(gc))
        gc.commit_blocking(CommitRequest(directories=[tmp_path]))  # drains the thread
        assert gc.stats.requests == 1  # only the later one was processed
    assert (tmp_path / "c.tmp").exists()
    assert not (tmp_path / "c").exists()


def test_close_rejects_new_commits(tmp_path: Path) -> None:
    gc = GroupCommitter()
    gc.close()
    gc.close()  # idempotent
    with pytest.raises(RuntimeError):
        gc.commit_blocking(CommitRequest(directories=[tmp_path]))


def test_prepare_runs_in_batch_thread(tmp_path: Path, committer: GroupCommitter) -> None:
    seen: list[str] = []
    fds: list[int] = []

    def prepare() -> CommitRequest:
        seen.append(threading.current_thread().name)
        fd, src = _temp_file(tmp_path, "p.tmp", b"prepared")
        fds.append(fd)
        return CommitRequest(files=[fd], renames=[(src, tmp_path / "p")])

    committer.commit_blocking(CommitRequest(prepare=prepare))
    os.close(fds[0])
    assert seen == ["posthouse-groupcommit"]
    assert (tmp_path / "p").read_bytes() == b"prepared"

    def failing() -> CommitRequest:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        committer.commit_blocking(CommitRequest(prepare=failing))
    assert committer.stats.failed_requests == 1
