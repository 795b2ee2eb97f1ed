"""What 10,000 IDLE sessions cost the IMAP store (a benchmark, not a test).

Opens ``--sessions`` waiters (``wait_for_change``) spread over ``--mailboxes`` mailboxes in
one process and reports the memory they take, the CPU the change poller uses while nothing
happens, and how long after a delivery made through a *separate* store instance (as another
worker process would: the wake-up travels through the shared counters file, not an
in-process call) every waiter on that mailbox has woken.

Usage: ``.venv/bin/python benchmarks/imap_store_idle.py [--sessions 10000] [--mailboxes 100]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from posthouse.store.backend import NewMailbox, NewMessage
from posthouse.store.fs.backend import FsBackend
from posthouse.store.fs.layout import FsLayout


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def main(sessions: int, mailboxes: int, idle_seconds: float) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="imapidle-"))
    try:
        layout = FsLayout(root / "imap", {"default": root / "partition"})
        here, other = FsBackend(layout), FsBackend(layout)
        ids = [
            (await here.create_mailbox(NewMailbox(f"shared.box{i}", "default", ""))).id
            for i in range(mailboxes)
        ]
        before = rss_kib()
        tokens = {mailbox_id: here.change_token(mailbox_id) for mailbox_id in ids}
        waiters = [
            asyncio.create_task(
                here.wait_for_change(ids[n % mailboxes], tokens[ids[n % mailboxes]], 600)
            )
            for n in range(sessions)
        ]
        await asyncio.sleep(0.5)
        after = rss_kib()
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = cpu.ru_utime + cpu.ru_stime
        await asyncio.sleep(idle_seconds)
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        idle_cpu = cpu.ru_utime + cpu.ru_stime - cpu_before

        target = [w for n, w in enumerate(waiters) if n % mailboxes == 0]
        started = time.perf_counter()
        message = NewMessage(b"Subject: hi\r\n\r\nhello\r\n", datetime.now(UTC))
        await other.append(ids[0], [message])
        await asyncio.gather(*target)
        woken = time.perf_counter() - started
        assert not any(w.done() for n, w in enumerate(waiters) if n % mailboxes != 0)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        await here.close()
        await other.close()
        return {
            "sessions": sessions,
            "mailboxes": mailboxes,
            "rss_per_session_bytes": (after - before) * 1024 / sessions,
            "rss_for_all_sessions_mib": (after - before) / 1024,
            "idle_cpu_percent": 100 * idle_cpu / idle_seconds,
            "woken_sessions": len(target),
            "cross_instance_wake_s": woken,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args = parser.parse_args()
    figures = asyncio.run(main(args.sessions, args.mailboxes, args.idle_seconds))
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}, indent=2))
