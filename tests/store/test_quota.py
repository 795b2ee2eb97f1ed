"""Quota roots over the file-system store (chapter 12.5.8, RFC 9208 STORAGE): which root
limits which mailbox, usage that follows every change, APPEND/COPY/MOVE refused over the
limit with nothing written, delivery's exception, and usage counted again from the indexes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from posthouse.store.backend import FlagChange, FlagMode, NewMessage
from posthouse.store.errors import OverQuota
from posthouse.store.fs.backend import FsBackend
from posthouse.store.names import NoInbox
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import WHEN, message, open_store, run

HANSEN_FOLDERS = ("personnel", "personnel.reviews", "personnel.issues", "saved", "todo")
DELETED = FlagChange(FlagMode.ADD, frozenset({"\\Deleted"}))


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return open_store(tmp_path)


def sized(n: int, size: int) -> NewMessage:
    """A message of exactly ``size`` octets."""
    head = message(n).content
    return NewMessage(head + b"x" * (size - len(head)), WHEN)


async def used(store: MailStore, root: str) -> int:
    usage = await store.backend.quota(root)
    assert usage is not None, f"no quota root {root}"
    return usage.used_bytes


async def figure_12_5(store: MailStore) -> None:
    """Hansen's folders and the three quota roots of the chapter's figure 12-5."""
    await store.create_user("hansen")
    hansen = store.session("hansen")
    for folder in HANSEN_FOLDERS:
        await hansen.create(f"INBOX.{folder}")
    for root in ("user.hansen", "user.hansen.personnel", "user.hansen.personnel.issues"):
        await store.backend.set_quota(root, 10_000)


def test_figure_12_5_each_root_limits_the_folders_the_chapter_says(store: MailStore) -> None:
    async def main() -> None:
        await figure_12_5(store)
        roots = {}
        for name in ["user.hansen"] + [f"user.hansen.{f}" for f in HANSEN_FOLDERS]:
            usage = await store.backend.quota_root_of(name)
            assert usage is not None
            roots[name] = usage.root
        assert roots == {
            "user.hansen": "user.hansen",  # INBOX
            "user.hansen.saved": "user.hansen",
            "user.hansen.todo": "user.hansen",
            "user.hansen.personnel": "user.hansen.personnel",
            "user.hansen.personnel.reviews": "user.hansen.personnel",
            "user.hansen.personnel.issues": "user.hansen.personnel.issues",
        }
        # Usage lands on exactly one root per mailbox.
        hansen = store.session("hansen")
        for size, folder in ((1000, "INBOX.saved"), (2000, "INBOX.personnel.reviews")):
            await hansen.append(folder, [sized(1, size)])
        await hansen.append("INBOX.personnel.issues", [sized(2, 4000)])
        assert await used(store, "user.hansen") == 1000
        assert await used(store, "user.hansen.personnel") == 2000
        assert await used(store, "user.hansen.personnel.issues") == 4000
        # Without the two lower roots, user.hansen limits the whole hierarchy.
        await store.backend.remove_quota("user.hansen.personnel.issues")
        await store.backend.remove_quota("user.hansen.personnel")
        issues = await store.backend.quota_root_of("user.hansen.personnel.issues")
        assert issues is not None and issues.root == "user.hansen"
        assert await used(store, "user.hansen") == 7000

    run(main())


def test_a_new_root_takes_its_mailboxes_usage_from_the_root_above(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.create("INBOX.personnel")
        await store.backend.set_quota("user.hansen", 100)
        await hansen.append("INBOX", [sized(1, 1000)])
        await hansen.append("INBOX.personnel", [sized(2, 3000)])
        assert await used(store, "user.hansen") == 4000
        usage = await store.backend.set_quota("user.hansen.personnel", 50)
        assert (usage.limit_kb, usage.used_bytes) == (50, 3000)
        assert await used(store, "user.hansen") == 1000
        await hansen.create("INBOX.personnel.new")  # a new mailbox under a root counts to it
        await hansen.append("INBOX.personnel.new", [sized(3, 500)])
        assert await used(store, "user.hansen.personnel") == 3500

    run(main())


def test_each_copy_counts_and_index_files_do_not(store: MailStore, tmp_path: Path) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await store.backend.set_quota("user.hansen", 1000)
        await hansen.append("INBOX", [sized(1, 5000)])
        inbox = await hansen.select("INBOX")
        await hansen.copy(inbox, UidSet.of([1]), "INBOX.Trash")  # a hard link on disk
        await hansen.copy(inbox, UidSet.of([1]), "INBOX.Drafts")
        assert await used(store, "user.hansen") == 3 * 5000

    run(main())
    links = {p.stat().st_nlink for p in (tmp_path / "partition-default").rglob("1.")}
    assert links == {3}, "the copies share one file, and still count three times"


def test_append_over_the_limit_is_refused_with_nothing_written(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await store.backend.set_quota("user.hansen", 10)  # 10240 octets
        await hansen.append("INBOX", [sized(1, 6000)])
        with pytest.raises(OverQuota) as refused:
            await hansen.append("INBOX", [sized(2, 5000)])
        assert not refused.value.temporary
        with pytest.raises(OverQuota):  # MULTIAPPEND: all or nothing
            await hansen.append("INBOX.Sent", [sized(3, 2000), sized(4, 3000)])
        assert (await hansen.status("INBOX")).messages == 1
        assert (await hansen.status("INBOX.Sent")).messages == 0
        assert await used(store, "user.hansen") == 6000
        await hansen.append("INBOX", [sized(5, 4240)])  # exactly up to the limit: allowed
        assert await used(store, "user.hansen") == 10240

    run(main())


def test_copy_and_move_over_the_limit_are_refused_but_move_within_a_root_is_not(
    store: MailStore,
) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.create("INBOX.archive")
        await hansen.append("INBOX", [sized(1, 6000)])
        await store.backend.set_quota("user.hansen", 10)
        await store.backend.set_quota("user.hansen.archive", 5)
        inbox = await hansen.select("INBOX")
        for move in (False, True):  # into another root, over its limit
            with pytest.raises(OverQuota):
                await hansen.copy(inbox, UidSet.of([1]), "INBOX.archive", move=move)
        with pytest.raises(OverQuota):  # the same root: a COPY adds 6000 to 6000
            await hansen.copy(inbox, UidSet.of([1]), "INBOX.Trash")
        assert (await hansen.status("INBOX.archive")).messages == 0
        assert (await hansen.status("INBOX.Trash")).messages == 0
        await hansen.copy(inbox, UidSet.of([1]), "INBOX.Trash", move=True)  # nothing added
        assert (await hansen.status("INBOX.Trash")).messages == 1
        assert await used(store, "user.hansen") == 6000
        assert await used(store, "user.hansen.archive") == 0

    run(main())


def test_delivery_goes_in_whatever_its_size_until_the_root_is_over(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        await store.backend.set_quota("user.hansen", 10)
        await store.deliver("hansen", [sized(1, 6000)])
        await store.deliver("hansen", [sized(2, 9000)])  # under the limit when it starts
        assert await used(store, "user.hansen") == 15000
        with pytest.raises(OverQuota) as deferred:
            await store.deliver("hansen", [sized(3, 100)])
        assert deferred.value.temporary  # the sending server keeps trying
        hansen = store.session("hansen")
        inbox = await hansen.select("INBOX")
        assert len(inbox.snapshot.uids) == 2
        await hansen.store_flags(inbox, UidSet.of([2]), DELETED)
        await hansen.expunge(inbox)
        await store.deliver("hansen", [sized(3, 100)])  # the user made room: it goes in
        assert await used(store, "user.hansen") == 6100

    run(main())


def test_renames_and_deletions_move_usage(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.create("INBOX.personnel")
        await hansen.create("INBOX.personnel.issues")
        await store.backend.set_quota("user.hansen", 100)
        await store.backend.set_quota("user.hansen.personnel", 100)
        await hansen.append("INBOX.personnel.issues", [sized(1, 3000)])
        assert await used(store, "user.hansen.personnel") == 3000
        await hansen.rename("INBOX.personnel.issues", "INBOX.issues")  # leaves the lower root
        assert (await used(store, "user.hansen"), await used(store, "user.hansen.personnel")) == (
            3000,
            0,
        )
        await hansen.rename("INBOX.personnel", "INBOX.staff")  # a root renamed keeps its limit
        staff = await store.backend.quota("user.hansen.staff")
        assert staff is not None and staff.limit_kb == 100
        assert await store.backend.quota("user.hansen.personnel") is None
        await hansen.rename("INBOX.issues", "INBOX.staff.issues")
        assert (await used(store, "user.hansen"), await used(store, "user.hansen.staff")) == (
            0,
            3000,
        )
        await hansen.delete("INBOX.staff.issues")
        assert await used(store, "user.hansen.staff") == 0
        await hansen.delete("INBOX.staff")  # a root's mailbox deleted: the root goes too
        assert await store.backend.quota("user.hansen.staff") is None
        await store.delete_user("hansen")
        assert await store.backend.list_quotas() == []

    run(main())


def test_recompute_repairs_tampered_usage_from_the_indexes(
    store: MailStore, tmp_path: Path
) -> None:
    async def main() -> None:
        await figure_12_5(store)
        hansen = store.session("hansen")
        await hansen.append("INBOX", [sized(1, 1500)])
        await hansen.append("INBOX.personnel.issues", [sized(2, 2500)])

    run(main())
    backend = store.backend
    assert isinstance(backend, FsBackend)
    for name in ("user.hansen", "user.hansen.personnel.reviews", "user.hansen.personnel.issues"):
        record = backend.mailboxes.lookup(name)  # what the mailbox keeps of its bytes: tampered
        assert record is not None
        index = backend.layout.mailbox_dir(record.partition, record.id) / "index.db"
        with sqlite3.connect(index) as db:
            db.execute("UPDATE state SET bytes = 999999")
    reopened = open_store(tmp_path)
    tampered = run(reopened.backend.list_quotas())
    assert {u.root: u.used_bytes for u in tampered} == {
        "user.hansen": 999999,
        "user.hansen.personnel": 999999,
        "user.hansen.personnel.issues": 999999,
    }
    fixed = run(reopened.backend.recompute_quotas())
    expected = {
        "user.hansen": 1500,
        "user.hansen.personnel": 0,
        "user.hansen.personnel.issues": 2500,
    }
    assert {u.root: u.used_bytes for u in fixed} == expected
    again = run(open_store(tmp_path).backend.list_quotas())  # the indexes were corrected
    assert {u.root: u.used_bytes for u in again} == expected


def test_no_root_no_limit_and_dotted_users_unaffected(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        await store.session("hansen").append("INBOX", [sized(1, 50_000)])
        assert await store.backend.quota_root_of("user.hansen") is None
        with pytest.raises(NoInbox):
            await store.deliver("first.last", [sized(2, 10)])

    run(main())
