#!/usr/bin/env python3
"""An asyncio SMTP load generator: how fast does a server take in mail?

A fair, plain client spoken over raw asyncio streams: for each message it
sends ``EHLO`` (on a new connection), ``MAIL FROM``, ``RCPT TO``, ``DATA``,
the dot-stuffed message and ``.``, and waits for the final ``250``; the
connection ends with ``QUIT``.  By default every message gets its own
connection, like Postfix's ``smtp-source``; ``--per-connection N`` sends up
to N messages per connection instead.  ``--pipelining`` sends ``MAIL``,
``RCPT`` and ``DATA`` in one write when the server advertises PIPELINING.

``--sessions`` connections run concurrently, taking messages from one shared
pool of ``--messages`` until it is empty.  Every message carries a unique
Message-ID, a Date and a body of ``--size`` bytes of 78-character lines.

The run is bounded: each reply must come within ``--io-timeout`` seconds and
the whole run stops after ``--timeout`` seconds (messages not sent by then
count as not attempted).  Failed messages are counted, never retried.

Printed: messages accepted, failures, the intake rate (messages accepted per
second from the first connect until the last ``250``) and latency percentiles
(from the start of a message -- its connect, when it opens a connection, else
its ``MAIL`` -- to the ``250`` after its data).  ``--json`` prints the same as
one JSON object, with wall-clock ``started_at``/``finished_at`` so another
program can relate the run to deliveries it watches.

Example::

    .venv/bin/python benchmarks/smtp_load.py 127.0.0.1 2525 --sessions 20 --messages 2000
    .venv/bin/python benchmarks/smtp_load.py 127.0.0.1 2525 --to '{d}bench@local.test' --json

``--to`` may contain ``{n}`` (the message number, from 0), ``{d}`` (its last
digit) and ``{s}`` (the session number).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from email.utils import formatdate

__all__ = ["LoadConfig", "LoadResult", "build_body", "main", "percentile", "run_load"]


class SMTPReplyError(Exception):
    """The server answered with an unexpected reply code."""

    def __init__(self, stage: str, code: int, text: str) -> None:
        super().__init__(f"{stage}: {code} {text}")
        self.stage = stage
        self.code = code


@dataclass(frozen=True)
class LoadConfig:
    """Everything one load run needs."""

    host: str = "127.0.0.1"
    port: int = 25
    sessions: int = 20
    messages: int = 2000
    size: int = 5000
    per_connection: int = 1
    sender: str = "sender@local.test"
    to: str = "bench@local.test"
    helo: str = "client.test"
    pipelining: bool = False
    io_timeout: float = 30.0
    timeout: float = 300.0


@dataclass
class LoadResult:
    """What a run measured; rates are messages per second."""

    accepted: int = 0
    failed: int = 0
    not_attempted: int = 0
    connections: int = 0
    elapsed: float = 0.0
    rate: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    timed_out: bool = False
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    config: dict[str, object] = field(default_factory=dict)


def build_body(size: int) -> bytes:
    """A message body of ``size`` bytes (CRLF included) in lines of at most 78 characters.

    Lines start with a digit, so none needs dot-stuffing or could be read as an
    mbox ``From `` separator.
    """
    lines: list[bytes] = []
    total = 0
    number = 0
    while total < size:
        number += 1
        room = min(78, size - total - 2)
        if room <= 0:
            lines.append(b"")
            total += 2
            continue
        line = (str(number % 10) + "x" * (room - 1)).encode("ascii")
        lines.append(line)
        total += len(line) + 2
    return b"".join(line + b"\r\n" for line in lines)


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 section 4.5.2 transparency: double a leading dot on every line."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 for an empty list)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class _Pool:
    """The shared pool of message numbers the sessions take from."""

    def __init__(self, total: int, deadline: float) -> None:
        self.next = 0
        self.total = total
        self.deadline = deadline

    def take(self) -> int | None:
        if self.next >= self.total or time.monotonic() >= self.deadline:
            return None
        number = self.next
        self.next += 1
        return number

    def put_back(self, number: int) -> None:
        """Return an untouched message number (only the last one taken may come back)."""
        if number == self.next - 1:
            self.next -= 1


class _Client:
    """One SMTP connection speaking a plain, fair dialogue."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pipelining = False

    async def _reply(self, stage: str, expect: int) -> tuple[int, str]:
        assert self.reader is not None
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), self.config.io_timeout)
            if not raw:
                raise ConnectionError(f"{stage}: connection closed by server")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                break
        code = int(raw[:3]) if raw[:3].isdigit() else 0
        text = "\n".join(lines)
        if code != expect:
            raise SMTPReplyError(stage, code, text)
        return code, text

    async def connect(self) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.config.host, self.config.port), self.config.io_timeout
        )
        self.reader, self.writer = reader, writer
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self._reply("greeting", 220)
        writer.write(f"EHLO {self.config.helo}\r\n".encode("ascii"))
        _, text = await self._reply("EHLO", 250)
        extensions = {line.split()[0].upper() for line in text.splitlines()[1:] if line.strip()}
        self.pipelining = self.config.pipelining and "PIPELINING" in extensions

    async def send(self, recipient: str, message: bytes) -> None:
        assert self.writer is not None
        mail = f"MAIL FROM:<{self.config.sender}>\r\n".encode()
        rcpt = f"RCPT TO:<{recipient}>\r\n".encode()
        if self.pipelining:
            self.writer.write(mail + rcpt + b"DATA\r\n")
            await self._reply("MAIL", 250)
            await self._reply("RCPT", 250)
            await self._reply("DATA", 354)
        else:
            self.writer.write(mail)
            await self._reply("MAIL", 250)
            self.writer.write(rcpt)
            await self._reply("RCPT", 250)
            self.writer.write(b"DATA\r\n")
            await self._reply("DATA", 354)
        self.writer.write(message + b".\r\n")
        await self._reply("end of data", 250)

    async def quit(self) -> None:
        if self.writer is None:
            return
        try:
            self.writer.write(b"QUIT\r\n")
            await self._reply("QUIT", 221)
        except (TimeoutError, OSError, SMTPReplyError, ConnectionError):
            pass
        finally:
            await self.close()

    async def close(self) -> None:
        if self.writer is None:
            return
        writer, self.writer, self.reader = self.writer, None, None
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2.0)


