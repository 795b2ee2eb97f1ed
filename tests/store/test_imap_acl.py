"""Access control lists in the mail service (chapter 12.5.7, RFC 4314): the chapter's examples,
the ACL commands' rules (modifiers, obsolete letters, identifiers, limits, who may use them),
groups from posthouse's table and from the system, and each right's effect."""

from __future__ import annotations

import asyncio
import grp
import pwd
from pathlib import Path

import pytest

from posthouse.auth.groups import GroupDirectory
from posthouse.store.acl import (
    MAX_ENTRIES,
    Acl,
    BadIdentifier,
    TooManyEntries,
    UnknownRight,
    listed_rights,
    wire_rights,
)
from posthouse.store.backend import FlagChange, FlagMode, NewMessage
from posthouse.store.errors import MailboxNotFound, NotPermitted
from posthouse.store.fs.backend import FsBackend
from posthouse.store.policy import CyrusAccess
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import WHEN, layout, message, open_store, run

SEEN = FlagChange(FlagMode.ADD, frozenset({"\\Seen"}))


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return open_store(tmp_path)


async def shared_folder(store: MailStore, acl: str) -> None:
    """hansen's INBOX.shared with one message, its ACL set to ``acl`` (plus hansen's own)."""
    await store.create_user("hansen")
    hansen = store.session("hansen")
    await hansen.create("INBOX.shared")
    await hansen.append("INBOX.shared", [message(1)])
    await store.backend.set_acl("user.hansen.shared", "hansen\tlrswipkxtea\t" + acl)


def listed(names: list) -> set[str]:  # type: ignore[type-arg]
    return {item.name for item in names}


# -- the chapter's examples --


def test_fred_gets_lrswip_and_anonymous_lrp_from_the_chapter_s_acl(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "anyone\tlrsp\tfred\tlwi\t-anonymous\ts\t")
        name = "user.hansen.shared"
        assert await store.session("fred").my_rights(name) == frozenset("lrswip")
        assert await store.session("anonymous").my_rights(name) == frozenset("lrp")
        assert wire_rights(await store.session("fred").my_rights(name)) == "lrswip"

    run(main())


def test_lrs_reads_and_keeps_the_user_s_seen_state(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "fred\tlrs\t")
        fred = store.session("fred")
        assert "user.hansen.shared" in listed(await fred.list_mailboxes("", "*"))
        opened = await fred.select("user.hansen.shared")
        assert not opened.read_only and opened.keeps_seen
        await fred.store_flags(opened, UidSet.of([1]), SEEN)
        assert (await fred.status("user.hansen.shared")).unseen == 0  # kept for fred ...
        assert (await store.session("hansen").status("INBOX.shared")).unseen == 1  # ... alone
        with pytest.raises(NotPermitted):
            await fred.append("user.hansen.shared", [message(2)])

    run(main())


def test_lrsp_lets_the_delivery_system_post_to_the_folder(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "anyone\tlrsp\t")
        await store.deliver("hansen", [message(2)], folder="shared")  # posted as anonymous
        assert (await store.session("fred").status("user.hansen.shared")).messages == 2
        with pytest.raises(NotPermitted):  # p is no i: not through IMAP
            await store.session("fred").append("user.hansen.shared", [message(3)])

    run(main())


def test_lr_reads_but_keeps_no_seen_state(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "fred\tlr\t")
        fred = store.session("fred")
        opened = await fred.select("user.hansen.shared")
        assert opened.read_only and not opened.keeps_seen
        with pytest.raises(NotPermitted):
            await fred.store_flags(opened, UidSet.of([1]), SEEN)
        assert (await fred.status("user.hansen.shared")).unseen == 1
        again = await fred.select("user.hansen.shared")
        assert again.snapshot.status.recent == 1  # \Recent was not claimed either

    run(main())


