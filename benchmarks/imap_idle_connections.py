#!/usr/bin/env python3
"""Many IMAP sessions in IDLE over the wire: posthouse's memory and wake-up time.

Starts posthouse (``--workers`` processes, an IMAP listener on 127.0.0.1) with ``--users``
users of one message each, then opens ``--connections`` connections, each of which logs in
(users in turn), selects INBOX and sends IDLE (RFC 2177), at most 100 connecting at once.
It reports VmRSS and Pss summed over every posthouse process before and with the sessions
idling, the server's CPU while they idle, and the wake-up: one more connection APPENDs a
message to ``user1``'s INBOX and the script times how long until every IDLE session of
``user1`` (about ``connections / users`` of them, spread over the workers) has received
its ``* n EXISTS``.

It is a benchmark, not a test: it reports and never asserts.  Everything is on loopback,
bounded by ``--io-timeout`` per wait and ``--timeout`` overall; the script raises its own
open-files limit (the server inherits it) and nothing else.  Example::

    .venv/bin/python benchmarks/imap_idle_connections.py --connections 10000 --users 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from idle_connections import Memory, measure  # noqa: E402
from imap_load import IMAPClient, message, user_names  # noqa: E402
from imap_vs_peers import PASSWORD, Posthouse  # noqa: E402
from smtp_load import raise_nofile_limit  # noqa: E402
from smtp_vs_postfix import children_of  # noqa: E402


@dataclass
class IdleResult:
    connections: int
    users: int
    workers: int
    idling: int = 0
    open_seconds: float = 0.0
    before: Memory = field(default_factory=Memory)
    idle: Memory = field(default_factory=Memory)
    rss_per_session_kib: float = 0.0
    pss_per_session_kib: float = 0.0
    idle_cpu_percent: float = 0.0
    woken: int = 0
    to_wake: int = 0
    wake_seconds_median: float = 0.0
    wake_seconds_max: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class Idler:
    user: str
    client: IMAPClient


async def open_idlers(
    port: int, users: Sequence[str], count: int, io_timeout: float, errors: dict[str, int]
) -> list[Idler]:
    gate = asyncio.Semaphore(100)
    idlers: list[Idler] = []

    async def one(n: int) -> None:
        user = users[n % len(users)]
        async with gate:
            try:
                client = await IMAPClient.connect("127.0.0.1", port, io_timeout)
            except (TimeoutError, OSError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            try:
                await client.command(f'LOGIN {user} "{PASSWORD}"')
                await client.command("SELECT INBOX")
                client.counter += 1
                client.writer.write(b"idle%d IDLE\r\n" % client.counter)
                await client.writer.drain()
                go_ahead = await client._line()
                if not go_ahead.startswith(b"+"):
                    raise OSError(f"IDLE answered {go_ahead[:60]!r}")
            except Exception as exc:  # counted and reported; the rest go on
                key = f"{type(exc).__name__}: {str(exc)[:60]}"
                errors[key] = errors.get(key, 0) + 1
                await client.close()
                return
            idlers.append(Idler(user, client))

    await asyncio.gather(*(one(n) for n in range(count)))
    return idlers


def cpu_ticks(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


async def wake_times(
    port: int, idlers: list[Idler], user: str, io_timeout: float
) -> tuple[list[float], int]:
    """APPEND to ``user``'s INBOX on a fresh connection; seconds until each of that user's
    idlers reads ``EXISTS``."""
    watched = [i for i in idlers if i.user == user]

    async def woken(idler: Idler, since: float) -> float:
        while True:
            line = await idler.client._line()
            if line.rstrip().upper().endswith(b"EXISTS"):
                return time.perf_counter() - since

    appender = await IMAPClient.connect("127.0.0.1", port, io_timeout)
    try:
        await appender.command(f'LOGIN {user} "{PASSWORD}"')
        started = time.perf_counter()
        waits = [asyncio.create_task(woken(i, started)) for i in watched]
        await appender.command("APPEND INBOX ()", message(user, 999, 2000))
        done, pending = await asyncio.wait(waits, timeout=io_timeout)
        for task in pending:
            task.cancel()
        times = [t.result() for t in done if t.exception() is None]
        await appender.command("LOGOUT")
    finally:
        await appender.close()
    return times, len(watched)


async def run(args: argparse.Namespace, server: Posthouse, users: Sequence[str]) -> IdleResult:
    assert server.process is not None
    roots = [server.process.pid]
    result = IdleResult(args.connections, len(users), args.workers)
    result.before = measure(roots)
    started = time.perf_counter()
    idlers = await asyncio.wait_for(
        open_idlers(server.port, users, args.connections, args.io_timeout, result.errors),
        args.timeout,
    )
    result.open_seconds = round(time.perf_counter() - started, 1)
    result.idling = len(idlers)
    await asyncio.sleep(args.settle)  # let the server finish its bookkeeping
    pids = [*roots, *children_of(roots[0])]
    ticks, at = cpu_ticks(pids), time.perf_counter()
    await asyncio.sleep(args.settle)
    result.idle_cpu_percent = round(
        100 * (cpu_ticks(pids) - ticks) / 100 / (time.perf_counter() - at), 1
    )
    result.idle = measure(roots)
    if idlers:
        grown_rss = result.idle.rss_kib - result.before.rss_kib
        grown_pss = result.idle.pss_kib - result.before.pss_kib
        result.rss_per_session_kib = round(grown_rss / len(idlers), 1)
        result.pss_per_session_kib = round(grown_pss / len(idlers), 1)
        times, result.to_wake = await wake_times(server.port, idlers, users[0], args.io_timeout)
        result.woken = len(times)
        if times:
            result.wake_seconds_median = round(statistics.median(times), 3)
            result.wake_seconds_max = round(max(times), 3)
    for idler in idlers:
        idler.client.writer.close()
    return result


def format_result(r: IdleResult) -> str:
    def mib(kib: int) -> str:
        return f"{kib / 1024:.1f} MiB"

    return "\n".join(
        [
            f"posthouse, {r.workers} worker(s): {r.idling} of {r.connections} sessions in IDLE"
            f" ({r.users} users), opened in {r.open_seconds} s",
            f"  RSS {mib(r.before.rss_kib)} -> {mib(r.idle.rss_kib)} in all"
            f" ({r.idle.processes} processes), {r.rss_per_session_kib} KiB per session",
            f"  PSS {mib(r.before.pss_kib)} -> {mib(r.idle.pss_kib)},"
            f" {r.pss_per_session_kib} KiB per session",
            f"  CPU while idling: {r.idle_cpu_percent}% of one core",
            f"  wake-up after an APPEND: {r.woken} of {r.to_wake} woken,"
            f" median {r.wake_seconds_median} s, max {r.wake_seconds_max} s",
            f"  errors: {r.errors or 'none'}",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--settle", type=float, default=5.0, help="seconds before each measurement")
    p.add_argument("--io-timeout", type=float, default=120.0)
    p.add_argument("--timeout", type=float, default=900.0, help="bound on opening them all")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = args.connections * 2 + 1024  # this process's sockets, and the server's
    if raise_nofile_limit(wanted) < args.connections + 256:
        print("imap_idle_connections: the open-files limit is too low", file=sys.stderr)
        return 2
    users = user_names("user{}", args.users, 1)
    root = Path(tempfile.mkdtemp(prefix="imapidle-", dir="/var/tmp"))
    try:
        server = Posthouse(root, args.workers)
        limits = f"max_connections = {args.connections + 100}\n"
        limits += f"max_connections_per_client = {args.connections + 100}\n"
        text = server.config.read_text(encoding="utf-8")
        for line in ("max_connections = 5000\n", "max_connections_per_client = 2000\n"):
            text = text.replace(line, "")
        server.config.write_text(text.replace("[smtp]\n", "[smtp]\n" + limits), encoding="utf-8")
        try:
            server.start(users, 1, 2000)
            result = asyncio.run(run(args, server, users))
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(asdict(result), indent=1) if args.json else format_result(result))
    return 0 if result.idling == args.connections and result.woken == result.to_wake else 1


if __name__ == "__main__":
    raise SystemExit(main())
