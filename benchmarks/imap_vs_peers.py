#!/usr/bin/env python3
"""IMAP side by side: Dovecot (default and high-performance login), Cyrus IMAP 3.6, posthouse.

The same users and mail on every server: ``--clients`` users (the largest client count
asked for) ``user1..userN`` with password ``pass`` and ``--messages`` messages each (default
100 of ``--size`` = 5,000 body bytes), then ``imap_load.py``'s imaptest-style session mix
(login, select, fetch of flags, headers and bodies, store flags, append, expunge, logout) for
``--duration`` seconds at each client count (default 10 and 50).  The servers:

* ``dovecot``: ``../shared/peers/dovecot.sh`` in maildir format (the format Dovecot is
  fastest with for this mix; its mbox rewrites the file on every expunge), as configured;
* ``dovecot-hp``: the same plus Dovecot's documented high-performance login mode
  (``service imap-login { service_count = 0; process_min_avail = 2 }``), the target;
* ``cyrus``: ``../shared/peers/cyrus.sh`` (the chapter's own server), mail delivered over
  its LMTP listener;
* ``posthouse-wN`` (``posthouse``; ``posthouse-uvloop``: with ``event_loop = "uvloop"``):
  posthouse with N worker processes (``--workers``, default 2), users of
  service type IMAP, mail put into the store in bulk through the store's service, with the
  caches the IMAP server's APPEND would compute.

The same password scheme everywhere: argon2id (Dovecot's users file gets ``{ARGON2ID}``
hashes from ``doveadm pw``), with each server's cache of verified logins (posthouse's
verified-login cache, Dovecot's ``auth_cache_size``, both 300 s), and every user logs in
once before the timed runs so that both caches hold them.  Dovecot's auth cache keeps the
hash, not the verification, so each Dovecot login still runs argon2;
``--dovecot-passwords plain`` gives Dovecot plain-text passwords instead (no hashing at
all: the comparison of the protocol work alone).  Cyrus keeps its own password
set-up.  The runs are interleaved: at each client count every server runs before the next,
and ``--rounds`` repeats the whole sequence, so that a shared machine's load falls on all.

Then the big mailbox: user ``user{N+1}`` gets ``--big`` messages (default 100,000; Dovecot
only unless ``--big-servers`` names others, as delivering 100,000 messages over Cyrus's LMTP
takes long) and the script times, on one connection after login, ``SELECT INBOX``,
``FETCH 1:* (UID FLAGS)`` and ``UID SEARCH HEADER Subject <a word of one message>``, twice
(cold after the server's start, then warm).

Everything listens on 127.0.0.1, every wait is bounded, the servers are stopped at the end.
Needs root (the peers' scripts install packages and chown their mail).  Example::

    .venv/bin/python benchmarks/imap_vs_peers.py --clients 10,50 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from imap_load import IMAPClient, LoadResult, message, run_load, user_names  # noqa: E402
from smtp_vs_postfix import bench_config, posthouse_command  # noqa: E402

# The peers sit beside the repository: ../shared/peers/ from its root.
PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"
PASSWORD = "pass"
AUTH_CACHE = """
auth_cache_size = 10M
auth_cache_ttl = 300 s
auth_cache_negative_ttl = 0
"""
HIGH_PERFORMANCE_LOGIN = """
service imap-login {
  service_count = 0
  process_min_avail = 2
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_pid_file(pid_file: Path, timeout: float = 20.0) -> None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 15)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.05)
        os.kill(pid, 9)


class Server(Protocol):
    name: str
    port: int

    def start(self, users: Sequence[str], messages: int, size: int) -> None: ...
    def add_big_mailbox(self, user: str, count: int, size: int) -> None: ...
    def stop(self) -> None: ...


