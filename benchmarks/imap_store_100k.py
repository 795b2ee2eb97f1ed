"""IMAP store sanity check on a 100,000-message mailbox (a benchmark, not a test).

Appends 100,000 messages to one INBOX through the mail service (MULTIAPPEND batches of
``--batch``; each message with a cached header section and envelope blob), measures how
many single-message appends per second concurrent sessions get (group commit), then, from a
freshly opened store, times what an IMAP session does on a big mailbox:

* SELECT (the snapshot: counters, every UID, first unseen);
* ``FETCH 1:* (UID FLAGS)`` (metadata of every message), and again after a flag change
  (from the process's copy of the metadata);
* ``UID SEARCH HEADER SUBJECT word`` answered from the cached header blobs, without opening
  a message file.

Usage: ``.venv/bin/python benchmarks/imap_store_100k.py [--messages 100000] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from posthouse.store.backend import FlagChange, FlagMode, NewMessage
from posthouse.store.fs.backend import FsBackend
from posthouse.store.fs.layout import FsLayout
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet

WHEN = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
RARE = "zebra"
SEEN = frozenset({"\\Seen"})


def make(n: int) -> NewMessage:
    word = RARE if n % 100 == 7 else "report"
    header = (
        f"From: Sender {n % 50} <sender{n % 50}@example.org>\r\n"
        f"To: hansen@example.test\r\n"
        f"Subject: {word} number {n}\r\n"
        f"Message-ID: <{n}@example.org>\r\n"
        f"Date: Sun, 1 Mar 2026 12:00:00 +0000\r\n\r\n"
    ).encode()
    body = b"".join(b"line %d of the body of message %d\r\n" % (i, n) for i in range(12))
    envelope = (
        b'("Sun, 1 Mar 2026" "%s number %d" NIL NIL NIL NIL NIL NIL NIL "<%d@example.org>")'
        % (
            word.encode(),
            n,
            n,
        )
    )
    return NewMessage(header + body, WHEN, frozenset(), envelope, None, header)


def open_store(root: Path) -> MailStore:
    return MailStore(FsBackend(FsLayout(root / "imap", {"default": root / "partition"})))


async def fill(root: Path, count: int, batch: int) -> dict[str, float]:
    store = open_store(root)
    await store.create_user("hansen")
    session = store.session("hansen")
    started = time.perf_counter()
    for start in range(0, count, batch):
        await session.append("INBOX", [make(n) for n in range(start, min(count, start + batch))])
    bulk = time.perf_counter() - started

    await store.create_user("fred")
    fred = store.session("fred")
    singles, tasks = 2000, 32
    counter = iter(range(singles))

    async def appender() -> None:
        for n in counter:
            await fred.append("INBOX", [make(n)])

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(tasks)))
    single = time.perf_counter() - started
    await store.backend.close()
    return {
        "bulk_append_per_s": count / bulk,
        "bulk_append_s": bulk,
        "single_appends": singles,
        "concurrent_sessions": tasks,
        "single_append_per_s": singles / single,
    }


async def measure(root: Path, count: int) -> dict[str, float]:
    store = open_store(root)  # a fresh process view: nothing cached
    session = store.session("hansen")
    started = time.perf_counter()
    opened = await session.select("INBOX")
    select_s = time.perf_counter() - started
    assert opened.snapshot.status.messages == count

    started = time.perf_counter()
    everything = UidSet([(1, 2**32 - 1)])
    metas = await session.fetch(opened, everything)
    fetch_s = time.perf_counter() - started
    assert len(metas) == count

    # Another session's change, then the same FETCH again: served from the process's copy
    # of the metadata, brought up to date with the changed rows only.
    await session.store_flags(opened, UidSet.of([5]), FlagChange(FlagMode.ADD, SEEN))
    started = time.perf_counter()
    metas = await session.fetch(opened, everything)
    fetch_again_s = time.perf_counter() - started
    assert len(metas) == count and "\\Seen" in metas[4].flags

    started = time.perf_counter()
    hits, uncached = await session.search_headers(opened, everything, "Subject", RARE.encode())
    search_s = time.perf_counter() - started
    assert len(hits) == sum(1 for n in range(count) if n % 100 == 7) and not uncached
    await store.backend.close()
    return {
        "select_s": select_s,
        "fetch_uid_flags_s": fetch_s,
        "fetch_uid_flags_again_s": fetch_again_s,
        "header_search_s": search_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the store")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="imapstore-", dir=args.dir))
    try:
        figures = asyncio.run(fill(root, args.messages, args.batch))
        figures |= asyncio.run(measure(root, args.messages))
        figures["messages"] = args.messages
        print(json.dumps({k: round(v, 3) for k, v in figures.items()}, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
