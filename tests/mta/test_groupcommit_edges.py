"""Edge cases of posthouse.mta.queue.groupcommit found unchecked by mutation testing
(docs/mutation.md): which thread flushes what, descriptors that must not leak into the
programs delivery runs, errors in the thread pool and in directory flushes, close() while
held or from the batch thread, fork, and cancellation after the batch picked a request up."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc as collector
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.mta.queue.groupcommit import CommitRequest, GroupCommitter, wait_commit

WAIT = 60.0  # a deadline for conditions the tests wait for, never reached when all is well


def _temp_file(directory: Path, name: str, data: bytes = b"x") -> tuple[int, Path]:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    return fd, path


@pytest.fixture
def sync_threads(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The thread of every ``fdatasync`` call, in order."""
    seen: list[threading.Thread] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        seen.append(threading.current_thread())
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    return seen


@pytest.fixture
def fds() -> Iterator[list[int]]:
    opened: list[int] = []
    yield opened
    for fd in opened:
        os.close(fd)


def _files(tmp_path: Path, fds: list[int], n: int) -> list[int]:
    for i in range(n):
        fds.append(_temp_file(tmp_path, f"f{i}")[0])
    return fds[-n:]


@pytest.mark.parametrize("workers", [0, 1])
def test_one_sync_worker_flushes_every_file_in_the_batch_thread(
    tmp_path: Path, fds: list[int], sync_threads: list[threading.Thread], workers: int
) -> None:
    with GroupCommitter(sync_workers=workers) as gc:
        gc.commit_blocking(CommitRequest(files=_files(tmp_path, fds, 3)))
    assert [t.name for t in sync_threads] == ["posthouse-groupcommit"] * 3


def test_a_single_file_is_flushed_in_the_batch_thread(
    tmp_path: Path, fds: list[int], sync_threads: list[threading.Thread]
) -> None:
    with GroupCommitter() as gc:
        gc.commit_blocking(CommitRequest(files=_files(tmp_path, fds, 1)))
    assert [t.name for t in sync_threads] == ["posthouse-groupcommit"]


def test_several_files_are_flushed_by_the_sync_pool_which_close_stops(
    tmp_path: Path, fds: list[int], sync_threads: list[threading.Thread]
) -> None:
    gc = GroupCommitter()
    gc.commit_blocking(CommitRequest(files=_files(tmp_path, fds, 2)))
    assert len(sync_threads) == 2
    assert all(t.name.startswith("posthouse-fsync_") for t in sync_threads)
    gc.close()
    assert not any(t.is_alive() for t in sync_threads), "close() waits for the sync threads"


def test_the_batch_thread_does_not_keep_the_process_alive() -> None:
    with GroupCommitter() as gc:
        thread = gc._thread
        assert thread is not None and thread.name == "posthouse-groupcommit"
        assert thread.daemon