def test_lrw_without_s_changes_keywords_but_never_the_seen_state(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "fred\tlrw\t")
        fred = store.session("fred")
        opened = await fred.select("user.hansen.shared")
        assert not opened.read_only and not opened.keeps_seen
        change = FlagChange(FlagMode.ADD, frozenset({"\\Seen", "\\Flagged"}))
        await fred.store_flags(opened, UidSet.of([1]), change)
        (meta,) = await fred.fetch(opened, UidSet.of([1]))
        assert meta.flags == frozenset({"\\Flagged"})
        assert (await fred.status("user.hansen.shared")).unseen == 1

    run(main())


def test_rs_is_selectable_but_not_listed(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "fred\trs\t")
        fred = store.session("fred")
        assert listed(await fred.list_mailboxes("", "*")) == set()
        opened = await fred.select("user.hansen.shared")
        assert opened.keeps_seen
        # without l, a right fred lacks answers as for a mailbox that does not exist
        with pytest.raises(MailboxNotFound) as missing:
            await fred.append("user.hansen.shared", [message(2)])
        assert str(missing.value) == "mailbox user.hansen.shared does not exist"

    run(main())


def test_lrsip_reads_and_appends_through_imap_and_delivery(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "anyone\tlrsip\t")
        fred = store.session("fred")
        await fred.append("user.hansen.shared", [message(2)])
        await store.deliver("hansen", [message(3)], folder="shared")
        assert (await fred.status("user.hansen.shared")).messages == 3

    run(main())


# -- the ACL commands --


def test_setacl_modifiers_obsolete_letters_and_negative_identifiers(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "")
        hansen = store.session("hansen")
        name = "INBOX.shared"
        await hansen.set_acl(name, "fred", "lrs")
        await hansen.set_acl(name, "fred", "+wcd")  # c = k x, d = t e (RFC 4314 §2.1.1)
        await hansen.set_acl(name, "-fred", "s")
        assert dict(await hansen.get_acl(name))["fred"] == frozenset("lrswkxte")
        await hansen.set_acl(name, "fred", "-c")
        entries = dict(await hansen.get_acl(name))
        assert entries["fred"] == frozenset("lrswte") and entries["-fred"] == frozenset("s")
        assert wire_rights(entries["fred"]) == "lrswted"  # d answered back, c no longer
        assert await store.session("fred").my_rights("user.hansen.shared") == frozenset("lrwte")
        await hansen.set_acl(name, "fred", "")  # no rights left: the entry goes
        await hansen.delete_acl(name, "-fred")
        await hansen.delete_acl(name, "nobody")  # no entry: no error (RFC 4314 §3.2)
        assert [i for i, _ in await hansen.get_acl(name)] == ["hansen"]
        with pytest.raises(UnknownRight):
            await hansen.set_acl(name, "fred", "lrq")
        with pytest.raises(UnknownRight):  # before any rights check: BAD, as RFC 4314 §3.1
            await store.session("fred").set_acl("user.hansen.shared", "fred", "+z")
        for bad in ("", "-", "group:", "two words", "x" * 300):
            with pytest.raises(BadIdentifier):
                await hansen.set_acl(name, bad, "lr")

    run(main())


def test_acl_commands_need_a_myrights_needs_any_right(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "fred\tlr\tcarol\tr\tdave\tp\t")
        name = "user.hansen.shared"
        fred = store.session("fred")
        assert await fred.my_rights(name) == frozenset("lr")
        for attempt in (
            fred.get_acl(name),
            fred.set_acl(name, "fred", "+w"),
            fred.delete_acl(name, "fred"),
            fred.list_rights(name, "fred"),
        ):
            with pytest.raises(NotPermitted):
                await attempt
        with pytest.raises(MailboxNotFound):  # p is not among "any" (l r i k x a)
            await store.session("dave").my_rights(name)
        with pytest.raises(MailboxNotFound):  # no l: as missing, even to the ACL commands
            await store.session("carol").get_acl(name)
        with pytest.raises(MailboxNotFound):
            await store.session("erin").my_rights(name)
        await store.backend.set_acl(name, "hansen\tlrswipkxtea\tfred\tla\t")
        await fred.set_acl(name, "erin", "lrs")  # a delegates administration
        assert await store.session("erin").my_rights(name) == frozenset("lrs")
        # admins hold l and a everywhere (chapter 12.5.7)
        assert "erin" in dict(await store.session("cyrus").get_acl(name))

    run(main())