class Dovecot:
    """Dovecot with maildir, optionally in its high-performance login mode."""

    def __init__(self, root: Path, high_performance: bool, passwords: str = "argon2id") -> None:
        self.name = "dovecot-hp" if high_performance else "dovecot"
        self.dir = root / self.name
        self.high_performance = high_performance
        self.passwords = passwords
        self.port = free_port()

    def _maildir(self, user: str) -> Path:
        return self.dir / "mail" / user / "Maildir"

    def _write(self, user: str, count: int, size: int) -> None:
        maildir = self._maildir(user)
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        stamp = int(time.time())
        for n in range(1, count + 1):
            (maildir / "cur" / f"{stamp}.M{n}P1.bench:2,").write_bytes(message(user, n, size))

    def start(self, users: Sequence[str], messages: int, size: int) -> None:
        subprocess.run(
            ["bash", str(PEERS / "dovecot.sh"), str(self.dir), str(self.port), "0",
             str(len(users) + 1), "maildir"],
            check=True, stdout=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        stop_pid_file(self.dir / "run" / "master.pid")
        for user in users:
            self._write(user, messages, size)
        if self.passwords == "argon2id":
            self._argon2id_passwords()
        if self.high_performance:
            with (self.dir / "dovecot.conf").open("a") as conf:
                conf.write(HIGH_PERFORMANCE_LOGIN)
        self._start()

    def _argon2id_passwords(self) -> None:
        """The users' passwords as argon2id hashes, posthouse's scheme, with Dovecot's
        auth cache for the verified ones (posthouse's verified-login cache: 300 s)."""
        hashed = subprocess.run(
            ["doveadm", "pw", "-s", "ARGON2ID", "-p", PASSWORD],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        users = self.dir / "users"
        lines = users.read_text().splitlines()
        users.write_text(
            "".join(line.replace("{PLAIN}" + PASSWORD, hashed, 1) + "\n" for line in lines)
        )
        with (self.dir / "dovecot.conf").open("a") as conf:
            conf.write(AUTH_CACHE)

    def _start(self) -> None:
        subprocess.run(["chown", "-R", "mail:mail", str(self.dir / "mail")], check=True)
        subprocess.run(["/usr/sbin/dovecot", "-c", str(self.dir / "dovecot.conf")], check=True)
        wait_for_port(self.port)

    def add_big_mailbox(self, user: str, count: int, size: int) -> None:
        stop_pid_file(self.dir / "run" / "master.pid")
        self._write(user, count, size)
        self._start()

    def stop(self) -> None:
        stop_pid_file(self.dir / "run" / "master.pid")


class Cyrus:
    """Cyrus IMAP 3.6 from ../shared/peers/cyrus.sh; mail delivered over LMTP."""

    def __init__(self, root: Path) -> None:
        self.name = "cyrus"
        self.dir = root / "cyrus"
        self.port = free_port()
        self.lmtp = free_port()

    def start(self, users: Sequence[str], messages: int, size: int) -> None:
        subprocess.run(
            ["bash", str(PEERS / "cyrus.sh"), str(self.dir), str(self.port), str(free_port()),
             str(len(users) + 1), str(self.lmtp)],
            check=True, stdout=subprocess.DEVNULL, timeout=600,
        )  # fmt: skip
        wait_for_port(self.port)
        wait_for_port(self.lmtp)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda u: self._deliver(u, range(1, messages + 1), size), users))

    def _deliver(self, user: str, numbers: Iterable[int], size: int) -> None:
        lmtp = smtplib.LMTP("127.0.0.1", self.lmtp, timeout=60)
        try:
            for n in numbers:
                lmtp.sendmail("sender@local.test", [user], message(user, n, size))
        finally:
            lmtp.quit()

    def add_big_mailbox(self, user: str, count: int, size: int) -> None:
        chunks = [
            range(start, min(count, start + 9999) + 1) for start in range(1, count + 1, 10000)
        ]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda numbers: self._deliver(user, numbers, size), chunks))

    def stop(self) -> None:
        stop_pid_file(self.dir / "run" / "master.pid")


