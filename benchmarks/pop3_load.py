#!/usr/bin/env python3
"""asyncio POP3 download load generator: N users download their whole maildrop at once.

Every session (one per user, all started together) does what a fast client does
on a "leave mail on server" download::

    greeting, USER, PASS, STAT, UIDL, RETR 1..n (pipelined in batches), QUIT

and never ``DELE``, so the mail stays and runs are repeatable.  RETRs are
pipelined (RFC 2449 §6.6): ``--batch`` commands go out in one write, and the
next batch is written before the current one's responses are read, so the
server always has work queued.  Each multi-line response is read as one piece
up to ``CRLF.CRLF`` (content is counted as transferred, dot-stuffing included).

Figures:

total
    messages (and bytes) retrieved / (last QUIT answered - first connect):
    what the users wait for, logins included;
transfer
    the same / (last RETR answered - first RETR sent), i.e. without the
    greeting, the login (posthouse verifies argon2id hashes; Dovecot's peer
    users have plain passwords) and the maildrop open/STAT/UIDL.

Bounds: each reply must arrive within ``--io-timeout`` seconds and the whole
run is cancelled after ``--timeout`` seconds (the figures then say so).  The
exit status is 0 only if every session retrieved every message of its STAT.

Example::

    .venv/bin/python benchmarks/pop3_load.py 127.0.0.1 1110 --users 20 --batch 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

READ_LIMIT = 64 * 1024 * 1024  # StreamReader limit: one whole message must fit
TERMINATOR = b"\r\n.\r\n"


class POP3Error(Exception):
    """A ``-ERR`` reply or a protocol violation."""


@dataclass
class SessionResult:
    user: str
    ok: bool = False
    stat_count: int = 0
    stat_octets: int = 0
    uidl_count: int = 0
    messages: int = 0
    octets: int = 0  # bytes of RETR content received (dot-stuffed, without the status lines)
    connected_at: float = 0.0
    logged_in_at: float = 0.0
    first_retr_at: float = 0.0
    last_retr_at: float = 0.0
    finished_at: float = 0.0
    error: str = ""


@dataclass
class LoadResult:
    users: int
    batch: int
    sessions_ok: int = 0
    messages: int = 0
    octets: int = 0
    total_seconds: float = 0.0
    transfer_seconds: float = 0.0
    login_seconds_max: float = 0.0
    msgs_per_s: float = 0.0
    mb_per_s: float = 0.0
    transfer_msgs_per_s: float = 0.0
    transfer_mb_per_s: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    timed_out: bool = False
    errors: dict[str, int] = field(default_factory=dict)
    sessions: list[SessionResult] = field(default_factory=list)


class POP3Client:
    """Minimal POP3 client on asyncio streams."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, io_timeout: float
    ):
        self.reader = reader
        self.writer = writer
        self.io_timeout = io_timeout

    @classmethod
    async def connect(cls, host: str, port: int, io_timeout: float) -> POP3Client:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=READ_LIMIT), io_timeout
        )
        client = cls(reader, writer, io_timeout)
        await client.status()  # greeting
        return client

    async def status(self) -> bytes:
        """One status line; raises POP3Error on -ERR."""
        line = await asyncio.wait_for(self.reader.readline(), self.io_timeout)
        if not line:
            raise POP3Error("connection closed")
        if not line.startswith(b"+OK"):
            raise POP3Error(line.decode(errors="replace").strip()[:120])
        return line

    async def multiline(self) -> bytes:
        """The body of a multi-line response after its status line (still dot-stuffed).

        Returns the content including its last CRLF but without the final ``.CRLF``.
        """
        first = await asyncio.wait_for(self.reader.readexactly(3), self.io_timeout)
        if first == b".\r\n":
            return b""
        rest = await asyncio.wait_for(self.reader.readuntil(TERMINATOR), self.io_timeout)
        return first + rest[:-3]

    async def command(self, line: str) -> bytes:
        self.writer.write(line.encode() + b"\r\n")
        return await self.status()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


async def hold_session(
    host: str, port: int, user: str, password: str, io_timeout: float
) -> POP3Client:
    """Log one user in and STAT (the server opens the maildrop); return the open client."""
    client = await POP3Client.connect(host, port, io_timeout)
    await client.command(f"USER {user}")
    await client.command(f"PASS {password}")
    await client.command("STAT")
    return client


