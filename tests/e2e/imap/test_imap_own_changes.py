"""A session's own STORE and EXPUNGE are handed to its view without asking the store again
only when nothing else happened in between (server/imap/session.py ``own_change``): another
session's change, in this worker or the other, is still reported with the response to the
next command, own change or not."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable, Sequence

from tests.e2e.conftest import Server
from tests.e2e.imap.mailbox import append, connect, message


def parsed(fetches: Sequence[object]) -> dict[int, set[str]]:
    """Sequence number -> flags (but \\Recent) of these FETCH responses."""
    told: dict[int, set[str]] = {}
    for item in fetches:
        raw = item[0] if isinstance(item, tuple) else item
        match = re.match(rb"(\d+) \(.*FLAGS \(([^)]*)\)", raw) if isinstance(raw, bytes) else None
        if match:
            told[int(match.group(1))] = set(match.group(2).decode().split()) - {"\\Recent"}
    return told


def flags_told(client: imaplib.IMAP4) -> dict[int, set[str]]:
    """What FETCH responses the server sent that no command's result took."""
    return parsed(client.untagged_responses.pop("FETCH", []))


def store(client: imaplib.IMAP4, numbers: str, how: str, flags: str) -> dict[int, set[str]]:
    """STORE; every FETCH that came with its response (imaplib hands them all back)."""
    status, data = client.store(numbers, how, flags)
    assert status == "OK", data
    return parsed([item for item in data if item is not None])


def test_other_sessions_changes_are_told_around_own_changes(
    imap_factory: Callable[..., Server],
) -> None:
    server = imap_factory(workers=2)
    append(server, "INBOX", *(message(f"m{n}") for n in range(1, 6)))
    sessions = [connect(server) for _ in range(4)]  # over the two workers
    try:
        for client in sessions:
            assert client.select("INBOX")[0] == "OK"
        mine = sessions[0]
        for other in sessions[1:]:
            flags_told(mine)
            # Another session changes message 2, then this one stores on message 1 and
            # is told of both (its own change echoed, the other's as an update).
            store(other, "2", "+FLAGS", "(\\Flagged)")
            told = store(mine, "1", "+FLAGS", "(\\Answered)")
            assert "\\Answered" in told[1]
            assert "\\Flagged" in told[2]
            # This session's own change alone: then the other's, seen at the next NOOP.
            assert store(mine, "1", "-FLAGS", "(\\Answered)") == {1: set()}
            store(other, "3", "+FLAGS", "(\\Draft)")
            assert mine.noop()[0] == "OK"
            assert "\\Draft" in flags_told(mine).get(3, set())
            # Before an EXPUNGE of its own: the other's flag change is told with it.
            store(other, "2", "-FLAGS", "(\\Flagged)")
            assert store(mine, "5", "+FLAGS.SILENT", "(\\Deleted)") == {2: set()}
            assert mine.expunge()[0] == "OK"
            store(other, "3", "-FLAGS", "(\\Draft)")
            assert mine.noop()[0] == "OK"
            assert "\\Draft" not in flags_told(mine).get(3, {"\\Draft"})
            append(server, "INBOX", message("again"))  # message 5 again, for the next round
            assert mine.noop()[0] == "OK"
    finally:
        for client in sessions:
            client.logout()
