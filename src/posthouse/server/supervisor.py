"""Pre-forked worker processes sharing the listening sockets.

The parent binds every socket, then forks N workers that each run the whole
server on the inherited sockets (the kernel spreads connections over them).
Workers share nothing in memory: queue, mailboxes, users and aliases live on
disk with real locks.  The parent restarts a worker that dies; on SIGHUP it either
replaces the workers gracefully (new ones start, the old ones finish their sessions)
or forwards the signal; on SIGTERM/SIGINT it stops the workers and waits for them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("posthouse.supervisor")

RESTART_BACKOFF = 1.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def end_with_parent(parent: int) -> None:
    """Have the kernel send this process SIGTERM when its parent dies (Linux
    ``PR_SET_PDEATHSIG``), so a supervisor killed outright leaves no workers serving on
    its sockets; if the parent is already gone, stop now."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass(frozen=True)
class WorkerSet:
    """What the workers run and how many of them."""

    count: int
    serve: Callable[[], int]


def run_workers(
    count: int,
    serve: Callable[[], int],
    reconfigure: Callable[[], WorkerSet | None] | None = None,
) -> int:
    """Run ``serve`` in ``count`` child processes until told to stop.

    On SIGHUP, ``reconfigure`` (when given) says whether the workers must be replaced (their
    number or their sockets changed): then a new set of workers is started and the old ones
    get SIGTERM, so they finish their sessions while the new ones accept; otherwise the
    workers get the SIGHUP and reload in place."""
    children: dict[int, tuple[int, Callable[[], int]]] = {}  # pid -> (slot, what it runs)
    retiring: set[int] = set()
    stopping = False

    def spawn(slot: int, run: Callable[[], int]) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            end_with_parent(parent)
            code = 1
            try:
                code = run()
            finally:
                os._exit(code)
        children[pid] = (slot, run)

    def signal_all(signum: int, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        elif signum == signal.SIGHUP and reconfigure is not None:
            replacement = reconfigure()
            if replacement is not None:
                old = list(children)
                retiring.update(old)
                for pid in old:
                    del children[pid]
                for slot in range(replacement.count):
                    spawn(slot, replacement.serve)
                log.info(
                    "started %d new worker(s); the %d old one(s) finish their sessions",
                    replacement.count,
                    len(old),
                )
                signal_all(signal.SIGTERM, old)
                return
        signal_all(signum, list(children) + (list(retiring) if stopping else []))

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for slot in range(count):
        spawn(slot, serve)
    while children or retiring:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        retiring.discard(pid)
        if pid not in children:
            continue
        slot, run = children.pop(pid)
        if stopping:
            continue
        log.error("worker %d exited (status %d); restarting", pid, status)
        time.sleep(RESTART_BACKOFF)
        spawn(slot, run)
    return 0
