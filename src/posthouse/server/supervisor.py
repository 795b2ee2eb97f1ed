"""Pre-forked worker processes sharing the listening sockets.

The parent binds every socket, then forks N workers that each run the whole
server on the inherited sockets (the kernel spreads connections over them).
Workers share nothing in memory: queue, mailboxes, users and aliases live on
disk with real locks.  The parent restarts a worker that dies, forwards
SIGHUP, and on SIGTERM/SIGINT stops the workers and waits for them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable

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


def run_workers(count: int, serve: Callable[[], int]) -> int:
    """Run ``serve`` in ``count`` child processes until told to stop."""
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            end_with_parent(parent)
            code = 1
            try:
                code = serve()
            finally:
                os._exit(code)
        children[pid] = slot

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for slot in range(count):
        spawn(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in children:
            continue
        slot = children.pop(pid)
        if stopping:
            continue
        log.error("worker %d exited (status %d); restarting", pid, status)
        time.sleep(RESTART_BACKOFF)
        spawn(slot)
    return 0