class Posthouse:
    """posthouse's IMAP server with ``workers`` processes on a fresh data directory."""

    def __init__(self, root: Path, workers: int, event_loop: str = "asyncio") -> None:
        self.name = f"posthouse-w{workers}" + ("" if event_loop == "asyncio" else f"-{event_loop}")
        self.dir = root / self.name
        self.dir.mkdir(parents=True)
        self.workers = workers
        self.port = free_port()
        self.config = self.dir / "posthouse.toml"
        self.config.write_text(
            bench_config(
                self.dir / "data", workers, self.dir / "posthouse.log", protocol="imap",
                port=self.port,
            ),
            encoding="utf-8",
        )  # fmt: skip
        if event_loop != "asyncio":
            text = self.config.read_text(encoding="utf-8")
            loop = f'[server]\nevent_loop = "{event_loop}"\n'
            self.config.write_text(text.replace("[server]\n", loop, 1), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def _fill(self, users: Sequence[str], count: int, size: int, first: int = 1) -> None:
        from posthouse.admin.mailstore import ensure_inbox, run_with_store
        from posthouse.auth.users import ServiceType, UserDatabase
        from posthouse.config.load import load_settings
        from posthouse.server.imap.views import prepared
        from posthouse.store.service import MailStore

        settings = load_settings(self.config)
        settings.paths.users_db.parent.mkdir(parents=True, exist_ok=True)
        with UserDatabase(settings.paths.users_db) as db, ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda u: db.add(u, PASSWORD, ServiceType.IMAP), users))
        now = __import__("datetime").datetime.now().astimezone()

        async def fill(store: MailStore) -> None:
            for user in users:
                for start in range(first, first + count, 1000):
                    batch = range(start, min(first + count, start + 1000))
                    await store.deliver(
                        user, [prepared(message(user, n, size), now, frozenset()) for n in batch]
                    )

        for user in users:
            ensure_inbox(settings, user)
        run_with_store(settings, fill)

    def start(self, users: Sequence[str], messages: int, size: int) -> None:
        self._fill(users, messages, size)
        self._start()

    def _start(self) -> None:
        self.process = subprocess.Popen(
            [*posthouse_command(), "--config", str(self.config), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port)
        time.sleep(1.0 if self.workers > 1 else 0.2)  # the workers fork after the bind

    def add_big_mailbox(self, user: str, count: int, size: int) -> None:
        self.stop()
        self._fill([user], count, size)
        self._start()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=30)


async def big_mailbox_times(
    server: Server, user: str, word: str, timeout: float
) -> dict[str, float]:
    """Seconds for SELECT, FETCH 1:* (UID FLAGS) and UID SEARCH HEADER Subject WORD.

    The responses are read in large chunks up to the tagged completion, not line by line:
    parsing 100,000 FETCH lines in Python would cost the client more than the servers."""
    client = await IMAPClient.connect("127.0.0.1", server.port, timeout)
    times: dict[str, float] = {}
    try:
        await client.command(f'LOGIN {user} "{PASSWORD}"')
        for number, (name, text) in enumerate(
            (
                ("select", "SELECT INBOX"),
                ("fetch-uid-flags", "FETCH 1:* (UID FLAGS)"),
                ("uid-search-header", f"UID SEARCH HEADER Subject {word}"),
            )
        ):
            started = time.perf_counter()
            await bulk_command(client, f"big{number}", text)
            times[name] = round(time.perf_counter() - started, 3)
        await client.command("LOGOUT")
    finally:
        await client.close()
    return times


async def bulk_command(client: IMAPClient, tag: str, text: str) -> None:
    """Send ``text`` and read until its tagged OK (the untagged responses are not kept)."""
    client.writer.write(f"{tag} {text}\r\n".encode())
    await client.writer.drain()
    ending = f"\r\n{tag} ".encode()
    tail = b"\r\n"
    while True:
        chunk = await asyncio.wait_for(client.reader.read(1 << 20), client.timeout)
        if not chunk:
            raise RuntimeError(f"{text}: connection closed")
        tail = (tail + chunk)[-4096:]  # the tagged line is shorter than this
        at = tail.rfind(ending)
        if at >= 0 and tail.endswith(b"\r\n"):
            status = tail[at + len(ending) : at + len(ending) + 2]
            if status != b"OK":
                raise RuntimeError(f"{text}: {tail[at:]!r}")
            return


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def table(results: dict[str, dict[int, list[LoadResult]]], reference: str) -> str:
    """One line per server, client count and round; the ratio is against the reference
    server's run of the same round."""
    lines = [
        f"{'server':<12} {'clients':>7} {'round':>5} {'sessions/s':>10} {'ops/s':>9}"
        f" {'failed':>6} {'vs ' + reference:>14}"
    ]
    for name, by_clients in results.items():
        for clients, runs in sorted(by_clients.items()):
            refs = results.get(reference, {}).get(clients, [])
            for n, r in enumerate(runs):
                ref = refs[n] if n < len(refs) else None
                against = ratio(r.operations_per_second, ref.operations_per_second) if ref else "-"
                lines.append(
                    f"{name:<12} {clients:>7} {n + 1:>5} {r.sessions_per_second:>10}"
                    f" {r.operations_per_second:>9} {r.failures:>6} {against:>14}"
                )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default="dovecot,dovecot-hp,cyrus,posthouse")
    p.add_argument("--workers", type=int, default=2, help="posthouse's worker processes")
    p.add_argument("--clients", default="10,50", help="client counts, comma-separated")
    p.add_argument("--messages", type=int, default=100, help="messages per user")
    p.add_argument("--size", type=int, default=5000, help="body bytes per message")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per run")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="interleaved rounds of every run; 0: no session runs (the big mailbox only)",
    )
    p.add_argument(
        "--dovecot-passwords",
        choices=("argon2id", "plain"),
        default="argon2id",
        help="Dovecot's scheme: argon2id as posthouse's (default), or plain text",
    )
    p.add_argument("--big", type=int, default=100_000, help="messages in the big mailbox; 0: none")
    p.add_argument("--big-servers", default="dovecot-hp", help="servers that get the big mailbox")
    p.add_argument("--io-timeout", type=float, default=60.0)
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


