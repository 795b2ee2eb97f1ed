"""Group commit: batch the fsyncs of concurrent queue commits.

Making a message durable costs an ``fdatasync`` per file and an ``fsync`` of the queue
directory after the renames that make it visible.  Done naively by 100 concurrent SMTP
sessions, that is 100 directory flushes (journal commits) one after another.  A
:class:`GroupCommitter` owns one background thread; every caller hands it a
:class:`CommitRequest` and waits.  The thread repeatedly takes *every* pending request (no
artificial delay: whatever arrived while the previous batch was being flushed forms the next
batch) and, for that batch:

1. ``fdatasync``\\ s each file of each request (in a few worker threads at once, so the
   filesystem can merge the flushes into fewer journal commits);
2. performs each request's renames, in the order given;
3. ``fsync``\\ s each affected directory **once** for the whole batch;
4. wakes every waiter, with the error of its own request if one of its steps failed.

A request is affected only by its own failures and by a failed flush of a directory it uses.

A request may carry a ``prepare`` callable, run in the batch thread before step 1, that
creates and writes its files (file creation would otherwise stall an event loop while the
journal commits).

Use :meth:`GroupCommitter.commit` from asyncio code (awaiting does not block the event loop)
and :meth:`GroupCommitter.commit_blocking` from plain threads or command-line tools.  A task
that is cancelled while its request is already in a batch keeps waiting until the batch is
done (so the caller's file descriptors stay valid) and then raises ``CancelledError``; if the
request was still waiting to be picked up, it is withdrawn and nothing is done.

The committer is fork-aware: used in a child process after ``fork()`` it starts a fresh thread.
:attr:`GroupCommitter.stats` exposes counters (requests, batches, file and directory flushes);
:meth:`GroupCommitter.hold` keeps the thread from starting a batch, for deterministic tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from posthouse.durable import sync_directory

__all__ = ["CommitRequest", "CommitStats", "GroupCommitter", "wait_commit"]

_SYNC_WORKERS = 16


@dataclass(frozen=True)
class CommitRequest:
    """What one commit needs done, in this order.

    ``files``: open file descriptors (the caller keeps them open until the commit returns and
    closes them afterwards) or paths, to ``fdatasync``.  ``renames``: ``(source, destination)``
    pairs performed after all files are flushed, in order.  ``directories``: directories to
    ``fsync`` after the renames; the parent directories of both ends of every rename are
    added automatically.

    ``prepare``, if given, is called first, in the batch thread, and returns the request to
    carry out instead (its own ``prepare`` is ignored).  Callers on an event loop use it to
    move file creation off the loop: creating files blocks while the filesystem journal
    commits the previous batch.  If it raises, the request fails with that error.
    """

    files: Sequence[int | Path] = ()
    renames: Sequence[tuple[Path, Path]] = ()
    directories: Sequence[Path] = ()
    prepare: Callable[[], CommitRequest] | None = None

    def affected_directories(self) -> set[str]:
        """Absolute paths of the directories to flush for this request."""
        dirs = {os.path.abspath(d) for d in self.directories}
        for src, dst in self.renames:
            dirs.add(os.path.dirname(os.path.abspath(src)))
            dirs.add(os.path.dirname(os.path.abspath(dst)))
        return dirs


@dataclass(frozen=True)
class CommitStats:
    """Counters of a :class:`GroupCommitter` (a snapshot)."""

    requests: int = 0
    batches: int = 0
    file_syncs: int = 0
    dir_syncs: int = 0
    largest_batch: int = 0
    failed_requests: int = 0


@dataclass
class _Pending:
    request: CommitRequest
    future: concurrent.futures.Future[None]
    error: BaseException | None = field(default=None)


def _sync_file(ref: int | Path) -> None:
    if isinstance(ref, int):
        os.fdatasync(ref)
        return
    fd = os.open(ref, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


class GroupCommitter:
    """Batches fsyncs of concurrent commits.

    One background thread takes every pending request, fdatasyncs each file, performs the
    renames, fsyncs each affected directory ONCE per batch, then wakes all waiters.
    """

    def __init__(self, *, sync_workers: int = _SYNC_WORKERS) -> None:
        """Start the batch thread; ``sync_workers`` threads flush the files of a batch."""
        self._sync_workers = max(1, sync_workers)
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._closed = False
        self._holds = 0
        self._stats = CommitStats()
        self._pid = -1
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._start()

    # -- lifecycle ---------------------------------------------------------------------------

    def _start(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._pending = []
        self._holds = 0
        self._pool = None
        self._thread = threading.Thread(target=self._run, name="posthouse-groupcommit", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Finish the pending requests and stop the thread; later commits raise RuntimeError."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._holds = 0
            self._cond.notify_all()
        thread = self._thread
        same_process = self._pid == os.getpid()
        if thread is not None and same_process and thread is not threading.current_thread():
            thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> GroupCommitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- introspection -------------------------------------------------------------------------

    @property
    def stats(self) -> CommitStats:
        """A snapshot of the counters."""
        with self._cond:
            return self._stats

    @property
    def pending_count(self) -> int:
        """Requests waiting for the next batch."""
        with self._cond:
            return len(self._pending)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the thread from starting a new batch while inside (for tests and benchmarks).

        A batch already running is finished; requests submitted meanwhile accumulate and
        form one batch when the last hold is released.
        """
        with self._cond:
            self._holds += 1
        try:
            yield
        finally:
            with self._cond:
                self._holds -= 1
                self._cond.notify_all()

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, request: CommitRequest) -> concurrent.futures.Future[None]:
        """Queue ``request`` for the next batch; the future completes when it is durable."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self._pid != os.getpid():
            # We are in a child after fork(): the parent's thread does not exist here.
            self._closed = False
            self._start()
        with self._cond:
            if self._closed:
                raise RuntimeError("GroupCommitter is closed")
            self._pending.append(_Pending(request, future))
            self._cond.notify_all()
        return future

    def commit_blocking(self, request: CommitRequest) -> None:
        """Commit ``request`` and wait for it (from plain threads / command-line tools)."""
        self.submit(request).result()

    async def commit(self, request: CommitRequest) -> None:
        """Commit ``request`` from asyncio code; the event loop keeps running meanwhile."""
        await wait_commit(self.submit(request))

    # -- the batch thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._pending or self._holds > 0):
                    self._cond.wait()
                if not self._pending:
                    return  # closed and drained
                batch = self._pending
                self._pending = []
            live = [p for p in batch if p.future.set_running_or_notify_cancel()]
            for p in live:
                if p.request.prepare is not None:
                    try:
                        p.request = p.request.prepare()
                    except Exception as exc:
                        p.error = exc
                        p.request = CommitRequest()
            if live:
                try:
                    self._process(live)
                except BaseException as exc:  # a bug: never leave waiters hanging
                    for p in live:
                        if not p.future.done():
                            p.future.set_exception(exc)

    def _sync_all_files(self, batch: list[_Pending]) -> int:
        jobs = [(p, ref) for p in batch for ref in p.request.files]
        if len(jobs) <= 1 or self._sync_workers == 1:
            for p, ref in jobs:
                try:
                    _sync_file(ref)
                except OSError as exc:
                    p.error = exc
            return len(jobs)
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._sync_workers, thread_name_prefix="posthouse-fsync"
            )
        futures = [(p, self._pool.submit(_sync_file, ref)) for p, ref in jobs]
        for p, fut in futures:
            error = fut.exception()
            if error is not None and p.error is None:
                p.error = error
        return len(jobs)

    def _process(self, batch: list[_Pending]) -> None:
        file_syncs = self._sync_all_files(batch)

        dirs: dict[str, list[_Pending]] = {}
        for p in batch:
            if p.error is None:
                for src, dst in p.request.renames:
                    try:
                        os.rename(src, dst)
                    except OSError as exc:
                        p.error = exc
                        break
            # Flush the directories even after a failed rename: earlier renames of the
            # request may have happened.
            for d in p.request.affected_directories():
                dirs.setdefault(d, []).append(p)

        for d, users in dirs.items():
            try:
                sync_directory(d)
            except OSError as exc:
                for p in users:
                    if p.error is None:
                        p.error = exc

        failed = sum(1 for p in batch if p.error is not None)
        # Counters first, so a waiter that wakes up sees its batch counted.
        with self._cond:
            s = self._stats
            self._stats = CommitStats(
                requests=s.requests + len(batch),
                batches=s.batches + 1,
                file_syncs=s.file_syncs + file_syncs,
                dir_syncs=s.dir_syncs + len(dirs),
                largest_batch=max(s.largest_batch, len(batch)),
                failed_requests=s.failed_requests + failed,
            )
        for p in batch:
            if p.error is None:
                p.future.set_result(None)
            else:
                p.future.set_exception(p.error)


async def wait_commit(future: concurrent.futures.Future[None]) -> None:
    """Await a future from :meth:`GroupCommitter.submit` without blocking the event loop.

    On cancellation: if the request had not been picked up yet it is withdrawn; otherwise this
    waits until its batch is done.  Then ``CancelledError`` is raised.  Either way, when this
    returns or raises, the committer no longer uses the request's file descriptors; the
    outcome can be read from ``future`` (``cancelled()``, ``exception()``).
    """
    afut = asyncio.wrap_future(future)
    try:
        await asyncio.shield(afut)
    except asyncio.CancelledError:
        if not future.cancel():
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([afut])
        if afut.done() and not afut.cancelled():
            afut.exception()  # mark retrieved: the caller inspects ``future`` instead
        raise
