#!/usr/bin/env python3
"""posthouse's POP3 server side by side with Dovecot's, on this machine, in the same run.

The same mail -- ``--users`` users (default 20) with ``--messages`` messages of
``--size`` bytes each (default 1,000 of 5,000 body bytes) -- is written
directly as mbox files (``From sender@x Thu Nov 26 00:00:00 2026`` separator,
headers with a unique ``Message-ID``, a body of 78-character lines, an empty
line): for Dovecot (started by ``../shared/peers/dovecot.sh``, mbox format)
under ``DIR/mail/userN/inbox`` owned by ``mail:mail``, for posthouse under
``DATA/spool/mail/userN``.  Then, with ``pop3_load.py``'s client (run in this
process), every user downloads their whole maildrop at once (USER/PASS, STAT,
UIDL, pipelined RETRs, QUIT, never DELE):

* one cold run per server (posthouse's first session per user builds its
  index; Dovecot builds its own index files), reported separately;
* ``--runs`` measured runs (default 3), interleaved Dovecot, posthouse, ...,
  so that drift in the machine's speed hits both alike.

Reported per run: msg/s and MB/s over the whole run (first connect to last
QUIT, logins included) and over the transfer alone (first RETR sent to last
RETR answered), and the server's CPU seconds (user+system, the whole process
tree, exited children included).  The table gives the medians and the ratio
posthouse/Dovecot.  Note the logins: posthouse verifies argon2id hashes
(~0.1 s of CPU each), Dovecot's peer users have ``{PLAIN}`` passwords.

Memory: posthouse's ``VmRSS``/``Pss`` (server process and workers) before, with,
and after ``--memory-sessions`` (default 200) sessions logged in (USER/PASS/STAT)
to as many different users with ``--memory-messages`` (default 10) small
messages each, and the same with the ``--users`` big maildrops; Dovecot's
process tree with the ``--users`` big maildrops logged in (one ``pop3``
process per session).

``--profile SECONDS`` then runs py-spy on posthouse while downloads repeat
(``py-spy record --format raw``) and prints the hottest lines of posthouse's
own code: each sample goes to its innermost frame under ``src/posthouse``
(what that line costs, callees in the standard library included) and, apart,
to its innermost frame of all (self time).

Everything listens on 127.0.0.1, every run is bounded (``--run-timeout``,
``--io-timeout``), and both servers are stopped at the end.  Needs root
(Dovecot's script installs and starts Dovecot and chowns its mail).

Example::

    .venv/bin/python benchmarks/pop3_vs_dovecot.py --profile 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from pop3_load import LoadResult, POP3Client, hold_session, run_load  # noqa: E402
from smtp_vs_postfix import bench_config, children_of, posthouse_command, ratio  # noqa: E402

# The peers sit beside the repository: ../shared/peers/ from its root.
DOVECOT_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "dovecot.sh"
PASSWORD = "pass"
FROM_LINE = b"From sender@x Thu Nov 26 00:00:00 2026\n"

# ----------------------------------------------------------------------------- mail


def message(user: str, number: int, size: int) -> bytes:
    """One mbox entry: From_ line, headers, ``size`` body bytes in 78-char lines, empty line."""
    headers = (
        f"Return-Path: <sender@x>\n"
        f"From: Sender <sender@x>\n"
        f"To: {user}@local.test\n"
        f"Subject: pop3 benchmark {user} {number}\n"
        f"Date: Thu, 26 Nov 2026 00:00:00 +0000\n"
        f"Message-ID: <{user}.{number}.pop3bench@local.test>\n"
        f"MIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset=us-ascii\n"
        f"\n"
    ).encode()
    line = (f"{user} message {number} " * 8).encode()[:77] + b"\n"
    body = line * (size // 78)
    body += (b"z" * (size - len(body) - 1) + b"\n") if size - len(body) > 1 else b""
    return FROM_LINE + headers + body + b"\n"


def mbox(user: str, count: int, size: int) -> bytes:
    return b"".join(message(user, n, size) for n in range(1, count + 1))


def write_mail(paths: Sequence[Path], data: bytes) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and Pss in KiB, and CPU ticks (own + waited-for children)."""
    out = {"rss": 0, "pss": 0, "ticks": 0, "cticks": 0}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss"] = int(line.split()[1])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["ticks"] = int(fields[11]) + int(fields[12])  # utime stime
        out["cticks"] = int(fields[13]) + int(fields[14])  # cutime cstime
    return out


