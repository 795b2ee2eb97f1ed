"""The mail service's semantics over the file-system backend: namespace, rights, users,
CREATE/DELETE/RENAME, SELECT, APPEND, STORE, EXPUNGE, COPY/MOVE, CONDSTORE/QRESYNC changes,
per-user seen state, change notification and POP3 over the INBOX."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posthouse.store.backend import FlagChange, FlagMode, NewMessage
from posthouse.store.errors import (
    MailboxExists,
    MailboxNotFound,
    MessageNotFound,
    NotPermitted,
    StoreError,
    StoreUnavailable,
)
from posthouse.store.inbox_maildrop import InboxMaildrop
from posthouse.store.maildrop import Maildrop, MaildropBusy
from posthouse.store.names import NoInbox
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import WHEN, message, open_store, run

ADD = FlagMode.ADD


def flags(*names: str) -> frozenset[str]:
    return frozenset(names)


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return open_store(tmp_path)


def names(items: list) -> list[str]:  # type: ignore[type-arg]
    return [item.name for item in items]


def test_a_new_user_gets_inbox_and_special_use_folders_subscribed(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        listed = {i.name: i.attributes for i in await hansen.list_mailboxes("", "*")}
        assert set(listed) == {"INBOX", "INBOX.Drafts", "INBOX.Junk", "INBOX.Sent", "INBOX.Trash"}
        assert "\\Sent" in listed["INBOX.Sent"] and "\\Trash" in listed["INBOX.Trash"]
        assert "\\HasChildren" in listed["INBOX"]
        assert names(await hansen.list_subscribed("", "*")) == sorted(listed)
        with pytest.raises(MailboxExists):
            await store.create_user("hansen")

    run(main())


def test_creating_inbox_creates_the_user_and_dotted_users_have_none(store: MailStore) -> None:
    async def main() -> None:
        await store.session("fred").create("INBOX")
        assert (await store.backend.get_mailbox("user.fred.Sent")) is not None
        with pytest.raises(NoInbox):
            await store.session("j.smith").create("INBOX")
        assert store.session("j.smith").namespace()[0] is None
        assert store.session("fred").namespace()[0] == ("INBOX.", ".")

    run(main())


def test_other_users_see_nothing_without_rights_exactly_as_if_it_did_not_exist(
    store: MailStore,
) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen, fred = store.session("hansen"), store.session("fred")
        await hansen.create("INBOX.work")
        assert await fred.list_mailboxes("", "*") == []
        for visible in ("user.hansen.work", "user.hansen.nothing"):
            with pytest.raises(MailboxNotFound) as info:
                await fred.select(visible)
            assert str(info.value) == f"mailbox {visible} does not exist"
        # Hansen shares "work" with fred: fred sees it under its full name
        await store.backend.set_acl("user.hansen.work", "hansen\tlrswipkxtea\tfred\tlrs\t")
        listed = {i.name: i.attributes for i in await fred.list_mailboxes("", "*")}
        assert listed == {"user.hansen.work": frozenset({"\\HasNoChildren"})}
        levels = {i.name: i.attributes for i in await fred.list_mailboxes("user.", "%")}
        assert "\\Noselect" in levels["user.hansen"]
        opened = await fred.select("user.hansen.work")
        assert opened.read_only is False  # s is a write right: seen state is kept
        with pytest.raises(NotPermitted):
            await fred.append("user.hansen.work", [message(1)])
        with pytest.raises(NotPermitted):
            await fred.delete("user.hansen.work")

    run(main())


def test_admins_hold_lookup_and_administer_everywhere(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        cyrus = store.session("cyrus")
        assert "user.hansen.Sent" in names(await cyrus.list_mailboxes("", "*"))
        with pytest.raises(NotPermitted):  # l and a, not r
            await cyrus.select("user.hansen")
        await cyrus.create("shared")
        with pytest.raises(NotPermitted):
            await store.session("hansen").create("public")

    run(main())


def test_deleting_a_user_s_inbox_deletes_all_their_mailboxes(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.create("INBOX.work.personnel")
        await hansen.append("INBOX.work.personnel", [message(1)])
        with pytest.raises(NotPermitted):  # RFC 3501 §6.3.4
            await hansen.delete("INBOX")
        deleted = await store.session("cyrus").delete("user.hansen")
        assert "user.hansen" in deleted and "user.hansen.work.personnel" in deleted
        assert await store.backend.list_mailboxes("user.hansen") == []
        partition = store.backend.layout.partitions["default"]  # type: ignore[attr-defined]
        assert [p for p in partition.rglob("*") if p.is_file()] == []

    run(main())


def test_rename_moves_a_subtree_and_renaming_inbox_moves_its_messages(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.create("INBOX.a")
        await hansen.create("INBOX.a.b")
        appended = await hansen.append("INBOX.a.b", [message(1)])
        pairs = await hansen.rename("INBOX.a", "INBOX.z")
        assert pairs == [("INBOX.a", "INBOX.z"), ("INBOX.a.b", "INBOX.z.b")]
        moved = await hansen.select("INBOX.z.b")
        assert moved.snapshot.status.uidvalidity == appended.uidvalidity  # same mailbox
        assert list(moved.snapshot.uids) == [1]
        with pytest.raises(MailboxExists):
            await hansen.rename("INBOX.z", "INBOX.Sent")

        await hansen.append("INBOX", [message(2), message(3)])
        await hansen.rename("INBOX", "INBOX.old")  # RFC 3501 §6.3.5
        inbox = await hansen.select("INBOX")
        assert inbox.snapshot.status.messages == 0
        old = await hansen.select("INBOX.old")
        assert old.snapshot.status.messages == 2
        assert "INBOX.Sent" in names(await hansen.list_mailboxes("", "*"))

    run(main())


def test_select_snapshot_recent_unseen_and_flags(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        first = NewMessage(message(1).content, WHEN, flags("\\Seen", "$Work"))
        await hansen.append("INBOX", [first, message(2), message(3)])
        opened = await hansen.select("INBOX")
        status = opened.snapshot.status
        assert (status.messages, status.recent, status.unseen, status.uidnext) == (3, 3, 2, 4)
        assert opened.snapshot.first_unseen == 2
        assert "$Work" in opened.flags and "\\*" in opened.permanent_flags
        again = await hansen.select("INBOX")  # \Recent went to the first session
        assert again.snapshot.status.recent == 0
        examined = await hansen.select("INBOX", read_only=True)
        assert examined.read_only and examined.permanent_flags == ()

    run(main())


def test_append_is_crlf_multiappend_and_returns_uids(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        bare = NewMessage(b"Subject: lf\n\nline\nend\r", WHEN)
        result = await hansen.append("INBOX", [bare, message(2)])
        assert result.uids == (1, 2)
        opened = await hansen.select("INBOX")
        assert await hansen.read_message(opened, 1) == b"Subject: lf\r\n\r\nline\r\nend\r\n"
        metas = await hansen.fetch(opened, UidSet.of([1, 2]))
        assert [m.size for m in metas] == [26, len(message(2).content)]
        with pytest.raises(Exception, match="keyword"):
            await hansen.append("INBOX", [NewMessage(b"x\r\n", WHEN, flags("bad(kw"))])
        assert (await hansen.select("INBOX")).snapshot.status.messages == 2

    run(main())


def test_store_flags_with_unchangedsince_and_changes_since(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.append("INBOX", [message(1), message(2), message(3)])
        opened = await hansen.select("INBOX")
        start = opened.snapshot.status.highestmodseq
        done = await hansen.store_flags(opened, UidSet.of([1]), FlagChange(ADD, flags("\\Flagged")))
        assert [(m.uid, m.flags) for m in done.changed] == [(1, flags("\\Flagged"))]
        assert done.changed[0].modseq > start
        later = await hansen.store_flags(
            opened,
            UidSet.of([1, 2]),
            FlagChange(ADD, flags("\\Answered")),
            unchanged_since=start,
        )
        assert later.failed == UidSet.of([1])  # RFC 7162 MODIFIED
        assert [m.uid for m in later.changed] == [2]
        await hansen.store_flags(opened, UidSet.of([3]), FlagChange(ADD, flags("\\Deleted")))
        gone = await hansen.expunge(opened)
        assert gone.uids == UidSet.of([3])
        changes = await hansen.changes_since(opened, start)
        assert [m.uid for m in changes.changed] == [1, 2]
        assert changes.vanished == UidSet.of([3])
        assert changes.highestmodseq == gone.modseq

    run(main())


def test_uid_expunge_removes_only_the_given_deleted_messages(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.append("INBOX", [message(i) for i in range(1, 5)])
        opened = await hansen.select("INBOX")
        await hansen.store_flags(opened, UidSet.of([1, 2, 3]), FlagChange(ADD, flags("\\Deleted")))
        assert (await hansen.expunge(opened, UidSet.of([2, 4]))).uids == UidSet.of([2])
        assert list((await hansen.refresh(opened)).uids) == [1, 3, 4]

    run(main())


def test_seen_is_per_user_in_a_shared_mailbox(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen, fred = store.session("hansen"), store.session("fred")
        await store.backend.set_acl("user.hansen", "hansen\tlrswipkxtea\tfred\tlrs\t")
        await hansen.append("INBOX", [message(1), message(2)])
        mine = await hansen.select("INBOX")
        theirs = await fred.select("user.hansen")
        await fred.store_flags(theirs, UidSet.of([1]), FlagChange(ADD, flags("\\Seen")))
        assert [m.flags for m in await fred.fetch(theirs, UidSet.of([1, 2]))] == [
            flags("\\Seen"),
            flags(),
        ]
        assert [m.flags for m in await hansen.fetch(mine, UidSet.of([1, 2]))] == [flags(), flags()]
        assert (await fred.status("user.hansen")).unseen == 1
        assert (await hansen.status("INBOX")).unseen == 2
        # fred may not write: his \Flagged is ignored, his \Seen kept
        await fred.store_flags(theirs, UidSet.of([2]), FlagChange(ADD, flags("\\Flagged")))
        assert [m.flags for m in await hansen.fetch(mine, UidSet.of([2]))] == [flags()]

    run(main())


def test_copy_and_move_keep_flags_and_report_the_uid_mapping(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.append("INBOX", [message(i) for i in range(1, 4)])
        await hansen.append("INBOX.Trash", [message(9)])
        opened = await hansen.select("INBOX")
        await hansen.store_flags(opened, UidSet.of([2]), FlagChange(ADD, flags("\\Flagged")))
        copied = await hansen.copy(opened, UidSet.of([2, 3]), "INBOX.Trash")
        trash = await hansen.select("INBOX.Trash")
        assert copied.uidvalidity == trash.snapshot.status.uidvalidity
        assert (copied.source_uids, copied.target_uids) == ((2, 3), (2, 3))
        metas = await hansen.fetch(trash, UidSet.of([2]))
        assert metas[0].flags == flags("\\Flagged")
        assert await hansen.read_message(trash, 2) == await hansen.read_message(opened, 2)
        moved = await hansen.copy(opened, UidSet.of([1]), "INBOX.Trash", move=True)
        assert moved.target_uids == (4,)
        assert list((await hansen.refresh(opened)).uids) == [2, 3]
        changes = await hansen.changes_since(opened, 1)
        assert changes.vanished == UidSet.of([1])

    run(main())


def test_a_waiting_session_is_woken_by_another_session_s_append(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        opened = await hansen.select("INBOX")
        token = hansen.change_token(opened)
        assert await hansen.wait_for_change(opened, token, 0.05) == token  # nothing yet
        waiter = asyncio.create_task(hansen.wait_for_change(opened, token, 60))
        await asyncio.sleep(0)
        assert not waiter.done()
        await store.deliver("hansen", [message(1)])
        assert await asyncio.wait_for(waiter, 60) != token
        snapshot = await hansen.refresh(opened)
        assert list(snapshot.uids) == [1]

    run(main())


def test_pop3_serves_the_inbox_with_stable_uids_and_expunges_at_quit(
    store: MailStore, tmp_path: Path
) -> None:
    run(store.create_user("hansen"))
    run(store.deliver("hansen", [message(1), message(2), message(3)]))
    lock = tmp_path / "pop.lock"
    with InboxMaildrop.open(store, "hansen", session_lock=lock) as drop:
        assert isinstance(drop, Maildrop)
        uidvalidity = run(store.session("hansen").status("INBOX")).uidvalidity
        assert [m.uid for m in drop.messages] == [f"{uidvalidity}.{n}" for n in (1, 2, 3)]
        with pytest.raises(MaildropBusy):
            InboxMaildrop.open(store, "hansen", session_lock=lock)
        opened = run(store.session("hansen").select("INBOX", read_only=True))
        assert b"".join(drop.read(2)) == run(store.session("hansen").read_message(opened, 2))
        assert drop.messages[1].size == len(b"".join(drop.read(2)))
        run(store.deliver("hansen", [message(4)]))  # arrives during the session: kept
        drop.commit_deletions([1, 3])
    after = run(store.session("hansen").select("INBOX"))
    assert list(after.snapshot.uids) == [2, 4]
    with InboxMaildrop.open(store, "hansen", session_lock=lock) as drop:
        assert [m.uid for m in drop.messages] == [f"{uidvalidity}.2", f"{uidvalidity}.4"]


def test_quota_usage_follows_appends_copies_and_expunges(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.append("INBOX", [message(1)])
        usage = await store.backend.set_quota("user.hansen", 1000)  # counts what is there
        size = len(message(1).content)
        assert (usage.limit_kb, usage.used_bytes) == (1000, size)
        await hansen.append("INBOX", [message(2)])
        opened = await hansen.select("INBOX")
        await hansen.copy(opened, UidSet.of([1]), "INBOX.Trash")  # each copy counts
        used = (await store.backend.quota("user.hansen")).used_bytes  # type: ignore[union-attr]
        assert used == 2 * size + len(message(2).content)
        await hansen.store_flags(opened, UidSet.of([1, 2]), FlagChange(ADD, flags("\\Deleted")))
        await hansen.expunge(opened)
        used = (await store.backend.quota("user.hansen")).used_bytes  # type: ignore[union-attr]
        assert used == size
        await hansen.append("INBOX.Drafts", [message(3)])  # below the root: counted
        used = (await store.backend.quota("user.hansen")).used_bytes  # type: ignore[union-attr]
        assert used == size + len(message(3).content)

    run(main())


def test_a_mailbox_deleted_by_another_process_fails_cleanly_for_a_session_holding_it(
    tmp_path: Path,
) -> None:
    here, there = open_store(tmp_path), open_store(tmp_path)  # two processes' views

    async def main() -> None:
        await here.create_user("hansen")
        hansen = here.session("hansen")
        await hansen.create("INBOX.work")
        await hansen.append("INBOX.work", [message(1)])
        opened = await hansen.select("INBOX.work")
        await there.session("hansen").delete("INBOX.work")
        with pytest.raises(MailboxNotFound):
            await hansen.fetch(opened, UidSet.of([1]))
        with pytest.raises(MailboxNotFound):
            await here.backend.append(opened.mailbox_id, [message(2)])
        with pytest.raises(MailboxNotFound):
            await hansen.select("INBOX.work")
        await hansen.create("INBOX.work")  # the name is free again, with a new UIDVALIDITY
        again = await hansen.select("INBOX.work")
        assert again.snapshot.status.uidvalidity > opened.snapshot.status.uidvalidity
        assert again.snapshot.status.messages == 0

    run(main())


def test_header_search_uses_the_cached_headers_and_reports_the_uncached(
    store: MailStore,
) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")

        def cached(subject: bytes) -> NewMessage:
            header = b"From: a@example.org\r\nSubject: " + subject + b"\r\n\r\n"
            return NewMessage(header + b"body\r\n", WHEN, header=header)

        await hansen.append(
            "INBOX",
            [
                cached(b"Quarterly REPORT"),
                cached(b"nothing here"),
                cached(b"folded\r\n\tReport follows"),
                cached(b"x\r\nX-Report: report"),  # the word in another field only
                message(5),  # no cached header
            ],
        )
        opened = await hansen.select("INBOX")
        everything = UidSet([(1, 100)])
        hits, uncached = await hansen.search_headers(opened, everything, "subject", b"report")
        assert hits == UidSet.of([1, 3])
        assert uncached == UidSet.of([5])
        hits, _ = await hansen.search_headers(opened, UidSet.of([2, 3]), "SUBJECT", b"REPORT")
        assert hits == UidSet.of([3])

    run(main())


def test_delivery_to_a_folder_needs_the_post_right_else_goes_to_the_inbox(
    store: MailStore,
) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.create("INBOX.lists")
        await hansen.create("INBOX.private")
        await store.backend.set_acl("user.hansen.lists", "hansen\tlrswipkxtea\tanonymous\tp\t")
        await store.deliver("hansen", [message(1)], folder="lists")
        await store.deliver("hansen", [message(2)], folder="private")  # no p: INBOX
        await store.deliver("hansen", [message(3)], folder="missing")  # no such: INBOX
        assert (await hansen.status("INBOX.lists")).messages == 1
        assert (await hansen.status("INBOX.private")).messages == 0
        assert (await hansen.status("INBOX")).messages == 2
        with pytest.raises(MailboxNotFound):
            await store.deliver("nobody", [message(4)])

    run(main())


def test_new_mailboxes_inherit_the_partition_and_only_admins_choose_one(
    tmp_path: Path,
) -> None:
    from posthouse.store.fs.backend import FsBackend
    from posthouse.store.fs.layout import FsLayout
    from posthouse.store.policy import CyrusAccess

    partitions = {"default": tmp_path / "p1", "big": tmp_path / "p2"}
    backend = FsBackend(FsLayout(tmp_path / "imap", partitions))
    store = MailStore(backend, access=CyrusAccess(admins=frozenset({"cyrus"})))

    async def main() -> None:
        await store.create_user("hansen")
        with pytest.raises(NotPermitted):
            await store.session("hansen").create("INBOX.archive", partition="big")
        archive = await store.session("cyrus").create("user.hansen.archive", partition="big")
        assert archive.partition == "big"
        child = await store.session("hansen").create("INBOX.archive.2025")
        assert child.partition == "big"  # inherited from its parent (chapter 12.5.9)
        assert (await store.session("hansen").create("INBOX.other")).partition == "default"
        await store.session("hansen").append("INBOX.archive.2025", [message(1)])
        files = [p.name for p in (tmp_path / "p2").rglob("*") if p.name.endswith(".")]
        assert files == ["1."]

    run(main())


def test_limits_on_appended_messages(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.max_message_size = 1000
    store.max_messages_per_append = 3

    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        with pytest.raises(StoreError, match="at most 1000 octets"):
            await hansen.append("INBOX", [message(1, b"x" * 1000)])
        with pytest.raises(StoreError, match="at most 3 messages"):
            await hansen.append("INBOX", [message(n) for n in range(4)])
        with pytest.raises(StoreError, match="at most 1000 octets"):
            await store.deliver("hansen", [message(1), message(2, b"y" * 2000)])
        assert (await hansen.status("INBOX")).messages == 0  # nothing half-appended

    run(main())


def test_reading_an_expunged_message_says_so(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.append("INBOX", [message(1)])
        opened = await hansen.select("INBOX")
        other = await store.session("hansen").select("INBOX")
        await hansen.store_flags(opened, UidSet.of([1]), FlagChange(ADD, flags("\\Deleted")))
        await hansen.expunge(opened)
        with pytest.raises(MessageNotFound):
            await hansen.read_message(other, 1)
        # a STORE racing the expunge changes nothing and fails nothing
        late = await hansen.store_flags(other, UidSet.of([1]), FlagChange(ADD, flags("\\Seen")))
        assert late.changed == () and not late.failed

    run(main())


def test_list_with_a_reference_lsub_levels_and_the_delimiter_query(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.create("INBOX.work.reports")
        assert names(await hansen.list_mailboxes("INBOX.", "%")) == [
            "INBOX.Drafts",
            "INBOX.Junk",
            "INBOX.Sent",
            "INBOX.Trash",
            "INBOX.work",
        ]
        assert names(await hansen.list_mailboxes("", "inbox.work.*")) == ["INBOX.work.reports"]
        (delimiter,) = await hansen.list_mailboxes("", "")  # RFC 3501 §6.3.8
        assert delimiter.name == "" and "\\Noselect" in delimiter.attributes
        await hansen.subscribe("INBOX.work.reports")
        await hansen.subscribe("shared.gone")  # subscribing to what does not exist is allowed
        levels = {i.name: i.attributes for i in await hansen.list_subscribed("INBOX.work.", "%")}
        assert levels == {"INBOX.work.reports": frozenset()}
        levels = {i.name: i.attributes for i in await hansen.list_subscribed("", "INBOX.%")}
        assert levels["INBOX.work"] == frozenset({"\\Noselect"})  # a level, not subscribed
        assert levels["INBOX.Sent"] == frozenset()
        assert "shared.gone" in names(await hansen.list_subscribed("", "*"))
        await hansen.unsubscribe("shared.gone")
        assert "shared.gone" not in names(await hansen.list_subscribed("", "*"))

    run(main())


def test_blobs_computed_later_are_cached_without_changing_modseq(store: MailStore) -> None:
    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await store.deliver("hansen", [message(1)])  # delivered without cached blobs
        opened = await hansen.select("INBOX")
        (before,) = await hansen.fetch(opened, UidSet.of([1]), cached=True)
        assert (before.envelope, before.bodystructure, before.header) == (None, None, None)
        await hansen.store_cache(opened, 1, envelope=b'("date" "subject")')
        await hansen.store_cache(opened, 1, header=b"Subject: message 1\r\n\r\n")
        (after,) = await hansen.fetch(opened, UidSet.of([1]), cached=True)
        assert after.envelope == b'("date" "subject")'  # kept when only the header came
        assert after.header == b"Subject: message 1\r\n\r\n"
        assert after.modseq == before.modseq
        hits, uncached = await hansen.search_headers(opened, UidSet.of([1]), "subject", b"1")
        assert (hits, uncached) == (UidSet.of([1]), UidSet())
        with pytest.raises(MessageNotFound):
            await hansen.store_cache(opened, 99, header=b"x")

    run(main())


def test_select_racing_a_delete_is_no_such_mailbox_not_an_io_error(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder of a mailbox another session deletes can vanish while SELECT opens it:
    the I/O error that follows means the mailbox no longer exists (NO [NONEXISTENT]); an I/O
    error on a mailbox that still exists stays one ([UNAVAILABLE])."""

    async def main() -> None:
        await store.create_user("hansen")
        hansen = store.session("hansen")
        await hansen.create("INBOX.gone")
        await hansen.create("INBOX.kept")
        backend = store.backend

        async def snapshot_while_deleted(mailbox_id: str, *, viewer: object) -> object:
            await backend.delete_mailboxes(["user.hansen.gone"])  # the other session's DELETE
            raise StoreUnavailable("cannot open index.db: no such file")

        monkeypatch.setattr(backend, "snapshot", snapshot_while_deleted)
        with pytest.raises(MailboxNotFound):
            await hansen.select("INBOX.gone")

        async def snapshot_failing(mailbox_id: str, *, viewer: object) -> object:
            raise StoreUnavailable("disk on fire")

        monkeypatch.setattr(backend, "snapshot", snapshot_failing)
        with pytest.raises(StoreUnavailable):
            await hansen.select("INBOX.kept")

    run(main())


def test_relative_names_resolve_as_the_chapter_says(store: MailStore) -> None:
    """12.5.6: with the top of the hierarchy named user.hansen, .work.personnel.issues
    resolves to user.hansen.work.personnel.issues and work.personnel.issues to itself."""

    async def main() -> None:
        await store.create_user("hansen")
        hansen, cyrus = store.session("hansen"), store.session("cyrus")
        await hansen.create("INBOX.work")
        await hansen.create("INBOX.work.personnel")
        await hansen.create("INBOX.work.personnel.issues")
        await cyrus.create("work")
        await cyrus.create("work.personnel")
        await cyrus.create("work.personnel.issues")
        relative = await cyrus.list_mailboxes("user.hansen", ".work.personnel.issues")
        assert names(relative) == ["user.hansen.work.personnel.issues"]
        absolute = await cyrus.list_mailboxes("user.hansen", "work.personnel.issues")
        assert names(absolute) == ["work.personnel.issues"]
        # a reference ending in the separator, or a pattern starting with a wildcard, joins
        assert names(await hansen.list_mailboxes("INBOX.work.", "%")) == ["INBOX.work.personnel"]
        assert "INBOX.work" in names(await hansen.list_mailboxes("INBOX", "*"))

    run(main())
