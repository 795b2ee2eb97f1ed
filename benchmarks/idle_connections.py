#!/usr/bin/env python3
"""Memory per idle SMTP connection: open many connections, compare the server's RSS.

Starts posthouse on a fresh data directory (``[smtp] max_connections = 5000``,
``max_connections_per_client = 2000`` so one client may hold them all), measures
the resident memory of the server and its worker processes (``VmRSS`` and, as
forked workers share pages, ``Pss`` from ``/proc/PID/smaps_rollup``), opens
``--connections`` connections (1000 by default) and reads each one's ``220``
greeting, lets them sit idle for ``--settle`` seconds, measures again, and
prints the total growth and the growth per connection.  The connections are
then closed and the memory measured once more (Python's allocator keeps much
of it, so this shows what is returned, not what was used).

``--postfix N`` also does the same against Postfix's smtpd on 127.0.0.1:2525
with N connections (Postfix forks one smtpd per connection and its
``default_process_limit`` is 150 in the peer setup, so keep N below that);
the process tree under Postfix's master is measured.

Bounded: each connect and greeting must come within ``--io-timeout`` seconds
and the whole run stops after ``--timeout`` seconds.  The client raises its
open-files limit to fit the connections.

Example::

    .venv/bin/python benchmarks/idle_connections.py --connections 1000 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from smtp_load import raise_nofile_limit
from smtp_vs_postfix import Postfix, Posthouse, children_of


@dataclass
class Memory:
    """Resident memory of a set of processes, in KiB."""

    processes: int = 0
    rss_kib: int = 0
    pss_kib: int = 0


@dataclass
class IdleResult:
    """What one idle-connections measurement found."""

    server: str
    connections: int
    opened: int = 0
    before: Memory = field(default_factory=Memory)
    idle: Memory = field(default_factory=Memory)
    after_close: Memory = field(default_factory=Memory)
    rss_per_connection_kib: float = 0.0
    pss_per_connection_kib: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def measure(root_pids: Sequence[int]) -> Memory:
    """Sum VmRSS and Pss over the given processes and all their descendants."""
    pids: set[int] = set()
    for pid in root_pids:
        pids.add(pid)
        pids.update(children_of(pid))
    memory = Memory()
    for pid in sorted(pids):
        rss = _status_kib(pid, "VmRSS")
        if rss:
            memory.processes += 1
            memory.rss_kib += rss
            memory.pss_kib += _pss_kib(pid)
    return memory


async def open_idle(
    host: str, port: int, count: int, io_timeout: float, deadline: float, errors: dict[str, int]
) -> list[asyncio.StreamWriter]:
    """Open ``count`` connections (at most 100 connecting at once), reading each greeting."""
    gate = asyncio.Semaphore(100)
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        async with gate:
            if time.monotonic() >= deadline:
                errors["deadline"] = errors.get("deadline", 0) + 1
                return
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), io_timeout
                )
            except (TimeoutError, OSError) as exc:
                key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1
                return
            try:
                line = await asyncio.wait_for(reader.readline(), io_timeout)
            except (TimeoutError, OSError) as exc:
                line = f"{type(exc).__name__}".encode()
            if not line.startswith(b"220"):
                key = "greeting: " + line[:60].decode(errors="replace").strip()
                errors[key] = errors.get(key, 0) + 1
                writer.close()
                return
            writers.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    return writers


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True), 10
        )


async def measure_idle(
    name: str,
    host: str,
    port: int,
    pids: Sequence[int],
    count: int,
    settle: float,
    io_timeout: float,
    deadline: float,
) -> IdleResult:
    """Open ``count`` idle connections to host:port and measure ``pids``' memory."""
    result = IdleResult(name, count)
    await asyncio.sleep(settle)
    result.before = measure(pids)
    writers = await open_idle(host, port, count, io_timeout, deadline, result.errors)
    result.opened = len(writers)
    await asyncio.sleep(settle)
    result.idle = measure(pids)
    await close_all(writers)
    await asyncio.sleep(settle)
    result.after_close = measure(pids)
    if result.opened:
        result.rss_per_connection_kib = (
            result.idle.rss_kib - result.before.rss_kib
        ) / result.opened
        result.pss_per_connection_kib = (
            result.idle.pss_kib - result.before.pss_kib
        ) / result.opened
    return result


def format_result(result: IdleResult) -> str:
    def mib(kib: int) -> str:
        return f"{kib / 1024:.1f} MiB"

    lines = [
        f"{result.server}: {result.opened}/{result.connections} idle connections open",
        f"  before: {result.before.processes} processes, RSS {mib(result.before.rss_kib)}, "
        f"PSS {mib(result.before.pss_kib)}",
        f"  idle:   {result.idle.processes} processes, RSS {mib(result.idle.rss_kib)}, "
        f"PSS {mib(result.idle.pss_kib)}",
        f"  closed: {result.after_close.processes} processes, "
        f"RSS {mib(result.after_close.rss_kib)}, PSS {mib(result.after_close.pss_kib)}",
        f"  growth: RSS {mib(result.idle.rss_kib - result.before.rss_kib)} total, "
        f"{result.rss_per_connection_kib:.1f} KiB per connection; "
        f"PSS {result.pss_per_connection_kib:.1f} KiB per connection",
    ]
    lines += [f"  error x{n}: {key}" for key, n in sorted(result.errors.items())]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1, help="posthouse worker processes")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--io-timeout", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds in all")
    parser.add_argument(
        "--postfix", type=int, default=0, metavar="N", help="also N connections to Postfix"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_nofile_limit(args.connections + max(args.postfix, 0) + 256)
    if limit < args.connections + 64:
        print(f"idle_connections: open-files limit {limit} is too low", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.timeout
    results: list[IdleResult] = []
    root = Path(tempfile.mkdtemp(prefix="phidle-"))
    try:
        server = Posthouse(args.workers, root, aliases=10)
        try:
            results.append(
                asyncio.run(
                    measure_idle(
                        server.name,
                        server.host,
                        server.port,
                        [server.process.pid],
                        args.connections,
                        args.settle,
                        args.io_timeout,
                        deadline,
                    )
                )
            )
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.postfix > 0 and time.monotonic() < deadline:
        postfix = Postfix("as-installed")
        results.append(
            asyncio.run(
                measure_idle(
                    "postfix",
                    postfix.host,
                    postfix.port,
                    postfix.pids(),
                    args.postfix,
                    args.settle,
                    args.io_timeout,
                    deadline,
                )
            )
        )
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
    else:
        print("\n".join(format_result(r) for r in results))
    return 0 if all(r.opened == r.connections for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