def tree_figures(root: int) -> dict[str, Any]:
    """RSS/PSS (KiB) summed over a process tree, its process count, and its CPU seconds."""
    pids = [root, *children_of(root)]
    stats = [proc_status(pid) for pid in pids]
    ticks = sum(s["ticks"] for s in stats) + stats[0]["cticks"]
    hz = os.sysconf("SC_CLK_TCK")
    names = collections.Counter()
    for pid in pids:
        with contextlib.suppress(OSError):
            names[Path(f"/proc/{pid}/comm").read_text().strip()] += 1
    return {
        "rss_kib": sum(s["rss"] for s in stats),
        "pss_kib": sum(s["pss"] for s in stats),
        "processes": len(pids),
        "names": dict(names),
        "cpu_s": ticks / hz,
    }


class Dovecot:
    name = "dovecot"

    def __init__(self, root: Path, users: int, mail: dict[str, bytes]) -> None:
        self.root = root
        self.host = "127.0.0.1"
        self.port = free_port()
        for user, data in mail.items():
            write_mail([root / "mail" / user / "inbox"], data)
        # dovecot.sh creates the users and chowns DIR/mail to mail:mail.
        # Dovecot daemonises with the script's stdout: send that to a file, not a pipe.
        out_file = root / "dovecot.sh.out"
        with open(out_file, "wb") as out:
            subprocess.run(
                [
                    "bash",
                    str(DOVECOT_SCRIPT),
                    str(root),
                    str(free_port()),
                    str(self.port),
                    str(users),
                ],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=600,
            )
        self.pid = int(out_file.read_text().strip().splitlines()[-1])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1):
                break
            time.sleep(0.1)

    def pids(self) -> list[int]:
        return [self.pid, *children_of(self.pid)]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and Path(f"/proc/{self.pid}").exists():
            time.sleep(0.1)


