#!/usr/bin/env python3
"""posthouse's SMTP server side by side with Postfix, on this machine, in the same run.

For each number of concurrent sessions (default 1, 20 and 100) the same load --
``--messages`` messages of ``--size`` bytes, one connection per message unless
``--per-connection`` says otherwise -- is sent to Postfix (127.0.0.1:2525, set up
by ``../shared/peers/postfix.sh``) and to posthouse (started here on a fresh
data directory, once per ``--workers`` value).  Two rates are measured:

intake
    messages accepted per second, from the first connect until the last ``250``
    after end-of-data (both servers fsync the message before that ``250``);
end-to-end
    messages per second from the first connect until the last accepted message
    is in its mbox (the mbox files are truncated before each run and their
    ``From `` separator lines counted by polling every 10 ms).

The clients: ``smtp_load.py`` (asyncio, run as a subprocess so that this
process can watch the mboxes) and, with ``--smtp-source``, Postfix's C load
generator ``smtp-source`` (same dialogue, fewer client CPU cycles; its intake
time is the process's run time).  Runs are interleaved (Postfix, then each
posthouse) for every session count so drift in the machine's speed hits all
sides alike.  The result is a table of rates and posthouse/Postfix ratios, and
with ``--json FILE`` all the raw figures.

By default every message goes to ``bench@local.test`` (user1's mbox on both
sides, so deliveries serialise on one mbox lock); ``--spread`` sends message N
to ``Nbench@local.test``, spread over user1..user5 on both sides.

Postfix as installed by Debian delivers mbox mail through ``procmail``
(``mailbox_command``); ``--postfix-delivery local`` (the default) blanks
``mailbox_command`` for the benchmark so Postfix's own local(8) agent appends to
the mbox, as posthouse does, and restores the setting at the end;
``--postfix-delivery as-installed`` leaves it alone.

Everything is bounded: ``--run-timeout`` per load, ``--deliver-timeout`` for
the mboxes to fill, and ``--timeout`` for the whole benchmark (remaining runs
are skipped).  Needs root (Postfix's setup script; reading /var/mail).

Example::

    .venv/bin/python benchmarks/smtp_vs_postfix.py --messages 2000 --smtp-source
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The peers sit beside the repository: ../shared/peers/ from its root.
POSTFIX_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "postfix.sh"
USERS = tuple(f"user{i}" for i in range(1, 6))
SENDER = "sender@local.test"
POLL_SECONDS = 0.01


def bench_config(
    data_dir: Path,
    workers: int,
    log_file: Path,
    *,
    protocol: str = "smtp",
    port: int = 0,
    mail: str = 'locking = "lockf"',
    more: str = "",
) -> str:
    """The benchmarks' posthouse configuration: warnings only, lockf, high connection limits,
    one ``protocol`` listener on 127.0.0.1:``port``; ``mail`` lines go into ``[mail]`` and
    ``more`` (further sections) at the end."""
    return f"""\
[server]
hostname = "mail.test"
data_dir = "{data_dir}"
run_as = ""
workers = {workers}
log_level = "warning"
log_file = "{log_file}"

[mail]
local_domains = ["local.test"]
{mail}

[smtp]
max_connections = 5000
max_connections_per_client = 2000

[[listener]]
protocol = "{protocol}"
address = "127.0.0.1"
port = {port}
{more}"""


def posthouse_command() -> list[str]:
    """The ``posthouse`` entry point of the repository's virtualenv (or of $PATH)."""
    candidate = REPO / ".venv" / "bin" / "posthouse"
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("posthouse")
    if found:
        return [found]
    return [sys.executable, "-m", "posthouse"]


def user_for(number: int) -> str:
    """Postfix's bench_valias mapping: the last digit of N in ``Nbench`` picks the user."""
    return USERS[number % 5]


