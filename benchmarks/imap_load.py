#!/usr/bin/env python3
"""An IMAP load generator with the command mix of Dovecot's imaptest stress test.

Each client is one user and runs sessions back to back until the run's time is up.  A session
is what imaptest's default profile does with every state at 100 %::

    LOGIN user pass
    SELECT INBOX
    FETCH 1:* (UID FLAGS)                       the flags of every message
    UID FETCH <up to 10 random> (BODY.PEEK[HEADER])
    UID FETCH <2 random> (BODY.PEEK[])
    UID STORE <up to 5 random> +FLAGS (\\Seen)
    UID STORE <up to 5 random> -FLAGS (\\Seen)
    APPEND INBOX (\\Flagged) {N}                 a new message of --size bytes
    UID STORE <the oldest> +FLAGS (\\Deleted)
    EXPUNGE                                     so the mailbox keeps its size
    LOGOUT

Every command is one operation.  Reported: sessions and operations per second over the run,
the number of commands that failed (a ``NO``/``BAD``, or a connection closed), and p50/p99
latency per command name.  The client speaks the protocol over a raw asyncio stream (no
imaplib) so that it costs far less CPU than the servers it drives; synchronising literals are
used for APPEND, as a client that does not know the server would.

It is a load generator, not a test: it reports what it measured and never asserts.  Every
wait is bounded (``--io-timeout``) and so is the run (``--duration``).

Example, against any IMAP server on loopback with users user1..user10, password ``pass``::

    .venv/bin/python benchmarks/imap_load.py --port 1143 --clients 10 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
EXISTS = re.compile(rb"^\* (\d+) EXISTS", re.IGNORECASE)
UID_IN_FETCH = re.compile(rb"UID (\d+)", re.IGNORECASE)


class IMAPFailure(Exception):
    """A command got NO or BAD, or the connection ended."""


def message(user: str, number: int, size: int) -> bytes:
    """A plain-text message with CRLF line ends and ``size`` body bytes in 78-byte lines."""
    headers = (
        f"From: Sender <sender@local.test>\r\n"
        f"To: {user}@local.test\r\n"
        f"Subject: imap benchmark {user} {number}\r\n"
        f"Date: Thu, 03 Dec 2026 00:00:00 +0000\r\n"
        f"Message-ID: <{user}.{number}.{random.getrandbits(48):x}.imapbench@local.test>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n"
        f"\r\n"
    ).encode()
    line = (f"{user} message {number} " * 8).encode()[:76] + b"\r\n"
    return headers + line * max(1, size // 78)


class IMAPClient:
    """Just enough IMAP for the load: tagged commands, literals in responses, APPEND."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.counter = 0

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float) -> IMAPClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=1 << 22), timeout
        )
        client = cls(reader, writer, timeout)
        greeting = await client._line()
        if not greeting.startswith((b"* OK", b"* PREAUTH")):
            raise IMAPFailure(f"greeting: {greeting!r}")
        return client

    async def _line(self) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), self.timeout)
        if not line.endswith(b"\n"):
            raise IMAPFailure("connection closed")
        return line

    async def _response(self) -> bytes:
        """One response line with its literals inlined."""
        line = await self._line()
        parts = [line]
        while match := LITERAL.search(line):
            parts.append(
                await asyncio.wait_for(self.reader.readexactly(int(match.group(1))), self.timeout)
            )
            line = await self._line()
            parts.append(line)
        return b"".join(parts)

    async def command(self, text: str, literal: bytes | None = None) -> list[bytes]:
        """Send one command and return its untagged responses; raise unless it ends OK."""
        self.counter += 1
        tag = f"a{self.counter}".encode()
        if literal is None:
            self.writer.write(tag + b" " + text.encode() + b"\r\n")
        else:
            self.writer.write(tag + b" " + text.encode() + b" {%d}\r\n" % len(literal))
            await self.writer.drain()
            go_ahead = await self._line()
            if not go_ahead.startswith(b"+"):
                raise IMAPFailure(f"{text}: {go_ahead!r}")
            self.writer.write(literal + b"\r\n")
        await self.writer.drain()
        untagged: list[bytes] = []
        while True:
            response = await self._response()
            if response.startswith(tag + b" "):
                if response[len(tag) + 1 : len(tag) + 3].upper() != b"OK":
                    raise IMAPFailure(f"{text.split()[0]}: {response!r}")
                return untagged
            untagged.append(response)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), self.timeout)