class _Run:
    """State shared by the sessions of one run."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.body = dot_stuff(build_body(config.size))
        self.host_tag = f"{os.getpid()}.{int(time.time() * 1000)}"
        self.latencies: list[float] = []
        self.result = LoadResult()
        self.last_accept = 0.0

    def message(self, number: int, recipient: str) -> bytes:
        headers = (
            f"From: <{self.config.sender}>\r\n"
            f"To: <{recipient}>\r\n"
            f"Subject: load test message {number}\r\n"
            f"Date: {formatdate(localtime=True)}\r\n"
            f"Message-ID: <bench.{self.host_tag}.{number}@{self.config.helo}>\r\n"
            "\r\n"
        )
        return headers.encode("utf-8") + self.body

    def recipient(self, number: int, session: int) -> str:
        return self.config.to.format(n=number, d=number % 10, s=session)

    def error(self, exc: BaseException) -> None:
        self.result.failed += 1
        if isinstance(exc, SMTPReplyError):
            key = f"{exc.stage}: {exc.code}"
        elif isinstance(exc, asyncio.TimeoutError):
            key = "timeout"
        else:
            key = f"{type(exc).__name__}: {exc}"[:120]
        self.result.errors[key] = self.result.errors.get(key, 0) + 1

    async def session(self, session: int, pool: _Pool) -> None:
        while True:
            number = pool.take()
            if number is None:
                return
            client = _Client(self.config)
            started = time.monotonic()
            try:
                self.result.connections += 1
                await client.connect()
            except (TimeoutError, OSError, SMTPReplyError, ConnectionError) as exc:
                self.error(exc)
                await client.close()
                continue
            sent_here = 0
            while number is not None:
                recipient = self.recipient(number, session)
                try:
                    await client.send(recipient, self.message(number, recipient))
                except (TimeoutError, OSError, SMTPReplyError, ConnectionError) as exc:
                    self.error(exc)
                    break
                now = time.monotonic()
                self.latencies.append(now - started)
                self.result.accepted += 1
                self.last_accept = now
                sent_here += 1
                if sent_here >= self.config.per_connection:
                    break
                number = pool.take()
                started = time.monotonic()
            await client.quit()


async def run_load(config: LoadConfig) -> LoadResult:
    """Run one bounded load and return what it measured."""
    run = _Run(config)
    result = run.result
    started = time.monotonic()
    result.started_at = time.time()
    pool = _Pool(config.messages, started + config.timeout)
    tasks = [asyncio.create_task(run.session(index, pool)) for index in range(config.sessions)]
    # The pool stops handing out messages at the deadline; give the messages
    # in flight their reply timeout to finish before cancelling them.
    done, pending = await asyncio.wait(tasks, timeout=config.timeout + config.io_timeout + 5)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    for task in done:
        exc = task.exception()
        if exc is not None:
            run.error(exc)
    end = run.last_accept or time.monotonic()
    result.finished_at = result.started_at + (end - started)
    result.elapsed = end - started
    result.timed_out = bool(pending) or time.monotonic() >= started + config.timeout
    result.not_attempted = max(0, config.messages - result.accepted - result.failed)
    result.rate = result.accepted / result.elapsed if result.elapsed > 0 else 0.0
    latencies = sorted(run.latencies)
    result.latency_ms = {
        name: round(percentile(latencies, fraction) * 1000, 2)
        for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
    }
    result.config = asdict(config)
    return result


def format_result(result: LoadResult) -> str:
    """Human-readable summary of a run."""
    latency = result.latency_ms
    lines = [
        f"accepted {result.accepted}, failed {result.failed}, "
        f"not attempted {result.not_attempted}, connections {result.connections}"
        + (" (timed out)" if result.timed_out else ""),
        f"intake: {result.rate:.1f} msg/s ({result.accepted} in {result.elapsed:.3f} s)",
        "latency ms: " + ", ".join(f"{name} {value:.1f}" for name, value in latency.items()),
    ]
    lines += [f"error x{count}: {key}" for key, count in sorted(result.errors.items())]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--sessions", type=int, default=20, help="concurrent connections")
    parser.add_argument("--messages", type=int, default=2000, help="messages in all")
    parser.add_argument("--size", type=int, default=5000, help="body bytes per message")
    parser.add_argument(
        "--per-connection",
        type=int,
        default=1,
        metavar="N",
        help="messages per connection (default 1: a connection per message)",
    )
    parser.add_argument("--from", dest="sender", default="sender@local.test")
    parser.add_argument(
        "--to", default="bench@local.test", help="recipient; may use {n}, {d} and {s}"
    )
    parser.add_argument("--helo", default="client.test")
    parser.add_argument(
        "--pipelining", action="store_true", help="pipeline MAIL/RCPT/DATA when offered"
    )
    parser.add_argument("--io-timeout", type=float, default=30.0, help="seconds per reply")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.messages < 0 or args.per_connection < 1 or args.size < 0:
        parser.error("--sessions and --per-connection must be >= 1, sizes and counts >= 0")
    return args


def raise_nofile_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted``; returns the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = LoadConfig(
        host=args.host,
        port=args.port,
        sessions=args.sessions,
        messages=args.messages,
        size=args.size,
        per_connection=args.per_connection,
        sender=args.sender,
        to=args.to,
        helo=args.helo,
        pipelining=args.pipelining,
        io_timeout=args.io_timeout,
        timeout=args.timeout,
    )
    raise_nofile_limit(args.sessions * 2 + 64)
    result = asyncio.run(run_load(config))
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(format_result(result))
    return 0 if result.failed == 0 and result.not_attempted == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