def test_listrights_answers_as_cyrus_does(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "")
        hansen = store.session("hansen")
        assert await hansen.list_rights("INBOX", "hansen") == frozenset("la")
        assert await hansen.list_rights("INBOX", "fred") == frozenset("p")  # anyone may post
        assert await hansen.list_rights("INBOX.shared", "fred") == frozenset()
        assert await hansen.list_rights("INBOX.shared", "cyrus") == frozenset("la")
        required, optional = listed_rights(frozenset("la"))
        assert (required, " ".join(optional)) == ("la", "r s w i p k x t e c d 0 1 2 3 4 5 6 7 8 9")
        required, optional = listed_rights(frozenset("p"))
        assert (required, " ".join(optional)) == (
            "p",
            "l r s w i k x t e c d a 0 1 2 3 4 5 6 7 8 9",
        )
        assert listed_rights(frozenset())[0] == ""

    run(main())


def test_an_acl_has_a_limit_on_its_entries() -> None:
    acl = Acl(tuple((f"user{n}", frozenset("l")) for n in range(MAX_ENTRIES)))
    with pytest.raises(TooManyEntries):
        acl.with_entry("one.more", frozenset("l"))
    assert acl.with_entry("user0", frozenset("lr")).rights_of("user0") == frozenset("lr")


def test_a_hidden_mailbox_answers_every_command_as_a_missing_one(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "")
        fred = store.session("fred")
        for name in ("user.hansen.shared", "user.hansen.missing"):
            errors = []
            for attempt in (
                fred.select(name),
                fred.status(name),
                fred.append(name, [message(2)]),
                fred.delete(name),
                fred.rename(name, "user.hansen.other"),
                fred.get_acl(name),
                fred.my_rights(name),
                fred.list_rights(name, "fred"),
                fred.set_acl(name, "fred", "lr"),
                fred.delete_acl(name, "fred"),
            ):
                with pytest.raises(MailboxNotFound) as info:
                    await attempt
                errors.append(str(info.value))
            assert errors == [f"mailbox {name} does not exist"] * len(errors)

    run(main())


# -- groups --


def test_groups_from_posthouse_s_table_and_from_the_system(tmp_path: Path) -> None:
    table = tmp_path / "groups"
    table.write_text("# staff\nstaff: fred, erin\ninterns: erin\nthis line is wrong\n")
    now = [0.0]
    groups = GroupDirectory(table, ttl=10.0, clock=lambda: now[0])
    assert {"staff", "interns"} <= groups("erin")
    assert "staff" in groups("fred") and "interns" not in groups("fred")
    # a system account's primary group, and the groups listing it as a member
    daemon = pwd.getpwnam("daemon")
    assert grp.getgrgid(daemon.pw_gid).gr_name in groups("daemon")
    member_of = [(g.gr_name, g.gr_mem[0]) for g in grp.getgrall() if g.gr_mem]
    for group, member in member_of[:1]:
        assert group in groups(member)
    table.write_text("staff: erin\n")
    assert "staff" in groups("fred")  # within ttl: what was read stays
    now[0] = 11.0
    assert "staff" not in groups("fred") and "staff" in groups("erin")

    store = MailStore(
        FsBackend(layout(tmp_path)), access=CyrusAccess(groups=GroupDirectory(table, ttl=0))
    )

    async def main() -> None:
        await shared_folder(store, "group:staff\tlrs\t-group:interns\ts\t")
        table.write_text("staff: fred erin\ninterns: erin\n")
        assert await store.session("fred").my_rights("user.hansen.shared") == frozenset("lrs")
        assert await store.session("erin").my_rights("user.hansen.shared") == frozenset("lr")
        system = grp.getgrgid(pwd.getpwnam("daemon").pw_gid).gr_name
        await store.backend.set_acl("user.hansen.shared", f"group:{system}\tlr\t")
        assert await store.session("daemon").my_rights("user.hansen.shared") == frozenset("lr")
        with pytest.raises(MailboxNotFound):
            await store.session("fred").my_rights("user.hansen.shared")

    run(main())