class Posthouse:
    def __init__(self, root: Path, workers: int, mail: dict[str, bytes]) -> None:
        self.name = f"posthouse-w{workers}"
        self.host = "127.0.0.1"
        self.root = root
        self.workers = workers
        self.data = root / "data"
        self.config = root / "posthouse.toml"
        self.log = root / "posthouse.log"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            bench_config(self.data, workers, self.log, protocol="pop3"),
            encoding="utf-8",
        )
        self.base = [*posthouse_command(), "--config", str(self.config)]
        for user in mail:  # the documented way; the memory users are added in bulk below
            subprocess.run(
                [*self.base, "user", "add", user, "--password", PASSWORD],
                check=True,
                capture_output=True,
                timeout=60,
            )
        spool = self.data / "spool" / "mail"
        for user, data in mail.items():
            write_mail([spool / user], data)
        self.process: subprocess.Popen[str] | None = None

    def add_users(self, users: Sequence[str], messages: int, size: int) -> None:
        """Many users at once, in this process (argon2id hashing in two threads)."""
        from posthouse.auth.users import UserDatabase
        from posthouse.config.load import load_settings

        db_path = load_settings(self.config).paths.users_db
        spool = self.data / "spool" / "mail"
        with UserDatabase(db_path) as db, ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda user: db.add(user, PASSWORD), users))
        for user in users:
            write_mail([spool / user], mbox(user, messages, size))

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*self.base, "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        marker = "posthouse: listening pop3 on "
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith(marker):
                self.port = int(line[len(marker) :].strip().rsplit(":", 1)[1])
                self.process.stdout.close()
                time.sleep(0.3 if self.workers <= 1 else 1.0)  # workers fork after printing
                return
        self.stop()
        raise RuntimeError(f"posthouse did not start; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def serving_pids(self) -> list[int]:
        """The processes that serve sessions: the workers, or the server itself."""
        return children_of(self.pid) or [self.pid]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


# ----------------------------------------------------------------------------- runs


@dataclass
class Run:
    server: str
    kind: str  # cold | measured
    msgs_per_s: float
    mb_per_s: float
    transfer_msgs_per_s: float
    transfer_mb_per_s: float
    messages: int
    octets: int
    seconds: float
    server_cpu_s: float
    login_max_s: float
    errors: dict[str, int] = field(default_factory=dict)


async def one_run(args: argparse.Namespace, server: Any, kind: str) -> Run:
    users = [f"user{n}" for n in range(1, args.users + 1)]
    cpu_before = tree_figures(server.pid)["cpu_s"]
    load: LoadResult = await run_load(
        server.host, server.port, users, PASSWORD, args.batch, args.io_timeout, args.run_timeout
    )
    await asyncio.sleep(0.2)  # let the sessions' processes exit (Dovecot) before counting CPU
    cpu = tree_figures(server.pid)["cpu_s"] - cpu_before
    expected = args.users * args.messages
    errors = dict(load.errors)
    if load.messages != expected:
        errors[f"retrieved {load.messages} of {expected}"] = 1
    run = Run(
        server.name,
        kind,
        load.msgs_per_s,
        load.mb_per_s,
        load.transfer_msgs_per_s,
        load.transfer_mb_per_s,
        load.messages,
        load.octets,
        load.total_seconds,
        cpu,
        load.login_seconds_max,
        errors,
    )
    print(
        f"{server.name:>13} {kind:>8}: {run.msgs_per_s:8.0f} msg/s {run.mb_per_s:6.1f} MB/s "
        f"| transfer {run.transfer_msgs_per_s:8.0f} msg/s {run.transfer_mb_per_s:6.1f} MB/s "
        f"| {run.messages} msgs {run.seconds:.2f} s, server CPU {run.server_cpu_s:.2f} s, "
        f"slowest login {run.login_max_s * 1000:.0f} ms {errors or ''}",
        flush=True,
    )
    return run


async def hold(
    server: Any, users: Sequence[str], io_timeout: float, settle: float, root_pid: int
) -> dict[str, Any]:
    """Memory of the server's tree before, with ``users`` logged in, and after they quit."""
    await asyncio.sleep(settle)
    before = tree_figures(root_pid)
    clients: list[POP3Client] = []
    failed = 0
    # Log in at most 20 at a time (posthouse's argon2 checks queue in its thread pool).
    semaphore = asyncio.Semaphore(20)

    async def one(user: str) -> None:
        nonlocal failed
        async with semaphore:
            try:
                clients.append(
                    await hold_session(server.host, server.port, user, PASSWORD, io_timeout)
                )
            except Exception:
                failed += 1

    try:
        await asyncio.wait_for(asyncio.gather(*(one(u) for u in users)), io_timeout * 4)
        await asyncio.sleep(settle)
        during = tree_figures(root_pid)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.writer.write(b"QUIT\r\n")
                await client.close()
    await asyncio.sleep(settle)
    after = tree_figures(root_pid)
    n = len(clients)
    return {
        "sessions": n,
        "failed": failed,
        "before": before,
        "with": during,
        "after": after,
        "rss_per_session_kib": (during["rss_kib"] - before["rss_kib"]) / n if n else 0.0,
        "pss_per_session_kib": (during["pss_kib"] - before["pss_kib"]) / n if n else 0.0,
    }


def print_memory(label: str, m: dict[str, Any]) -> None:
    b, w, a = m["before"], m["with"], m["after"]
    print(
        f"{label}: {m['sessions']} sessions ({m['failed']} failed): RSS "
        f"{b['rss_kib'] / 1024:.1f} -> {w['rss_kib'] / 1024:.1f} MiB "
        f"(after quit {a['rss_kib'] / 1024:.1f}), PSS {b['pss_kib'] / 1024:.1f} -> "
        f"{w['pss_kib'] / 1024:.1f} MiB; per session RSS {m['rss_per_session_kib']:.1f} KiB, "
        f"PSS {m['pss_per_session_kib']:.1f} KiB; processes {b['processes']} -> "
        f"{w['processes']} {w['names']}",
        flush=True,
    )


# ----------------------------------------------------------------------------- profile

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def hotspots(raw: Path, top: int) -> str:
    """Top posthouse lines (innermost posthouse frame, inclusive) and top self-time frames."""
    inner: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = idle_samples = 0
    for text in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = text.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        parsed = [FRAME.match(f.strip()) for f in frames]
        names = [
            f"{m['func']} ({short(m['file'])}:{m['line']})" if m else f.strip()
            for f, m in zip(frames, parsed, strict=True)
        ]
        if idle(names[-1]):
            idle_samples += count
            continue
        leaf[names[-1]] += count
        for name, match in zip(reversed(names), reversed(parsed), strict=True):
            if match and "posthouse/" in match["file"] and "/benchmarks/" not in match["file"]:
                inner[name] += count
                break
        else:
            inner["(no posthouse frame)"] += count
    busy = total - idle_samples
    if not busy:
        return "no samples"
    lines = [
        f"{total} samples, {idle_samples} idle (threads waiting: select, queue, condition) left "
        f"out; shares of the {busy} busy samples (all threads; argon2 runs in the thread pool)",
        "innermost posthouse frame (inclusive of stdlib callees):",
    ]
    total = busy
    lines += [f"  {c / total:6.1%}  {name}" for name, c in inner.most_common(top)]
    lines.append("innermost frame (self time):")
    lines += [f"  {c / total:6.1%}  {name}" for name, c in leaf.most_common(top)]
    return "\n".join(lines)


IDLE_LEAVES = (
    "EpollSelector.select (",
    "Condition.wait (",
    "_worker (concurrent/futures/thread.py:",
    "Thread._wait_for_tstate_lock (",
)


def idle(leaf: str) -> bool:
    """Leaf frames of threads that are waiting, not working."""
    return leaf.startswith(IDLE_LEAVES)


def short(path: str) -> str:
    for marker in ("/src/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1].lstrip("/")
    return path


async def profile(args: argparse.Namespace, server: Posthouse, out: Path) -> str:
    spy = shutil.which("py-spy") or str(REPO / ".venv" / "bin" / "py-spy")
    if not Path(spy).exists():
        return "py-spy not found (.venv/bin/pip install py-spy)"
    pid = server.serving_pids()[0]
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "-o", str(out)]
    command += ["-d", str(max(1, round(args.profile)))]
    if args.profile_nonblocking:
        command.append("--nonblocking")
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    await asyncio.sleep(0.5)
    deadline = time.monotonic() + args.profile + 60
    runs = 0
    while proc.returncode is None and time.monotonic() < deadline:
        users = [f"user{n}" for n in range(1, args.users + 1)]
        await run_load(server.host, server.port, users, PASSWORD, args.batch, args.io_timeout, 120)
        runs += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.01)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return "py-spy did not finish"
    if not out.exists():
        return f"py-spy failed: {err.decode(errors='replace')[-300:]}"
    return (
        f"(pid {pid}, {runs} download runs during the profile, raw stacks in {out})\n"
        + hotspots(out, args.top)
    )


