"""``posthouse imapquota -f`` against Cyrus's ``quota -f`` on the same data (a benchmark,
not a test).

Both stores get ``--users`` users (default 1,000), each with an INBOX holding ``--messages``
messages of about ``--size`` octets and a quota root on the INBOX; then each tool recomputes
every root's usage from the mailboxes' indexes, ``--runs`` times, and the median times are
compared (the target: posthouse within 2x of Cyrus).  Both are timed as the command an
administrator types, process start included; the page cache is warm for both.

* Cyrus 3.6: ``../shared/peers/cyrus.sh`` (users and INBOXes made by the script, mail over
  LMTP, quotas set with cyradm ``sq``), timed ``cyrus quota -C DIR/imapd.conf -f``.
* posthouse: the INBOXes made and filled through the store service, quota roots set with
  ``set_quota``, timed ``python -m posthouse imapquota -f`` from this tree.

Usage (as root, for the Cyrus peer):
``python benchmarks/imapquota_vs_cyrus.py [--users 1000] [--messages 10] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imap_vs_peers import Cyrus

REPO = Path(__file__).resolve().parents[1]
LIMIT_KB = 100_000


def timed(command: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=3600, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")
    return elapsed, done.stdout


def cyrus_setup(root: Path, users: list[str], messages: int, size: int) -> Cyrus:
    cyrus = Cyrus(root)
    cyrus.start(users, messages, size)
    commands = "".join(f"sq {user_inbox(u)} STORAGE {LIMIT_KB}\n" for u in users)
    subprocess.run(
        ["cyradm", "--norc", "--user", "cyrus", "-w", "pass", "--port", str(cyrus.port),
         "127.0.0.1"],
        input=commands, capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    return cyrus


def user_inbox(user: str) -> str:
    return f"user.{user}"


def posthouse_setup(root: Path, users: list[str], messages: int, size: int) -> Path:
    from imap_load import message

    from posthouse.admin.mailstore import run_with_store
    from posthouse.config.load import load_settings
    from posthouse.server.imap.views import prepared
    from posthouse.store.backend import NewMailbox
    from posthouse.store.service import MailStore

    root.mkdir(parents=True, exist_ok=True)
    config = root / "posthouse.toml"
    config.write_text(f'[server]\ndata_dir = "{root / "data"}"\nrun_as = ""\n', encoding="utf-8")
    settings = load_settings(config)
    now = __import__("datetime").datetime.now().astimezone()

    async def fill(store: MailStore) -> None:
        async def one(user: str) -> None:
            inbox = user_inbox(user)
            await store.backend.create_mailbox(
                NewMailbox(inbox, store.default_partition, f"{user}\tlrswipkxtea\t")
            )
            await store.backend.set_quota(inbox, LIMIT_KB)
            batch = [prepared(message(user, n, size), now, frozenset()) for n in range(messages)]
            await store.deliver(user, batch)

        for start in range(0, len(users), 16):
            await asyncio.gather(*(one(u) for u in users[start : start + 16]))

    run_with_store(settings, fill)
    return config


def median_time(command: Sequence[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = [timed(command, env)[0] for _ in range(runs)]
    return statistics.median(times)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--messages", type=int, default=10, help="messages per INBOX")
    p.add_argument("--size", type=int, default=2000, help="octets of body per message")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", type=Path, help="work directory (default: a fresh one in /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="quota-bench-", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    users = [f"user{n}" for n in range(1, args.users + 1)]
    cyrus: Cyrus | None = None
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            made = pool.submit(cyrus_setup, root, users, args.messages, args.size)
            config = posthouse_setup(root / "posthouse", users, args.messages, args.size)
            cyrus = made.result()
        print(f"filled both stores in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        cyrus_command = ["cyrus", "quota", "-C", str(cyrus.dir / "imapd.conf"), "-f"]
        ours = [sys.executable, "-m", "posthouse", "imapquota", "-f", "--config", str(config)]
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        _, report = timed(ours, env)
        roots = sum(1 for line in report.splitlines() if line.rstrip().endswith(tuple(users)))
        _, cyrus_report = timed(cyrus_command)
        cyrus_roots = sum(1 for line in cyrus_report.splitlines() if " STORAGE user." in line)
        cyrus_time = median_time(cyrus_command, args.runs)
        our_time = median_time(ours, args.runs, env)
        startup = median_time([*ours[:4], "--help"], args.runs, env)
        result = {
            "users": args.users,
            "messages_per_user": args.messages,
            "roots": {"posthouse": roots, "cyrus": cyrus_roots},
            "seconds": {"posthouse": round(our_time, 3), "cyrus": round(cyrus_time, 3)},
            "posthouse_startup_seconds": round(startup, 3),  # imapquota --help: imports alone
            "ratio_posthouse_to_cyrus": round(our_time / cyrus_time, 2),
        }
        json.dump(result, sys.stdout, indent=2)
        print()
    finally:
        if cyrus is not None:
            cyrus.stop()
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
