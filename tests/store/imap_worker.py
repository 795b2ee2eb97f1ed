"""A second process using the IMAP store, driven by the multi-process and crash tests.

python -m tests.store.imap_worker ROOT append USER COUNT [BATCH]
    appends COUNT messages to USER's INBOX (BATCH per call), printing each UID as soon
    as its append returned (an acknowledged append), one per line
python -m tests.store.imap_worker ROOT seen USER UID
    marks UID \\Seen in USER's INBOX, prints "done"
python -m tests.store.imap_worker ROOT wait USER
    prints "ready", waits (up to 60 s) for a change to USER's INBOX, prints "woken"
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from posthouse.store.backend import FlagChange, FlagMode
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import message, open_store

DELETED = frozenset({"\\Deleted"})


async def main(root: Path, command: str, user: str, args: list[str]) -> None:
    store = open_store(root)
    session = store.session(user)
    if command == "append":
        count = int(args[0])
        batch = int(args[1]) if len(args) > 1 else 1
        for start in range(0, count, batch):
            result = await session.append(
                "INBOX", [message(n) for n in range(start, min(count, start + batch))]
            )
            sys.stdout.write("".join(f"{uid}\n" for uid in result.uids))
            sys.stdout.flush()
    elif command == "churn":
        for n in range(100_000):
            appended = await session.append("INBOX", [message(n), message(n)])
            opened = await session.select("INBOX")
            copied = await session.copy(opened, UidSet.of(appended.uids), "INBOX.Trash")
            deleted = UidSet.of(appended.uids[:1])
            await session.store_flags(opened, deleted, FlagChange(FlagMode.ADD, DELETED))
            await session.expunge(opened, deleted)
            pairs = zip(copied.source_uids, copied.target_uids, strict=True)
            sys.stdout.write("".join(f"{a} {b}\n" for a, b in pairs))
            sys.stdout.flush()
    elif command == "seen":
        opened = await session.select("INBOX")
        change = FlagChange(FlagMode.ADD, frozenset({"\\Seen"}))
        await session.store_flags(opened, UidSet.of([int(args[0])]), change)
        print("done", flush=True)
    elif command == "wait":
        opened = await session.select("INBOX")
        token = session.change_token(opened)
        print("ready", flush=True)
        woken = await session.wait_for_change(opened, token, 60)
        print("woken" if woken != token else "timeout", flush=True)
    await store.backend.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]))