async def download(
    host: str, port: int, user: str, password: str, batch: int, io_timeout: float
) -> SessionResult:
    """One user's session: login, STAT, UIDL, RETR everything (pipelined), QUIT."""
    result = SessionResult(user)
    result.connected_at = time.perf_counter()
    client: POP3Client | None = None
    try:
        client = await POP3Client.connect(host, port, io_timeout)
        await client.command(f"USER {user}")
        await client.command(f"PASS {password}")
        result.logged_in_at = time.perf_counter()
        stat = (await client.command("STAT")).split()
        result.stat_count, result.stat_octets = int(stat[1]), int(stat[2])
        await client.command("UIDL")
        listing = await client.multiline()
        result.uidl_count = listing.count(b"\r\n")
        count = result.stat_count
        writer = client.writer
        result.first_retr_at = time.perf_counter()
        numbers = list(range(1, count + 1))
        batches = [numbers[i : i + batch] for i in range(0, count, batch)]
        if batches:
            writer.write(b"".join(b"RETR %d\r\n" % n for n in batches[0]))
        for index, current in enumerate(batches):
            if index + 1 < len(batches):  # keep the next batch queued at the server
                writer.write(b"".join(b"RETR %d\r\n" % n for n in batches[index + 1]))
            await writer.drain()
            for _ in current:
                await client.status()
                content = await client.multiline()
                result.messages += 1
                result.octets += len(content)
        result.last_retr_at = time.perf_counter()
        await client.command("QUIT")
        result.finished_at = time.perf_counter()
        result.ok = result.messages == count and result.uidl_count == count
        if not result.ok:
            result.error = f"retrieved {result.messages} of {count}, uidl {result.uidl_count}"
    except (POP3Error, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:160]
        result.finished_at = time.perf_counter()
    finally:
        if client is not None:
            await client.close()
    return result


def summarise(results: list[SessionResult], users: int, batch: int) -> LoadResult:
    load = LoadResult(users, batch, sessions=results)
    done = [r for r in results if r.connected_at]
    load.sessions_ok = sum(r.ok for r in results)
    load.messages = sum(r.messages for r in results)
    load.octets = sum(r.octets for r in results)
    for r in results:
        if r.error:
            key = r.error.split(":")[0] if ":" in r.error else r.error
            load.errors[key] = load.errors.get(key, 0) + 1
    if done:
        start = min(r.connected_at for r in done)
        end = max(r.finished_at for r in done)
        load.total_seconds = end - start
        retrs = [r for r in done if r.first_retr_at and r.last_retr_at]
        if retrs:
            load.transfer_seconds = max(r.last_retr_at for r in retrs) - min(
                r.first_retr_at for r in retrs
            )
        logins = [r.logged_in_at - r.connected_at for r in done if r.logged_in_at]
        load.login_seconds_max = max(logins, default=0.0)
    if load.total_seconds > 0:
        load.msgs_per_s = load.messages / load.total_seconds
        load.mb_per_s = load.octets / 1e6 / load.total_seconds
    if load.transfer_seconds > 0:
        load.transfer_msgs_per_s = load.messages / load.transfer_seconds
        load.transfer_mb_per_s = load.octets / 1e6 / load.transfer_seconds
    return load


async def run_load(
    host: str,
    port: int,
    users: Sequence[str],
    password: str = "pass",
    batch: int = 32,
    io_timeout: float = 60.0,
    timeout: float = 600.0,
) -> LoadResult:
    """Every user downloads their maildrop, all at once; bounded by ``timeout`` seconds."""
    started_at = time.time()
    tasks = [
        asyncio.create_task(download(host, port, user, password, batch, io_timeout))
        for user in users
    ]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    results = [t.result() for t in tasks if t in done and not t.cancelled()]
    load = summarise(results, len(users), batch)
    load.started_at = started_at
    load.finished_at = time.time()
    if pending:
        load.timed_out = True
        load.errors["overall timeout (sessions cancelled)"] = len(pending)
    return load


def user_names(pattern: str, count: int, first: int) -> list[str]:
    return [pattern.format(n=n) for n in range(first, first + count)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--users", type=int, default=20, help="concurrent sessions, one per user")
    parser.add_argument("--user-pattern", default="user{n}", help="user name; {n} is 1..N")
    parser.add_argument("--first", type=int, default=1, help="first {n}")
    parser.add_argument("--password", default="pass")
    parser.add_argument("--batch", type=int, default=32, help="RETRs per pipelined write")
    parser.add_argument("--io-timeout", type=float, default=60.0, help="seconds per reply")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.users < 1 or args.batch < 1:
        parser.error("--users and --batch must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    users = user_names(args.user_pattern, args.users, args.first)
    load = asyncio.run(
        run_load(
            args.host, args.port, users, args.password, args.batch, args.io_timeout, args.timeout
        )
    )
    if args.json:
        figures = asdict(load)
        figures["sessions"] = [asdict(s) for s in load.sessions if s.error]  # failures only
        print(json.dumps(figures))
    else:
        print(
            f"sessions {load.sessions_ok}/{load.users} ok, {load.messages} messages, "
            f"{load.octets / 1e6:.1f} MB in {load.total_seconds:.2f} s "
            f"(batch {load.batch})"
        )
        print(f"total:    {load.msgs_per_s:9.0f} msg/s {load.mb_per_s:7.1f} MB/s")
        print(
            f"transfer: {load.transfer_msgs_per_s:9.0f} msg/s {load.transfer_mb_per_s:7.1f} MB/s "
            f"(slowest login {load.login_seconds_max * 1000:.0f} ms)"
        )
        for key, value in load.errors.items():
            print(f"error: {key} x{value}")
    ok = load.sessions_ok == load.users and not load.timed_out
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
