#!/usr/bin/env python3
"""Relay throughput: posthouse vs Postfix relaying to the same SMTP sink.

A tiny asyncio SMTP sink (in a thread of this process, 127.0.0.1, ephemeral
port; it accepts every command, offers PIPELINING and counts the messages
whose final dot it has seen) stands for the next hop.  Both servers relay
``bench@sink.test`` to it:

* posthouse: ``trusted_networks = ["127.0.0.0/8"]`` and a static route
  ``[[route]] domain = "sink.test", to = "127.0.0.1:PORT"``; started here on a
  fresh data directory, once per ``--workers`` value;
* Postfix (set up by ``../shared/peers/postfix.sh`` on 127.0.0.1:2525, whose
  ``default_transport``/``relay_transport`` is ``error``): for the benchmark
  ``relay_domains = sink.test`` and
  ``transport_maps = inline:{sink.test=smtp:[127.0.0.1]:PORT}``; the previous
  values are restored at exit.

For every session count (default 20 and 100) Postfix's C load generator
``smtp-source -s S -m M -l SIZE`` sends ``--messages`` messages of ``--size``
bytes, one connection per message, to Postfix and then to each posthouse
(interleaved, ``--rounds`` times).  Measured per run:

relay rate
    messages / (the moment the sink has counted all of them - smtp-source's start);
intake rate
    messages / smtp-source's run time (all ``250`` after end-of-data received).

The table shows the median over the rounds and the ratio posthouse/Postfix.
Everything is bounded: ``--run-timeout`` per load and per drain, ``--timeout``
for the whole benchmark.  Needs root (Postfix).

Other benchmarks import :class:`Sink`, :class:`PostfixControl` and
:class:`PosthouseDaemon` from this module.

Example::

    sudo .venv/bin/python benchmarks/relay_vs_postfix.py --messages 2000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from smtp_vs_postfix import (  # noqa: E402
    POSTFIX_SCRIPT,
    bench_config,
    parse_list,
    posthouse_command,
    ratio,
)

SENDER = "sender@local.test"
RECIPIENT = "bench@sink.test"
POSTFIX_PORT = 2525


# -- the sink -----------------------------------------------------------------------------


class _SinkProtocol(asyncio.Protocol):
    """One SMTP session: every command succeeds; counts completed DATA transfers."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffer = bytearray()
        self.in_data = False
        self.scan_from = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(b"220 sink.test ESMTP sink\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        out: list[bytes] = []
        pos = 0
        closing = False
        while True:
            if self.in_data:
                if buf.startswith(b".\r\n", pos):  # empty message
                    end = pos + 3
                else:
                    idx = buf.find(b"\r\n.\r\n", max(pos, self.scan_from))
                    if idx < 0:
                        self.scan_from = max(pos, len(buf) - 4)
                        break
                    end = idx + 5
                self.in_data = False
                self.scan_from = 0
                pos = end
                self.sink.count += 1
                self.sink.last_at = time.time()
                out.append(b"250 2.0.0 queued\r\n")
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            verb = bytes(buf[pos : pos + 4]).upper()
            pos = nl + 1
            if verb == b"EHLO":
                out.append(b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.scan_from = pos
                out.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                out.append(b"221 2.0.0 bye\r\n")
                closing = True
                break
            elif verb == b"STAR":
                out.append(b"454 4.7.0 TLS not available\r\n")
            else:
                out.append(b"250 2.0.0 ok\r\n")
        del buf[:pos]
        if self.scan_from:
            self.scan_from = max(0, self.scan_from - pos)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if closing and self.transport is not None:
            self.transport.close()


@dataclass
class Sink:
    """An SMTP sink on 127.0.0.1 running in a background thread; ``count`` messages so far."""

    port: int = 0
    count: int = 0
    last_at: float = 0.0
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Sink:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(
                loop.create_server(
                    lambda: _SinkProtocol(self), "127.0.0.1", self.port, backlog=1024
                )
            )
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            try:
                loop.run_forever()
            finally:
                server.close()
                loop.run_until_complete(server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=run, name="smtp-sink", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("sink did not start")
        return self

    def reset(self) -> None:
        self.count = 0
        self.last_at = 0.0

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count < n and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.count >= n

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


# -- Postfix --------------------------------------------------------------------------------


def _postconf(*args: str) -> str:
    return subprocess.run(
        ["postconf", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


class PostfixControl:
    """Postfix on 127.0.0.1:2525 (the shared script) with parameters changed for a benchmark
    and put back by :meth:`restore` (explicit values re-set, defaults removed with -X)."""

    def __init__(self) -> None:
        subprocess.run(["bash", str(POSTFIX_SCRIPT)], check=True, timeout=600)
        self.saved: dict[str, str | None] = {}

    def set(self, **params: str) -> None:
        for name in params:
            if name not in self.saved:
                explicit = _postconf("-n", name).strip()
                self.saved[name] = explicit.split("=", 1)[1].strip() if explicit else None
        _postconf("-e", *(f"{k}={v}" for k, v in params.items()))
        self.reload()

    def reload(self) -> None:
        subprocess.run(["postfix", "reload"], check=True, capture_output=True, timeout=60)
        time.sleep(1.0)

    def restore(self) -> None:
        if not self.saved:
            return
        for name, value in self.saved.items():
            if value is None:
                subprocess.run(["postconf", "-X", name], check=False, timeout=60)
            else:
                _postconf("-e", f"{name}={value}")
        self.saved = {}
        subprocess.run(["postfix", "reload"], capture_output=True, timeout=60)

    @staticmethod
    def queue_empty() -> bool:
        out = subprocess.run(["postqueue", "-p"], capture_output=True, text=True, timeout=120)
        return "Mail queue is empty" in out.stdout

    @staticmethod
    def stop() -> None:
        subprocess.run(["postfix", "stop"], capture_output=True, timeout=60)


def relay_params(port: int) -> dict[str, str]:
    return {
        "relay_domains": "sink.test",
        "transport_maps": f"inline:{{sink.test=smtp:[127.0.0.1]:{port}}}",
    }


# -- posthouse ------------------------------------------------------------------------------


class PosthouseDaemon:
    """A posthouse relay on ``root/data``; ``start()`` returns the seconds until it listens."""

    def __init__(self, root: Path, sink_port: int, workers: int = 1, queue: str = "") -> None:
        self.root = root
        self.workers = workers
        self.data = root / "data"
        self.queue_dir = self.data / "queue"
        self.config = root / "posthouse.toml"
        self.log = root / "posthouse.log"
        self.config.write_text(
            bench_config(
                self.data,
                workers,
                self.log,
                mail='trusted_networks = ["127.0.0.0/8"]',
                more=f'\n[queue]\n{queue}\n\n[[route]]\ndomain = "sink.test"\n'
                f'to = "127.0.0.1:{sink_port}"\n',
            ),
            encoding="utf-8",
        )
        self.base = [*posthouse_command(), "--config", str(self.config)]
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self, timeout: float = 120.0, settle: bool = True) -> float:
        started = time.monotonic()
        self.process = subprocess.Popen(
            [*self.base, "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        marker = "posthouse: listening smtp on "
        result: list[int] = []

        def read() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                if line.startswith(marker):
                    result.append(int(line[len(marker) :].strip().rsplit(":", 1)[1]))
                    break

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not result:
            self.stop()
            raise RuntimeError(f"posthouse did not start; see {self.log}")
        elapsed = time.monotonic() - started
        self.port = result[0]
        if settle:
            time.sleep(0.3 if self.workers <= 1 else 1.0)  # workers fork after printing
        return elapsed

    def queue_empty(self) -> bool:
        return not self.queue_dir.exists() or not any(self.queue_dir.glob("*.qf"))

    def run(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


# -- load -----------------------------------------------------------------------------------


def smtp_source(
    port: int, sessions: int, messages: int, size: int, timeout: float, to: str = RECIPIENT
) -> tuple[float, float, str]:
    """Run smtp-source; returns (start wall time, seconds, error text or "")."""
    command = ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size)]
    command += ["-f", SENDER, "-t", to, "-M", "client.test", f"inet:127.0.0.1:{port}"]
    started = time.time()
    t0 = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return started, time.monotonic() - t0, "smtp-source timed out"
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        return started, elapsed, f"smtp-source exit {proc.returncode}: {proc.stderr[-200:]}"
    return started, elapsed, ""


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass
class Run:
    server: str
    sessions: int
    messages: int
    relayed: int = 0
    intake_rate: float = 0.0
    relay_rate: float = 0.0
    note: str = ""


def one_run(
    name: str,
    port: int,
    queue_empty: Callable[[], bool],
    sink: Sink,
    sessions: int,
    args: argparse.Namespace,
) -> Run:
    run = Run(name, sessions, args.messages)
    if not wait_until(queue_empty, args.run_timeout):
        run.note = "queue did not drain before the run"
        return run
    time.sleep(0.5)
    sink.reset()
    started, seconds, error = smtp_source(
        port, sessions, args.messages, args.size, args.run_timeout
    )
    run.intake_rate = args.messages / seconds if not error else 0.0
    done = sink.wait_for(args.messages, args.run_timeout)
    run.relayed = sink.count
    if sink.count and sink.last_at:
        run.relay_rate = sink.count / (sink.last_at - started)
    if error:
        run.note = error
    elif not done:
        run.note = f"only {sink.count} relayed within {args.run_timeout:.0f}s"
    return run


def table(runs: list[Run], names: Sequence[str], sessions: Sequence[int]) -> str:
    def med(name: str, s: int, attr: str) -> float:
        values = [getattr(r, attr) for r in runs if r.server == name and r.sessions == s]
        values = [v for v in values if v]
        return statistics.median(values) if values else 0.0

    lines = [
        "median msg/s over the rounds; ratio = posthouse/postfix",
        f"{'sessions':>8} {'server':>19} | {'relay':>8} {'postfix':>8} {'ratio':>6} | "
        f"{'intake':>8} {'postfix':>8} {'ratio':>6}",
    ]
    lines.append("-" * len(lines[1]))
    for s in sessions:
        pr = med("postfix", s, "relay_rate")
        pi = med("postfix", s, "intake_rate")
        for name in names:
            hr = med(name, s, "relay_rate")
            hi = med(name, s, "intake_rate")
            lines.append(
                f"{s:>8} {name:>19} | {hr:>8.1f} {pr:>8.1f} {ratio(hr, pr):>6} | "
                f"{hi:>8.1f} {pi:>8.1f} {ratio(hi, pi):>6}"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=parse_list, default=[20, 100])
    parser.add_argument("--workers", type=parse_list, default=[1, 2])
    parser.add_argument("--messages", type=int, default=2000, help="messages per run")
    parser.add_argument("--size", type=int, default=5000, help="message bytes (smtp-source -l)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repetitions")
    parser.add_argument(
        "--queued",
        action="store_true",
        help='also run each posthouse with cut_through = "none" (every message queued first)',
    )
    parser.add_argument("--skip-postfix", action="store_true")
    parser.add_argument("--keep-postfix", action="store_true", help="leave Postfix running")
    parser.add_argument("--run-timeout", type=float, default=180.0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds in all")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("smtp-source") and os.geteuid() != 0:
        print("relay_vs_postfix: needs smtp-source (Postfix), i.e. root to install it")
        return 2
    if os.geteuid() != 0 and not args.skip_postfix:
        print("relay_vs_postfix: Postfix's setup needs root (or use --skip-postfix)")
        return 2
    deadline = time.monotonic() + args.timeout
    sink = Sink().start()
    root = Path(tempfile.mkdtemp(prefix="phrelay-"))
    postfix: PostfixControl | None = None
    daemons: list[PosthouseDaemon] = []
    runs: list[Run] = []
    names: list[str] = []
    targets: list[tuple[str, int, Callable[[], bool]]] = []
    try:
        if not args.skip_postfix:
            postfix = PostfixControl()
            postfix.set(**relay_params(sink.port))
        for w in args.workers:
            for queued in (False, True) if args.queued else (False,):
                name = f"posthouse-w{w}" + ("-queued" if queued else "")
                (root / name).mkdir()
                queue = 'cut_through = "none"' if queued else ""
                daemon = PosthouseDaemon(root / name, sink.port, workers=w, queue=queue)
                daemon.start()
                daemons.append(daemon)
                names.append(name)
        print(
            f"sink on 127.0.0.1:{sink.port}; "
            + ", ".join(f"{n} on {d.port}" for n, d in zip(names, daemons, strict=True))
            + ("" if postfix is None else f", postfix on {POSTFIX_PORT}"),
            flush=True,
        )
        if postfix is not None:
            targets.append(("postfix", POSTFIX_PORT, PostfixControl.queue_empty))
        targets += [(n, d.port, d.queue_empty) for n, d in zip(names, daemons, strict=True)]
        for rnd in range(args.rounds):
            for s in args.sessions:
                for name, port, empty in targets:
                    if time.monotonic() >= deadline:
                        print(f"skipped {name} sessions={s}: overall timeout")
                        continue
                    run = one_run(name, port, empty, sink, s, args)
                    runs.append(run)
                    print(
                        f"round {rnd + 1} {name:>12} sessions={s:<4} relayed={run.relayed} "
                        f"relay={run.relay_rate:.1f}/s intake={run.intake_rate:.1f}/s {run.note}",
                        flush=True,
                    )
    finally:
        for daemon in daemons:
            daemon.stop()
        if postfix is not None:
            postfix.restore()
            if not args.keep_postfix:
                postfix.stop()
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"{args.messages} messages of {args.size} bytes per run (smtp-source), to {RECIPIENT}")
    print(table(runs, names, args.sessions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