@dataclass
class Tally:
    sessions: int = 0
    operations: int = 0
    failures: int = 0
    first_failure: str = ""
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def record(self, name: str, started: float) -> None:
        self.operations += 1
        self.latency[name].append(time.perf_counter() - started)


async def session(
    host: str, port: int, user: str, password: str, size: int, tally: Tally, timeout: float
) -> None:
    """One imaptest-style session; every command timed."""
    t = time.perf_counter()
    client = await IMAPClient.connect(host, port, timeout)
    tally.record("connect", t)
    try:

        async def op(name: str, text: str, literal: bytes | None = None) -> list[bytes]:
            started = time.perf_counter()
            result = await client.command(text, literal)
            tally.record(name, started)
            return result

        await op("login", f'LOGIN {user} "{password}"')
        selected = await op("select", "SELECT INBOX")
        exists = max((int(m.group(1)) for r in selected if (m := EXISTS.match(r))), default=0)
        uids: list[int] = []
        if exists:
            flags = await op("fetch-flags", "FETCH 1:* (UID FLAGS)")
            uids = [int(m.group(1)) for r in flags if (m := UID_IN_FETCH.search(r))]
        if uids:
            some = ",".join(str(u) for u in random.sample(uids, min(10, len(uids))))
            await op("fetch-headers", f"UID FETCH {some} (BODY.PEEK[HEADER])")
            some = ",".join(str(u) for u in random.sample(uids, min(2, len(uids))))
            await op("fetch-bodies", f"UID FETCH {some} (BODY.PEEK[])")
            some = ",".join(str(u) for u in random.sample(uids, min(5, len(uids))))
            await op("store", f"UID STORE {some} +FLAGS (\\Seen)")
            some = ",".join(str(u) for u in random.sample(uids, min(5, len(uids))))
            await op("store", f"UID STORE {some} -FLAGS (\\Seen)")
        await op("append", "APPEND INBOX (\\Flagged)", message(user, tally.sessions, size))
        if uids:
            await op("store", f"UID STORE {min(uids)} +FLAGS (\\Deleted)")
            await op("expunge", "EXPUNGE")
        await op("logout", "LOGOUT")
        tally.sessions += 1
    finally:
        await client.close()


async def client_loop(args: argparse.Namespace, user: str, tally: Tally, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            await session(
                args.host, args.port, user, args.password, args.size, tally, args.io_timeout
            )
        except (TimeoutError, IMAPFailure, OSError, asyncio.IncompleteReadError) as e:
            tally.failures += 1
            tally.first_failure = tally.first_failure or f"{user}: {e!r}"[:300]
            if tally.failures > 1000:
                return


@dataclass
class LoadResult:
    clients: int
    seconds: float
    sessions: int
    operations: int
    failures: int
    first_failure: str
    sessions_per_second: float
    operations_per_second: float
    latency_ms: dict[str, dict[str, float]]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run_load(args: argparse.Namespace, users: Sequence[str]) -> LoadResult:
    tally = Tally()
    start = time.monotonic()
    deadline = start + args.duration
    await asyncio.gather(*(client_loop(args, user, tally, deadline) for user in users))
    seconds = time.monotonic() - start
    return LoadResult(
        clients=len(users),
        seconds=round(seconds, 2),
        sessions=tally.sessions,
        operations=tally.operations,
        failures=tally.failures,
        first_failure=tally.first_failure,
        sessions_per_second=round(tally.sessions / seconds, 1),
        operations_per_second=round(tally.operations / seconds, 1),
        latency_ms={
            name: {
                "p50": round(statistics.median(v) * 1000, 2),
                "p99": round(percentile(v, 0.99) * 1000, 2),
            }
            for name, v in sorted(tally.latency.items())
        },
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=10, help="concurrent clients, one user each")
    p.add_argument("--user-pattern", default="user{}", help="user names (default user{})")
    p.add_argument("--first-user", type=int, default=1)
    p.add_argument("--password", default="pass")
    p.add_argument("--size", type=int, default=5000, help="body bytes of appended messages")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument("--io-timeout", type=float, default=30.0, help="bound on every wait")
    return p.parse_args(argv)


def user_names(pattern: str, count: int, first: int) -> list[str]:
    return [pattern.format(n) for n in range(first, first + count)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    users = user_names(args.user_pattern, args.clients, args.first_user)
    result = asyncio.run(run_load(args, users))
    json.dump(result.__dict__, sys.stdout, indent=2)
    print()
    return 0 if result.sessions else 1


if __name__ == "__main__":
    raise SystemExit(main())