# ----------------------------------------------------------------------------- main


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def table(runs: list[Run], names: list[str]) -> str:
    dovecot = [r for r in runs if r.server == "dovecot" and r.kind == "measured"]
    head = (
        f"{'server':>13} | {'msg/s':>7} {'MB/s':>6} {'ratio':>6} | {'xfer msg/s':>10} "
        f"{'MB/s':>6} {'ratio':>6} | {'CPU s/1k msg':>12} | {'cold msg/s':>10} {'xfer':>7}"
    )
    rows = [head, "-" * len(head)]
    d_total = median([r.msgs_per_s for r in dovecot])
    d_xfer = median([r.transfer_msgs_per_s for r in dovecot])
    for name in names:
        measured = [r for r in runs if r.server == name and r.kind == "measured"]
        cold = [r for r in runs if r.server == name and r.kind == "cold"]
        total = median([r.msgs_per_s for r in measured])
        xfer = median([r.transfer_msgs_per_s for r in measured])
        cpu = median([r.server_cpu_s * 1000 / r.messages for r in measured if r.messages])
        rows.append(
            f"{name:>13} | {total:>7.0f} {median([r.mb_per_s for r in measured]):>6.1f} "
            f"{ratio(total, d_total):>6} | {xfer:>10.0f} "
            f"{median([r.transfer_mb_per_s for r in measured]):>6.1f} {ratio(xfer, d_xfer):>6} | "
            f"{cpu:>12.3f} | {cold[0].msgs_per_s if cold else 0:>10.0f} "
            f"{cold[0].transfer_msgs_per_s if cold else 0:>7.0f}"
        )
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20, help="users downloading at once")
    parser.add_argument("--messages", type=int, default=1000, help="messages per user")
    parser.add_argument("--size", type=int, default=5000, help="body bytes per message")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per server")
    parser.add_argument("--batch", type=int, default=32, help="RETRs per pipelined write")
    parser.add_argument("--workers", type=int, default=1, help="posthouse worker processes")
    parser.add_argument("--memory-sessions", type=int, default=200, help="0: skip memory")
    parser.add_argument("--memory-messages", type=int, default=10)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before measuring RSS")
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS", help="py-spy")
    parser.add_argument("--profile-nonblocking", action="store_true", help="py-spy --nonblocking")
    parser.add_argument("--top", type=int, default=15, help="hotspots to print")
    parser.add_argument("--skip-dovecot", action="store_true")
    parser.add_argument("--io-timeout", type=float, default=60.0, help="seconds per reply")
    parser.add_argument("--run-timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--json", metavar="FILE", help="write all figures as JSON")
    parser.add_argument("--keep-data", action="store_true", help="keep the temp directory")
    return parser.parse_args(argv)