class MboxCounter:
    """Counts messages appended to a set of mbox files, reading only what is new."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self._offsets: dict[Path, int] = {}
        self._counts: dict[Path, int] = {}
        self._last_byte: dict[Path, bytes] = {}

    def truncate(self) -> None:
        """Empty every mbox (keeping owner and mode) and reset the counts."""
        for path in self.paths:
            if path.exists():
                with open(path, "r+b") as f:
                    f.truncate(0)
        self._offsets = {path: 0 for path in self.paths}
        self._counts = {path: 0 for path in self.paths}
        self._last_byte = {path: b"\n" for path in self.paths}

    def count(self) -> int:
        """Messages in all mboxes: lines starting with ``From `` (the separators)."""
        for path in self.paths:
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets[path])
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            # Count only complete lines; keep the partial last line for the next poll.
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                continue
            chunk = self._last_byte[path] + data[:cut]
            self._counts[path] += chunk.count(b"\nFrom ")
            self._offsets[path] += cut
            self._last_byte[path] = b"\n"
        return sum(self._counts.values())


@dataclass
class RunResult:
    """One load against one server."""

    server: str
    client: str
    sessions: int
    messages: int
    accepted: int = 0
    failed: int = 0
    intake_seconds: float = 0.0
    intake_rate: float = 0.0
    delivered: int = 0
    e2e_seconds: float = 0.0
    e2e_rate: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    note: str = ""


class Server:
    """A server under test: where it listens, its mboxes, how to tell it is idle."""

    name = "server"
    host = "127.0.0.1"
    port = 0

    def mboxes(self) -> list[Path]:
        raise NotImplementedError

    def queue_empty(self) -> bool:
        raise NotImplementedError

    def pids(self) -> list[int]:
        return []

    def stop(self) -> None:
        """Stop the server if this benchmark started it."""


class Postfix(Server):
    """The Postfix peer, configured by the shared script; left running until :meth:`stop`."""

    name = "postfix"
    port = 2525

    def __init__(self, delivery: str) -> None:
        subprocess.run(["bash", str(POSTFIX_SCRIPT)], check=True, timeout=600)
        self.saved_mailbox_command: str | None = None
        if delivery == "local":
            current = subprocess.run(
                ["postconf", "-h", "mailbox_command"],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            if current:
                self.saved_mailbox_command = current
                self._set_mailbox_command("")

    @staticmethod
    def _set_mailbox_command(value: str) -> None:
        subprocess.run(["postconf", "-e", f"mailbox_command={value}"], check=True, timeout=30)
        subprocess.run(["postfix", "reload"], check=True, capture_output=True, timeout=30)
        time.sleep(1.0)

    def restore(self) -> None:
        """Put back the mailbox_command this benchmark blanked."""
        if self.saved_mailbox_command is not None:
            self._set_mailbox_command(self.saved_mailbox_command)
            self.saved_mailbox_command = None

    def mboxes(self) -> list[Path]:
        return [Path("/var/mail") / user for user in USERS]

    def queue_empty(self) -> bool:
        out = subprocess.run(["postqueue", "-p"], capture_output=True, text=True, timeout=30).stdout
        return "Mail queue is empty" in out

    def pids(self) -> list[int]:
        master = Path("/var/spool/postfix/pid/master.pid")
        with contextlib.suppress(OSError, ValueError):
            return [int(master.read_text().split()[0])]
        return []

    def stop(self) -> None:
        self.restore()
        subprocess.run(["postfix", "stop"], capture_output=True, timeout=60)


class Posthouse(Server):
    """A posthouse daemon on a fresh data directory, started and stopped here."""

    def __init__(self, workers: int, root: Path, aliases: int, port: int = 0) -> None:
        self.name = f"posthouse-w{workers}"
        self.workers = workers
        self.root = root
        self.data = root / "data"
        self.config = root / "posthouse.toml"
        self.log = root / "posthouse.log"
        self.config.write_text(
            bench_config(self.data, workers, self.log, port=port),
            encoding="utf-8",
        )
        base = [*posthouse_command(), "--config", str(self.config)]
        for user in USERS:
            subprocess.run(
                [*base, "user", "add", user, "--password", "pass"],
                check=True,
                capture_output=True,
                timeout=60,
            )
        etc = self.data / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        lines = ["# benchmark aliases, the same mapping as Postfix's bench_valias", "bench: user1"]
        lines += [f"{n}bench: {user_for(n)}" for n in range(aliases)]
        (etc / "aliases").write_text("\n".join(lines) + "\n", encoding="utf-8")
        subprocess.run([*base, "newaliases"], check=True, capture_output=True, timeout=120)
        self.process = subprocess.Popen(
            [*base, "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.port = self._wait_for_port(timeout=30.0)

    def _wait_for_port(self, timeout: float) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        marker = "posthouse: listening smtp on "
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith(marker):
                port = int(line[len(marker) :].strip().rsplit(":", 1)[1])
                self.process.stdout.close()  # nothing else comes on stdout
                time.sleep(0.3 if self.workers <= 1 else 1.0)  # workers fork after printing
                return port
        self.stop()
        raise RuntimeError(f"{self.name} did not start; see {self.log}")

    def mboxes(self) -> list[Path]:
        return [self.data / "spool" / "mail" / user for user in USERS]

    def queue_empty(self) -> bool:
        queue = self.data / "queue"
        return not queue.exists() or not any(queue.glob("*.qf"))

    def pids(self) -> list[int]:
        return [self.process.pid, *children_of(self.process.pid)]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def children_of(pid: int) -> list[int]:
    """Direct and indirect child processes of ``pid`` (from /proc/*/stat)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


async def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll a callable until it returns true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


async def run_client(
    args: argparse.Namespace, server: Server, client: str, sessions: int
) -> tuple[dict[str, Any], str]:
    """Run one load; returns (figures, note).  Figures: accepted, failed, started_at, ..."""
    if client == "smtp_load":
        command = [
            sys.executable,
            str(HERE / "smtp_load.py"),
            server.host,
            str(server.port),
            "--sessions",
            str(sessions),
            "--messages",
            str(args.messages),
            "--size",
            str(args.size),
            "--per-connection",
            str(args.per_connection),
            "--to",
            "{n}bench@local.test" if args.spread else "bench@local.test",
            "--timeout",
            str(args.run_timeout),
            "--json",
        ]
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), args.run_timeout + 120)
        try:
            figures: dict[str, Any] = json.loads(out)
        except json.JSONDecodeError:
            return {}, f"smtp_load failed: {err.decode(errors='replace')[-300:]}"
        errors: dict[str, int] = figures.get("errors") or {}
        return figures, "; ".join(f"{k} x{v}" for k, v in errors.items())[:200]
    command = ["smtp-source", "-s", str(sessions), "-m", str(args.messages)]
    command += ["-l", str(args.size), "-f", SENDER, "-t", "bench@local.test", "-M", "client.test"]
    if args.spread:
        command.append("-N")
    if args.per_connection > 1:
        command.append("-d")  # smtp-source keeps one connection per session
    command.append(f"inet:{server.host}:{server.port}")
    started_at = time.time()
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), args.run_timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {}, "smtp-source timed out"
    finished_at = time.time()
    if proc.returncode != 0:
        return {}, f"smtp-source exit {proc.returncode}: {err.decode(errors='replace')[-200:]}"
    return {
        "accepted": args.messages,
        "failed": 0,
        "started_at": started_at,
        "finished_at": finished_at,
        "latency_ms": {},
    }, ""


async def one_run(
    args: argparse.Namespace, server: Server, client: str, sessions: int
) -> RunResult:
    """Quiesce, truncate the mboxes, load, and wait for the last delivery."""
    result = RunResult(server.name, client, sessions, args.messages)
    if not await wait_until(server.queue_empty, args.deliver_timeout, 0.2):
        result.note = "queue not empty before the run"
    counter = MboxCounter(server.mboxes())
    counter.truncate()
    delivered_at: list[float] = []
    target: list[int] = []  # set once the client finished and we know how many to expect
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            now = time.time()
            count = counter.count()
            result.delivered = count
            if target and count >= target[0]:
                delivered_at.append(now)
                return
            await asyncio.sleep(POLL_SECONDS)

    watcher = asyncio.create_task(watch())
    figures, note = await run_client(args, server, client, sessions)
    result.note = "; ".join(filter(None, [result.note, note]))
    if not figures:
        stop.set()
        await watcher
        return result
    accepted = int(figures["accepted"])
    started_at = float(figures["started_at"])
    finished_at = float(figures["finished_at"])
    result.accepted = accepted
    result.failed = int(figures.get("failed", 0))
    result.intake_seconds = finished_at - started_at
    result.intake_rate = accepted / result.intake_seconds if result.intake_seconds > 0 else 0.0
    result.latency_ms = dict(figures.get("latency_ms") or {})
    target.append(accepted)
    try:
        await asyncio.wait_for(watcher, args.deliver_timeout)
    except TimeoutError:
        stop.set()
        result.note = "; ".join(filter(None, [result.note, "deliveries timed out"]))
    if delivered_at:
        result.e2e_seconds = delivered_at[0] - started_at
        result.e2e_rate = accepted / result.e2e_seconds if result.e2e_seconds > 0 else 0.0
    return result


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def format_table(results: list[RunResult], clients: list[str], workers: list[int]) -> str:
    """One block per client and posthouse worker count: sessions by rates and ratios."""
    index = {(r.server, r.client, r.sessions): r for r in results}
    sessions = sorted({r.sessions for r in results})
    blocks: list[str] = []
    for client in clients:
        for count in workers:
            name = f"posthouse-w{count}"
            head = (
                f"client {client}, posthouse workers={count}   (msg/s; ratio = posthouse/postfix)\n"
                f"{'sessions':>8} | {'intake ph':>9} {'postfix':>8} {'ratio':>6} | "
                f"{'e2e ph':>8} {'postfix':>8} {'ratio':>6} | notes"
            )
            rows = [head, "-" * len(head.splitlines()[1])]
            for s in sessions:
                ph = index.get((name, client, s))
                pf = index.get(("postfix", client, s))
                if ph is None and pf is None:
                    continue
                phi = ph.intake_rate if ph else 0.0
                pfi = pf.intake_rate if pf else 0.0
                phe = ph.e2e_rate if ph else 0.0
                pfe = pf.e2e_rate if pf else 0.0
                notes = "; ".join(
                    f"{r.server}: {r.note}" for r in (ph, pf) if r is not None and r.note
                )
                rows.append(
                    f"{s:>8} | {phi:>9.1f} {pfi:>8.1f} {ratio(phi, pfi):>6} | "
                    f"{phe:>8.1f} {pfe:>8.1f} {ratio(phe, pfe):>6} | {notes}"
                )
            blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def parse_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=parse_list, default=[1, 20, 100], help="e.g. 1,20,100")
    parser.add_argument("--workers", type=parse_list, default=[1, 2], help="posthouse workers")
    parser.add_argument("--messages", type=int, default=2000, help="messages per run")
    parser.add_argument("--size", type=int, default=5000, help="body bytes per message")
    parser.add_argument("--per-connection", type=int, default=1, metavar="N")
    parser.add_argument("--spread", action="store_true", help="message N to Nbench@local.test")
    parser.add_argument("--smtp-source", action="store_true", help="also load with smtp-source")
    parser.add_argument(
        "--no-smtp-load", action="store_true", help="do not use smtp_load.py (smtp-source only)"
    )
    parser.add_argument(
        "--postfix-delivery",
        choices=["local", "as-installed"],
        default="local",
        help="local: blank mailbox_command so local(8) writes the mbox (default)",
    )
    parser.add_argument("--skip-postfix", action="store_true")
    parser.add_argument("--skip-posthouse", action="store_true")
    parser.add_argument("--keep-postfix", action="store_true", help="leave Postfix running")
    parser.add_argument("--run-timeout", type=float, default=300.0, help="seconds per load")
    parser.add_argument("--deliver-timeout", type=float, default=300.0)
    parser.add_argument("--timeout", type=float, default=3000.0, help="seconds in all")
    parser.add_argument("--json", metavar="FILE", help="write all results as JSON")
    parser.add_argument("--keep-data", action="store_true", help="keep posthouse's temp dirs")
    return parser.parse_args(argv)


@contextlib.contextmanager
def servers(args: argparse.Namespace, root: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        if not args.skip_postfix:
            started.append(Postfix(args.postfix_delivery))
        if not args.skip_posthouse:
            for count in args.workers:
                directory = root / f"w{count}"
                directory.mkdir()
                aliases = max(10, args.messages + 10)
                started.append(Posthouse(count, directory, aliases))
        yield started
    finally:
        for server in started:
            if isinstance(server, Postfix) and args.keep_postfix:
                server.restore()
                continue
            server.stop()


async def benchmark(args: argparse.Namespace, started: list[Server]) -> list[RunResult]:
    clients = ([] if args.no_smtp_load else ["smtp_load"]) + (
        ["smtp-source"] if args.smtp_source and shutil.which("smtp-source") else []
    )
    deadline = time.monotonic() + args.timeout
    results: list[RunResult] = []
    for client in clients:
        for sessions in args.sessions:
            for server in started:
                if time.monotonic() >= deadline:
                    print(f"skipped {server.name} {client} {sessions}: overall timeout")
                    continue
                result = await one_run(args, server, client, sessions)
                results.append(result)
                print(
                    f"{server.name:>13} {client:>11} sessions={sessions:<4} "
                    f"accepted={result.accepted} intake={result.intake_rate:.1f}/s "
                    f"e2e={result.e2e_rate:.1f}/s delivered={result.delivered} "
                    f"p50={result.latency_ms.get('p50', 0):.1f}ms "
                    f"p99={result.latency_ms.get('p99', 0):.1f}ms {result.note}",
                    flush=True,
                )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0 and not args.skip_postfix:
        print("smtp_vs_postfix: Postfix's setup needs root (or use --skip-postfix)")
        return 2
    root = Path(tempfile.mkdtemp(prefix="phbench-"))
    try:
        with servers(args, root) as started:
            print(
                "servers: "
                + ", ".join(f"{s.name} on {s.host}:{s.port} pids {s.pids()[:3]}" for s in started),
                flush=True,
            )
            results = asyncio.run(benchmark(args, started))
    finally:
        if not args.keep_data:
            shutil.rmtree(root, ignore_errors=True)
    clients = sorted({r.client for r in results}, reverse=True)
    workers = [] if args.skip_posthouse else args.workers
    print()
    print(
        f"{args.messages} messages of {args.size} bytes per run, "
        f"{args.per_connection} per connection, "
        f"to {'Nbench (5 mboxes)' if args.spread else 'bench (1 mbox)'}, "
        f"postfix delivery: {args.postfix_delivery}"
    )
    print(format_table(results, clients, workers or [0]))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "results": [asdict(r) for r in results]}, indent=1),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
