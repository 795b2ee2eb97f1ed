"""The RCPT-time 452 4.2.2 follows aliases to the mailboxes they deliver to: refused only
when every destination is a store mailbox over quota (mta/full_mailbox.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from posthouse.mta.agents.store import StoreMailbox
from posthouse.mta.errors import MailError
from posthouse.mta.expand import Expander
from posthouse.mta.full_mailbox import (
    MAX_CHECKED,
    MAX_LOOKUPS,
    AliasesOnly,
    FullMailboxCheck,
    Lookup,
)
from posthouse.mta.local_mail import LocalMail

ALIASES = {
    "sales": ("alice",),  # one store user, full
    "chain": ("sales",),  # through another alias
    "team": ("alice", "bob"),  # one full, one with room
    "fulls": ("alice", "carol"),  # both full
    "mixed": ("alice", "dave"),  # full store user and a spool user
    "out": ("alice", "someone@remote.test"),
    "listed": ("alice", ":include:/etc/mail/list"),
    "detail": ("carol+lists",),
    "huge": tuple("alice" if i == 0 else f"full{i}" for i in range(MAX_CHECKED + 1)),
}
STORE_USERS = {"alice", "bob", "carol"} | {f"full{i}" for i in range(MAX_CHECKED + 1)}
FULL = {"alice", "carol"} | {f"full{i}" for i in range(MAX_CHECKED + 1)}


class QuotaRecords:
    def __init__(self) -> None:
        self.asked: list[StoreMailbox] = []

    async def over_quota(self, box: StoreMailbox) -> MailError | None:
        self.asked.append(box)
        return MailError("4.2.2", f"{box.user}: mailbox over quota") if box.user in FULL else None


def expander(lookup: Lookup) -> Expander:
    return Expander(
        lookup_alias=lookup,
        is_local_domain=lambda domain: domain == "example.test",
        user_exists=lambda user: user in STORE_USERS | {"dave"},
        files=AliasesOnly(),
        default_domain="example.test",
    )


def check(tmp_path: Path, aliases: Lookup = ALIASES.get) -> tuple[FullMailboxCheck, QuotaRecords]:
    records = QuotaRecords()
    local_mail = LocalMail(tmp_path, uses_store=STORE_USERS.__contains__)
    store: Any = records
    return FullMailboxCheck(aliases, expander, local_mail, store), records


@pytest.mark.parametrize(
    "address",
    ["alice@example.test", "<sales@example.test>", "chain@example.test", "fulls@example.test",
     "detail@example.test", "carol+lists@example.test"],
)  # fmt: skip
def test_every_destination_full_is_refused(tmp_path: Path, address: str) -> None:
    full_mailbox, _ = check(tmp_path)
    refusal = asyncio.run(full_mailbox(address))
    assert refusal is not None and refusal.status == "4.2.2"


@pytest.mark.parametrize(
    "address",
    ["bob@example.test", "team@example.test", "mixed@example.test", "out@example.test",
     "listed@example.test", "huge@example.test", "nobody@example.test", "alice@remote.test",
     "dave@example.test"],
)  # fmt: skip
def test_a_destination_that_can_take_it_or_any_doubt_accepts(tmp_path: Path, address: str) -> None:
    full_mailbox, _ = check(tmp_path)
    assert asyncio.run(full_mailbox(address)) is None


def test_the_folder_of_a_detailed_target_is_the_one_asked_about(tmp_path: Path) -> None:
    full_mailbox, records = check(tmp_path)
    asyncio.run(full_mailbox("detail@example.test"))
    assert records.asked == [StoreMailbox("carol", "lists")]


def test_an_expansion_over_the_lookup_budget_is_accepted_unexpanded(tmp_path: Path) -> None:
    """A list of aliases of a full user: refused while its expansion is small; with more
    than MAX_LOOKUPS aliases in it the RCPT-time check stops there and accepts (delivery
    judges each copy)."""
    nested = dict(ALIASES)
    nested["big"] = tuple(f"level{i}" for i in range(10))
    nested.update({f"level{i}": ("alice",) for i in range(10)})
    asked: list[str] = []

    def lookup(name: str) -> tuple[str, ...] | None:
        asked.append(name)
        return nested.get(name)

    full_mailbox, _ = check(tmp_path, lookup)
    refusal = asyncio.run(full_mailbox("big@example.test"))  # 12 lookups: within, all full
    assert refusal is not None and refusal.status == "4.2.2"
    nested["big"] = tuple(f"level{i % 10}x{i}" for i in range(MAX_LOOKUPS + 10))
    nested.update({f"level{i % 10}x{i}": ("alice",) for i in range(MAX_LOOKUPS + 10)})
    asked.clear()
    assert asyncio.run(full_mailbox("big@example.test")) is None
    assert len(asked) == MAX_LOOKUPS
