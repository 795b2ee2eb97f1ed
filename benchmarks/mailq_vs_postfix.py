#!/usr/bin/env python3
"""``posthouse mailq`` vs Postfix's ``mailq`` over a large queue of deferred messages.

posthouse
    A fresh data directory gets ``--messages`` entries written directly in the
    documented on-disk format (``ID.df`` + ``ID.qf``, see
    ``src/posthouse/mta/queue/store.py``), every one deferred once with a ``last_error``
    and its next attempt 30 days ahead (the writer of ``queue_scaling.py``).
Postfix
    (127.0.0.1:2525, set up by ``../shared/peers/postfix.sh``) gets
    ``relay_domains = sink.test`` and a transport map sending ``sink.test`` to a
    closed port of 127.0.0.1, plus long retry times (``queue_run_delay``,
    ``minimal_backoff_time``, ``maximal_backoff_time`` = 3600s) so nothing is retried
    during the benchmark.  ``smtp-source`` injects the messages at full speed in chunks
    of ``--chunk``; every delivery is refused, so they land in the deferred queue.
    Filling stops when ``--fill-timeout`` is used up; if fewer than ``--messages``
    arrived, the smaller count is used for posthouse too (and printed).

Then ``mailq`` of each side (``posthouse --config FILE mailq`` and Postfix's
``mailq``, i.e. ``postqueue -p`` through the showq service) runs once to warm the
caches and ``--repeat`` times timed, output to /dev/null; the medians and the ratio
posthouse/Postfix are printed, with each listing's line count as a sanity check.

At exit Postfix's queue is emptied (``postsuper -d ALL``), its parameters restored
and Postfix stopped (unless ``--keep-postfix``).  Needs root.

``--skip-postfix`` times only ``posthouse mailq`` (no root, Postfix untouched) over
``--messages`` entries.  With ``--root DIR`` the data directory is kept in ``DIR`` and
filled only if its queue is empty, so later runs reuse it.

Example::

    sudo .venv/bin/python benchmarks/mailq_vs_postfix.py --messages 100000
    .venv/bin/python benchmarks/mailq_vs_postfix.py --skip-postfix --root /tmp/phmailq
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from queue_scaling import fill_queue  # noqa: E402
from relay_vs_postfix import (  # noqa: E402
    POSTFIX_PORT,
    PostfixControl,
    PosthouseDaemon,
    smtp_source,
)

POSTFIX_SPOOL = Path("/var/spool/postfix")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count_files(directory: Path) -> int:
    total = 0
    for _dirpath, _dirs, files in os.walk(directory):
        total += len(files)
    return total


def postfix_counts() -> dict[str, int]:
    return {q: count_files(POSTFIX_SPOOL / q) for q in ("incoming", "active", "deferred")}


def time_command(command: list[str], repeat: int, timeout: float) -> tuple[list[float], int]:
    """Run once (warm-up, counting output lines), then ``repeat`` timed runs to /dev/null."""
    warm = subprocess.run(command, capture_output=True, timeout=timeout)
    lines = warm.stdout.count(b"\n")
    times = []
    for _ in range(repeat):
        t0 = time.monotonic()
        subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout
        )
        times.append(time.monotonic() - t0)
    return times, lines


def fill_postfix(args: argparse.Namespace) -> tuple[int, float]:
    """Inject until ``--messages`` are deferred or time is up; returns (deferred, seconds)."""
    t0 = time.monotonic()
    deadline = t0 + args.fill_timeout
    sent = 0
    while sent < args.messages and time.monotonic() < deadline:
        chunk = min(args.chunk, args.messages - sent)
        left = deadline - time.monotonic()
        _start, seconds, error = smtp_source(
            POSTFIX_PORT, args.sessions, chunk, args.size, max(left, 1.0)
        )
        sent += chunk if not error else 0
        counts = postfix_counts()
        print(
            f"  postfix: sent {sent} ({chunk / seconds:.0f} msg/s) queues {counts} {error}",
            flush=True,
        )
        if error:
            break
    # Let the active and incoming queues drain into the deferred queue.
    drain_deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < drain_deadline:
        counts = postfix_counts()
        if counts["incoming"] == 0 and counts["active"] == 0:
            break
        time.sleep(1.0)
    return postfix_counts()["deferred"], time.monotonic() - t0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1000, help="message bytes")
    parser.add_argument("--sessions", type=int, default=50, help="smtp-source sessions")
    parser.add_argument("--chunk", type=int, default=10_000, help="messages per smtp-source run")
    parser.add_argument("--fill-timeout", type=float, default=600.0)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mailq-timeout", type=float, default=600.0)
    parser.add_argument("--keep-postfix", action="store_true")
    parser.add_argument("--skip-postfix", action="store_true", help="time posthouse only")
    parser.add_argument("--root", type=Path, help="keep (and reuse) the posthouse data here")
    return parser.parse_args(argv)


def print_row(name: str, times: list[float], lines: int) -> None:
    runs = " ".join(f"{x:.2f}" for x in times)
    print(f"{name:>10} {statistics.median(times):>8.2f} {lines:>8}  {runs}")


def posthouse_only(args: argparse.Namespace) -> int:
    """Fill (unless ``--root`` already holds a queue) and time ``posthouse mailq``."""
    root = args.root or Path(tempfile.mkdtemp(prefix="phmailq-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        daemon = PosthouseDaemon(root, closed_port())
        if daemon.queue_dir.is_dir() and any(daemon.queue_dir.iterdir()):
            print(f"posthouse: reusing the queue in {daemon.queue_dir}", flush=True)
        else:
            t = fill_queue(daemon.queue_dir, args.messages, 0, args.size)
            print(f"posthouse: {args.messages} entries written in {t:.1f}s", flush=True)
        times, lines = time_command([*daemon.base, "mailq"], args.repeat, args.mailq_timeout)
        print(f"\nposthouse mailq, median of {args.repeat} warm runs, output to /dev/null")
        print(f"{'':>10} {'seconds':>8} {'lines':>8}  runs")
        print_row("posthouse", times, lines)
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.skip_postfix:
        return posthouse_only(args)
    if os.geteuid() != 0:
        print("mailq_vs_postfix: needs root (Postfix)")
        return 2
    root = Path(tempfile.mkdtemp(prefix="phmailq-"))
    postfix: PostfixControl | None = None
    try:
        postfix = PostfixControl()
        if not PostfixControl.queue_empty():
            print("mailq_vs_postfix: Postfix's queue is not empty; refusing to run")
            return 1
        postfix.set(
            relay_domains="sink.test",
            transport_maps=f"inline:{{sink.test=smtp:[127.0.0.1]:{closed_port()}}}",
            queue_run_delay="3600s",
            minimal_backoff_time="3600s",
            maximal_backoff_time="4000s",
        )
        print(f"filling Postfix's deferred queue with up to {args.messages} messages", flush=True)
        deferred, fill_seconds = fill_postfix(args)
        print(f"postfix: {deferred} deferred in {fill_seconds:.0f}s", flush=True)
        n = min(deferred, args.messages)
        if n < args.messages:
            print(f"NOTE: Postfix reached only {deferred}; using {n} messages for both")
        daemon = PosthouseDaemon(root, closed_port())
        t = fill_queue(daemon.queue_dir, n, 0, args.size)
        print(f"posthouse: {n} entries written in {t:.1f}s", flush=True)
        ph_times, ph_lines = time_command([*daemon.base, "mailq"], args.repeat, args.mailq_timeout)
        pf_times, pf_lines = time_command(["mailq"], args.repeat, args.mailq_timeout)
        ph, pf = statistics.median(ph_times), statistics.median(pf_times)
        print()
        print(
            f"mailq over {n} deferred messages ({args.size}-byte messages), median of "
            f"{args.repeat} warm runs, output to /dev/null"
        )
        print(f"{'':>10} {'seconds':>8} {'lines':>8}  runs")
        print_row("posthouse", ph_times, ph_lines)
        print_row("postfix", pf_times, pf_lines)
        print(f"ratio posthouse/postfix: {ph / pf:.2f}" if pf else "ratio: -")
    finally:
        if postfix is not None:
            subprocess.run(["postsuper", "-d", "ALL"], capture_output=True, timeout=600)
            postfix.restore()
            if not args.keep_postfix:
                postfix.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