async def benchmark(args: argparse.Namespace, servers: list[Any], root: Path) -> dict[str, Any]:
    runs: list[Run] = []
    for server in servers:
        runs.append(await one_run(args, server, "cold"))
    for _ in range(args.runs):
        for server in servers:
            runs.append(await one_run(args, server, "measured"))
    names = [s.name for s in servers]
    print()
    print(
        f"{args.users} users x {args.messages} messages of {args.size} body bytes, "
        f"RETR batch {args.batch}; medians of {args.runs} runs; ratio = posthouse/dovecot; "
        f"xfer = first RETR to last RETR (no logins); cold = first run after start"
    )
    print(table(runs, names), flush=True)
    figures: dict[str, Any] = {"runs": [asdict(r) for r in runs], "memory": {}}
    print()
    for server in servers:
        if isinstance(server, Posthouse) and args.memory_sessions:
            users = [f"mem{n}" for n in range(1, args.memory_sessions + 1)]
            m = await hold(server, users, args.io_timeout, args.settle, server.pid)
            print_memory(f"posthouse, {args.memory_messages}-message maildrops", m)
            figures["memory"]["posthouse_small"] = m
        big = [f"user{n}" for n in range(1, args.users + 1)]
        m = await hold(server, big, args.io_timeout, args.settle, server.pid)
        print_memory(f"{server.name}, {args.messages}-message maildrops", m)
        figures["memory"][f"{server.name}_big"] = m
    if args.profile:
        for server in servers:
            if isinstance(server, Posthouse):
                print()
                print("py-spy profile of posthouse during downloads", flush=True)
                text = await profile(args, server, Path(tempfile.gettempdir()) / "pop3_profile.txt")
                print(text)
                figures["profile"] = text
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0 and not args.skip_dovecot:
        print("pop3_vs_dovecot: Dovecot's script needs root (or use --skip-dovecot)")
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # children inherit it
    root = Path(tempfile.mkdtemp(prefix="phpop3-"))
    os.chmod(root, 0o755)  # Dovecot's mail user must reach DIR/mail
    servers: list[Any] = []
    try:
        t = time.monotonic()
        mail = {
            f"user{n}": mbox(f"user{n}", args.messages, args.size) for n in range(1, args.users + 1)
        }
        print(
            f"mail: {len(mail)} mboxes of {len(next(iter(mail.values()))) / 1e6:.1f} MB "
            f"({time.monotonic() - t:.1f} s)",
            flush=True,
        )
        if not args.skip_dovecot:
            servers.append(Dovecot(root / f"dovecot-{root.name}", args.users, mail))
        posthouse = Posthouse(root / "posthouse", args.workers, mail)
        if args.memory_sessions:
            t = time.monotonic()
            posthouse.add_users(
                [f"mem{n}" for n in range(1, args.memory_sessions + 1)],
                args.memory_messages,
                args.size,
            )
            print(f"added {args.memory_sessions} memory users ({time.monotonic() - t:.1f} s)")
        del mail
        posthouse.start()
        servers.append(posthouse)
        print(
            "servers: " + ", ".join(f"{s.name} on 127.0.0.1:{s.port} pid {s.pid}" for s in servers),
            flush=True,
        )
        figures = asyncio.run(benchmark(args, servers, root))
        if args.json:
            figures["args"] = vars(args)
            Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    finally:
        for server in servers:
            server.stop()
        if not args.keep_data:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