def make_server(name: str, root: Path, workers: int, dovecot_passwords: str) -> Server:
    if name == "dovecot":
        return Dovecot(root, high_performance=False, passwords=dovecot_passwords)
    if name == "dovecot-hp":
        return Dovecot(root, high_performance=True, passwords=dovecot_passwords)
    if name == "cyrus":
        return Cyrus(root)
    if name == "posthouse":
        return Posthouse(root, workers)
    if name == "posthouse-uvloop":
        return Posthouse(root, workers, "uvloop")
    raise SystemExit(
        f"unknown server {name!r} (dovecot, dovecot-hp, cyrus, posthouse, posthouse-uvloop)"
    )


async def warm_up(port: int, users: Sequence[str], timeout: float) -> None:
    """One login per user, so every server's login cache (posthouse's verified-login
    cache, Dovecot's auth cache) holds them before the timed runs, as with mail clients
    that log in every few minutes."""
    for user in users:
        client = await IMAPClient.connect("127.0.0.1", port, timeout)
        try:
            await client.command(f'LOGIN {user} "{PASSWORD}"')
            await client.command("LOGOUT")
        finally:
            await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    counts = sorted(int(c) for c in args.clients.split(","))
    users = user_names("user{}", counts[-1], 1)
    big_user = f"user{counts[-1] + 1}"
    root = Path(tempfile.mkdtemp(prefix="imapbench-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    results: dict[str, dict[int, list[LoadResult]]] = {}
    big: dict[str, list[dict[str, float]]] = {}
    servers: list[Server] = []
    try:
        for name in args.servers.split(","):
            server = make_server(name, root, args.workers, args.dovecot_passwords)
            servers.append(server)
            server.start(users, args.messages, args.size)
            asyncio.run(warm_up(server.port, users, args.io_timeout))
        # Interleaved: every server's run at a client count before the next round, so that
        # the load of a shared machine falls on all of them alike.
        for round_ in range(args.rounds):
            for clients in counts:
                for server in servers:
                    load = argparse.Namespace(
                        host="127.0.0.1", port=server.port, password=PASSWORD, size=args.size,
                        duration=args.duration, io_timeout=args.io_timeout,
                    )  # fmt: skip
                    result = asyncio.run(run_load(load, users[:clients]))
                    results.setdefault(server.name, {}).setdefault(clients, []).append(result)
                    print(
                        f"round {round_ + 1} {server.name} {clients} clients:"
                        f" {json.dumps(result.__dict__)}",
                        flush=True,
                    )
        word = str(args.big // 2)  # the number in one subject
        with_big = [s for s in servers if s.name.split("-w")[0] in args.big_servers.split(",")]
        for server in with_big if args.big else []:
            server.add_big_mailbox(big_user, args.big, 500)
        for _ in range(2 if args.big else 0):  # cold (after the restart), then warm; interleaved
            for server in with_big:
                times = asyncio.run(big_mailbox_times(server, big_user, word, args.io_timeout * 10))
                big.setdefault(server.name, []).append(times)
                print(f"{server.name} big mailbox ({args.big}): {times}", flush=True)
        if results:  # none with --rounds 0
            reference = "dovecot-hp" if "dovecot-hp" in results else next(iter(results))
            print()
            print(table(results, reference))
        for name, runs in big.items():
            print(f"{name} {args.big}-message mailbox, seconds (cold, warm): {runs}")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "load": {
                            n: {c: [r.__dict__ for r in rs] for c, rs in v.items()}
                            for n, v in results.items()
                        },
                        "big": big,
                    },
                    indent=2,
                )
            )
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