def test_flushes_open_descriptors_close_on_exec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivery forks programs; a descriptor opened for a flush must not leak into them."""
    opened: list[tuple[str, int]] = []
    real = os.open

    def spy(path: str | os.PathLike[str], flags: int, *args: int, **kwargs: int) -> int:
        opened.append((os.fspath(path), flags))
        return real(path, flags, *args, **kwargs)

    (tmp_path / "file").write_bytes(b"data")
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.setattr(os, "open", spy)
    with GroupCommitter() as gc:
        gc.commit_blocking(CommitRequest(files=[tmp_path / "file"], directories=[sub]))
    flags = dict(opened)
    assert flags[str(tmp_path / "file")] & os.O_CLOEXEC
    assert flags[str(tmp_path / "file")] & os.O_ACCMODE == os.O_RDONLY
    assert flags[str(sub)] & os.O_CLOEXEC
    assert flags[str(sub)] & os.O_DIRECTORY
    assert flags[str(sub)] & os.O_ACCMODE == os.O_RDONLY


def test_a_failed_flush_in_the_sync_pool_fails_its_request(tmp_path: Path, fds: list[int]) -> None:
    good = _files(tmp_path, fds, 2)
    fd, _ = _temp_file(tmp_path, "closed")
    os.close(fd)
    with GroupCommitter() as gc:
        with pytest.raises(OSError):
            gc.commit_blocking(CommitRequest(files=[good[0], fd, good[1]]))
        gc.commit_blocking(CommitRequest(files=good))  # the other requests still commit
        assert gc.stats.failed_requests == 1


def test_the_first_failed_flush_of_a_request_is_reported(tmp_path: Path, fds: list[int]) -> None:
    good = _files(tmp_path, fds, 1)
    fd, _ = _temp_file(tmp_path, "closed")
    os.close(fd)
    request = CommitRequest(files=[good[0], tmp_path / "missing", fd])
    with GroupCommitter() as gc, pytest.raises(FileNotFoundError):
        gc.commit_blocking(request)


def test_a_failed_directory_flush_fails_only_the_requests_using_it(tmp_path: Path) -> None:
    ok = tmp_path / "ok"
    ok.mkdir()
    with GroupCommitter() as gc:
        with gc.hold():
            first = gc.submit(CommitRequest(directories=[ok]))
            bad = gc.submit(CommitRequest(directories=[ok, tmp_path / "missing"]))
            last = gc.submit(CommitRequest(directories=[ok]))
        assert first.result(WAIT) is None
        assert last.result(WAIT) is None
        assert isinstance(bad.exception(WAIT), FileNotFoundError)
        stats = gc.stats
    assert (stats.requests, stats.batches, stats.failed_requests) == (3, 1, 1)
    assert stats.dir_syncs == 2


def test_a_bug_in_a_batch_fails_its_waiters_and_the_thread_goes_on(tmp_path: Path) -> None:
    broken = CommitRequest(renames=[None])  # type: ignore[list-item]  # not a pair
    with GroupCommitter() as gc:
        with pytest.raises(TypeError):
            gc.submit(broken).result(WAIT)
        gc.commit_blocking(CommitRequest(directories=[tmp_path]))
        assert gc.stats.requests == 1  # the broken batch never reached the counters


def test_a_held_committer_keeps_the_request_pending(tmp_path: Path) -> None:
    with GroupCommitter() as gc:
        with gc.hold():
            future = gc.submit(CommitRequest(directories=[tmp_path]))
            with pytest.raises(concurrent.futures.TimeoutError):
                future.result(timeout=1.0)  # held: it must not complete, however long we wait
            assert gc.pending_count == 1
        assert future.result(WAIT) is None


def test_close_while_held_commits_the_pending_requests(tmp_path: Path) -> None:
    gc = GroupCommitter()
    files = [_temp_file(tmp_path, f"c{i}") for i in range(50)]
    with gc.hold():
        futures = [
            gc.submit(CommitRequest(files=[fd], renames=[(src, tmp_path / f"c{i}.done")]))
            for i, (fd, src) in enumerate(files)
        ]
        gc.close()
        # close() returns only once the pending requests are durable
        assert all(f.done() and f.exception() is None for f in futures)
    for fd, _ in files:
        os.close(fd)
    assert len(list(tmp_path.glob("*.done"))) == 50
    with pytest.raises(RuntimeError):
        gc.submit(CommitRequest(directories=[tmp_path]))


def test_close_from_the_batch_thread_does_not_join_itself(tmp_path: Path) -> None:
    gc = GroupCommitter()

    def prepare() -> CommitRequest:
        gc.close()
        return CommitRequest(directories=[tmp_path])

    future = gc.submit(CommitRequest(prepare=prepare))
    assert future.result(WAIT) is None
    thread = gc._thread
    assert thread is not None
    thread.join(WAIT)
    assert not thread.is_alive()


def test_a_forked_child_commits_with_its_own_thread(tmp_path: Path) -> None:
    with GroupCommitter() as gc:
        gc.commit_blocking(CommitRequest(directories=[tmp_path]))
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                gc.commit_blocking(CommitRequest(directories=[tmp_path]))
                code = 0 if gc.stats.requests == 2 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert gc.stats.requests == 1


def test_a_task_cancelled_after_pickup_waits_for_its_batch(tmp_path: Path) -> None:
    started = threading.Event()
    go = threading.Event()
    fd, src = _temp_file(tmp_path, "m.tmp", b"message")

    def prepare() -> CommitRequest:
        started.set()
        go.wait(WAIT)
        return CommitRequest(files=[fd], renames=[(src, tmp_path / "m")])

    async def main(gc: GroupCommitter) -> None:
        task = asyncio.create_task(gc.commit(CommitRequest(prepare=prepare)))
        while not started.is_set():
            await asyncio.sleep(0)
        for _ in range(2):  # cancelled twice: it still waits for the batch
            task.cancel()
            for _ in range(20):
                await asyncio.sleep(0)
            assert not task.done(), "the request's descriptors are still in use"
        go.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    with GroupCommitter() as gc:
        asyncio.run(main(gc))
        assert gc.stats.requests == 1
    os.close(fd)
    assert (tmp_path / "m").read_bytes() == b"message"


def test_a_cancelled_failed_commit_leaves_no_unretrieved_exception(tmp_path: Path) -> None:
    started = threading.Event()
    go = threading.Event()
    reported: list[dict[str, object]] = []

    def prepare() -> CommitRequest:
        started.set()
        go.wait(WAIT)
        raise OSError(28, "No space left on device")

    async def main(gc: GroupCommitter) -> concurrent.futures.Future[None]:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
        future = gc.submit(CommitRequest(prepare=prepare))
        task = asyncio.create_task(wait_commit(future))
        while not started.is_set():
            await asyncio.sleep(0)
        task.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        go.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        del task
        collector.collect()
        return future

    with GroupCommitter() as gc:
        future = asyncio.run(main(gc))
    assert isinstance(future.exception(), OSError)
    assert reported == []
