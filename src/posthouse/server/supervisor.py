"""Pre-forked worker processes sharing the listening sockets.

The parent binds every socket, then forks N workers that each run the whole
server on the inherited sockets (the kernel spreads connections over them).
Workers share nothing in memory: queue, mailboxes, users and aliases live on
disk with real locks.  The parent restarts a worker that dies, forwards
SIGHUP, and on SIGTERM/SIGINT stops the workers and waits for them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

log = logging.getLogger("posthouse.supervisor")

RESTART_BACKOFF = 1.0


def run_workers(count: int, serve: Callable[[], int]) -> int:
    """Run ``serve`` in ``count`` child processes until told to stop."""
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
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
