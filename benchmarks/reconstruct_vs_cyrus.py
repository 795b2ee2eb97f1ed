"""``posthouse reconstruct`` against Cyrus's ``reconstruct`` on a 100,000-message mailbox
(a benchmark, not a test; issue 13's target: within 2x of Cyrus).

The same message files (``UID.``, CRLF, about 700 octets each) are written into a fresh
mailbox folder of each store, then each tool is run as a command, three times:

1. *files added*: the index knows none of the 100,000 files (every one appears);
2. *healthy*: run again, nothing to repair (a full check of files against the index);
3. *index lost*: the index is deleted (posthouse ``index.db``; Cyrus ``cyrus.index``) and
   rebuilt from the files.

Cyrus parses every message while it rebuilds (its cache of headers and BODYSTRUCTURE);
posthouse takes what the files give (UID, size, date) and builds its header cache the first
time a client asks, so the work differs in kind; the figures are what an administrator
waits for.

Needs root and the Cyrus peer running: ``../shared/peers/cyrus.sh DIR IMAP_PORT ...``.
Usage: ``.venv/bin/python benchmarks/reconstruct_vs_cyrus.py --cyrus DIR --port IMAP_PORT
[--messages 100000]``
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posthouse.app import mail_store_for
from posthouse.config.load import load_settings

REPO = Path(__file__).resolve().parents[1]


def message(n: int) -> bytes:
    header = (
        f"From: Sender {n % 50} <sender{n % 50}@example.org>\r\n"
        f"To: hansen@example.test\r\nSubject: report number {n}\r\n"
        f"Message-ID: <{n}@example.org>\r\nDate: Sun, 1 Mar 2026 12:00:00 +0000\r\n\r\n"
    ).encode()
    return header + b"".join(b"line %d of the body of message %d\r\n" % (i, n) for i in range(12))


def write_files(folder: Path, count: int, owner: tuple[int, int] | None) -> None:
    for n in range(1, count + 1):
        path = folder / f"{n}."
        path.write_bytes(message(n))
        if owner:
            os.chown(path, *owner)


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return elapsed


def cyrus_run(directory: Path, port: int, count: int) -> list[float]:
    conf = str(directory / "imapd.conf")
    name = f"user.user1.bench{int(time.time())}"
    admin = imaplib.IMAP4("127.0.0.1", port)
    admin.login("cyrus", "pass")
    assert admin.create(name)[0] == "OK"
    assert admin.setacl(name, "cyrus", "lrswipkxtea")[0] == "OK"  # to count them after
    admin.logout()
    mbpath = subprocess.run(
        ["cyrus", "mbpath", "-C", conf, name], capture_output=True, text=True, check=True
    )
    folder = Path(mbpath.stdout.strip())
    stat = folder.stat()
    write_files(folder, count, (stat.st_uid, stat.st_gid))
    command = ["cyrus", "reconstruct", "-C", conf, name]
    times = [timed(command), timed(command)]
    (folder / "cyrus.index").unlink()
    times.append(timed(command))
    check = imaplib.IMAP4("127.0.0.1", port)
    check.login("cyrus", "pass")
    typ, data = check.select(name, readonly=True)
    assert typ == "OK" and int(data[0] or 0) == count, data
    check.logout()
    return times


def posthouse_run(root: Path, count: int) -> list[float]:
    config = root / "posthouse.toml"
    config.write_text(f'[server]\ndata_dir = "{root / "data"}"\n', encoding="utf-8")
    store = mail_store_for(load_settings(config))
    record = asyncio.run(store.create_user("bench"))
    folder = store.backend.layout.mailbox_dir(record.partition, record.id)  # type: ignore[attr-defined]
    asyncio.run(store.backend.close())
    write_files(folder, count, None)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    command = [sys.executable, "-m", "posthouse", "reconstruct", "--config", str(config)]
    command.append("user.bench")
    times = [timed(command, env), timed(command, env)]
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (folder / name).unlink(missing_ok=True)
    times.append(timed(command, env))
    store = mail_store_for(load_settings(config))
    status = asyncio.run(store.session("bench").status("INBOX"))
    assert status.messages == count, status
    asyncio.run(store.backend.close())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cyrus", type=Path, required=True, help="the Cyrus peer's DIR")
    parser.add_argument("--port", type=int, required=True, help="its IMAP port")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, help="where posthouse's store goes (default: tmp)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="reconstruct-bench-", dir=args.dir))
    try:
        ours = posthouse_run(root, args.messages)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    theirs = cyrus_run(args.cyrus, args.port, args.messages)
    print(f"reconstruct of a {args.messages:,}-message mailbox (seconds)")
    print(f"{'case':<14}{'posthouse':>11}{'Cyrus 3.6':>11}{'ratio':>8}")
    for case, mine, cyrus in zip(
        ("files added", "healthy", "index lost"), ours, theirs, strict=True
    ):
        print(f"{case:<14}{mine:>11.2f}{cyrus:>11.2f}{mine / cyrus:>8.2f}")


if __name__ == "__main__":
    main()