@pytest.mark.parametrize(
    ("rights", "kept"),
    [
        ("lri", set()),
        ("lriw", {"\\Flagged", "$Label"}),
        ("lrist", {"\\Seen", "\\Deleted"}),
    ],
)
def test_appended_and_copied_messages_keep_only_the_flags_the_user_may_set(
    store: MailStore, rights: str, kept: set[str]
) -> None:
    async def main() -> None:
        await shared_folder(store, f"fred\t{rights}\t")
        await store.create_user("fred")
        fred = store.session("fred")
        every = frozenset({"\\Flagged", "\\Seen", "\\Deleted", "$Label"})
        await fred.append("INBOX", [NewMessage(message(2).content, WHEN, every)])
        await fred.append("user.hansen.shared", [NewMessage(message(3).content, WHEN, every)])
        inbox = await fred.select("INBOX")
        await fred.copy(inbox, UidSet.of(inbox.snapshot.uids), "user.hansen.shared")
        owner = store.session("hansen")
        opened = await owner.select("INBOX.shared", read_only=True)
        added = UidSet.of(opened.snapshot.uids[1:])  # the appended one, the copied one
        for meta in await owner.fetch(opened, added):  # fred never sets hansen's \Seen
            assert set(meta.flags) == kept - {"\\Seen"}, meta
        for meta in await fred.fetch(await fred.select("user.hansen.shared"), added):
            assert set(meta.flags) == kept, meta

    run(main())


def test_subscriptions_show_a_hidden_mailbox_as_a_name_that_does_not_exist(
    store: MailStore,
) -> None:
    async def main() -> None:
        await shared_folder(store, "")
        fred = store.session("fred")
        await fred.subscribe("user.hansen.shared")  # exists, fred may not see it
        await fred.subscribe("user.hansen.nothing")  # does not exist
        lsub = {i.name: i.attributes for i in await fred.list_subscribed("", "user.hansen.*")}
        assert lsub == {"user.hansen.shared": frozenset(), "user.hansen.nothing": frozenset()}
        assert await fred.list_mailboxes("", "user.hansen.*") == []

    run(main())


def test_defaultacl_is_written_as_imapd_conf_writes_it_and_checked(tmp_path: Path) -> None:
    from posthouse.app import mail_store_for
    from posthouse.config.load import ConfigError, load_settings

    config = tmp_path / "posthouse.toml"
    data = tmp_path / "data"
    config.write_text(f'[server]\ndata_dir = "{data}"\n\n[imap]\nadmins = "cyrus"\n')
    store = mail_store_for(load_settings(config))

    async def main() -> None:
        cyrus = store.session("cyrus")
        await cyrus.create("news")
        assert dict(await cyrus.get_acl("news")) == {"anyone": frozenset("lrs")}
        await store.backend.close()

    run(main())
    config.write_text(
        f'[server]\ndata_dir = "{data}"\n\n[imap]\nadmins = "cyrus"\ndefaultacl = "anyone"\n'
    )
    with pytest.raises(ConfigError, match=r"posthouse.toml:6.*pairs of an identifier"):
        mail_store_for(load_settings(config))


def test_concurrent_acl_changes_are_none_of_them_lost(store: MailStore) -> None:
    async def main() -> None:
        await shared_folder(store, "")
        hansen = store.session("hansen")
        users = [f"user{n}" for n in range(20)]
        await asyncio.gather(*(hansen.set_acl("INBOX.shared", u, "lr") for u in users))
        assert {i for i, _ in await hansen.get_acl("INBOX.shared")} == {"hansen", *users}
        await asyncio.gather(*(hansen.set_acl("INBOX.shared", u, "+s") for u in users[:10]))
        await asyncio.gather(*(hansen.delete_acl("INBOX.shared", u) for u in users[10:]))
        entries = dict(await hansen.get_acl("INBOX.shared"))
        assert entries == {"hansen": frozenset("lrswipkxtea")} | {
            u: frozenset("lrs") for u in users[:10]
        }

    run(main())
