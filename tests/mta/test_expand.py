"""Tests for posthouse.mta.expand: sendmail-style recipient expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from posthouse.mta.aliases import parse_aliases
from posthouse.mta.destinations import (
    FileDestination,
    LocalMailbox,
    ProgramDestination,
    RemoteAddress,
)
from posthouse.mta.expand import Delivery, Expander, Expansion, ExpansionError
from tests.mta.file_sources import NO_FILES, TextFiles

LOCAL_DOMAINS = {"example.com", "mail.example.com", "localhost"}


class World:
    """A fake system: aliases text, users, home directories and files."""

    def __init__(
        self,
        aliases: str = "",
        users: set[str] | None = None,
        files: dict[str, str] | None = None,
        forwards: dict[str, str] | None = None,
    ) -> None:
        self.aliases = parse_aliases(aliases, "/etc/aliases")
        self.users = users if users is not None else {"alice", "bob", "carol", "root"}
        self.files = dict(files or {})
        for user, text in (forwards or {}).items():
            self.files[f"/home/{user}/.forward"] = text
        self.reads: list[Path] = []

    def lookup_alias(self, name: str) -> tuple[str, ...] | None:
        return self.aliases.get(name.lower())

    def read(self, path: Path) -> str:
        self.reads.append(path)
        try:
            return self.files[str(path)]
        except KeyError:
            raise FileNotFoundError(str(path)) from None

    def expander(self, **kwargs: object) -> Expander:
        return Expander(
            lookup_alias=self.lookup_alias,
            is_local_domain=lambda d: d in LOCAL_DOMAINS,
            user_exists=lambda u: u in self.users,
            files=TextFiles(self.read, lambda u: Path(f"/home/{u}/.forward")),
            **kwargs,  # type: ignore[arg-type]
        )

    def expand(self, address: str, **kwargs: object) -> Expansion:
        return self.expander(**kwargs).expand(address)


def destinations(result: Expansion) -> list[object]:
    return [d.destination for d in result.deliveries]


def test_existing_local_user() -> None:
    result = World().expand("alice")
    assert result == Expansion((Delivery(LocalMailbox("alice"), None),), ())


def test_local_user_in_local_domain_case_insensitive() -> None:
    result = World().expand("<Alice@Mail.Example.COM>")
    assert destinations(result) == [LocalMailbox("alice")]
    assert result.errors == ()


def test_unknown_user() -> None:
    result = World().expand("nobody@example.com")
    assert result.deliveries == ()
    assert result.errors == (ExpansionError("nobody@example.com", "User unknown", True),)


def test_remote_address_keeps_local_part_and_lowers_domain() -> None:
    result = World().expand("Some.User@Other.ORG")
    assert destinations(result) == [RemoteAddress("Some.User@other.org")]


def test_alias_is_case_insensitive_and_expands() -> None:
    world = World("Staff: alice, Bob@Example.com, carol@elsewhere.net\n")
    result = world.expand("STAFF@example.com")
    assert destinations(result) == [
        LocalMailbox("alice"),
        LocalMailbox("bob"),
        RemoteAddress("carol@elsewhere.net"),
    ]
    assert result.errors == ()


def test_chapter_12_1_3_deliver_to_clients() -> None:
    world = World("username1: username1@client1\nusername2: username2@client1\n", users=set())
    result = world.expand("username1@example.com")
    assert destinations(result) == [RemoteAddress("username1@client1")]


def test_postmaster_and_owner_names_are_plain_aliases() -> None:
    world = World("postmaster: root\nowner-staff: alice\n")
    assert destinations(world.expand("PostMaster")) == [LocalMailbox("root")]
    assert destinations(world.expand("owner-staff")) == [LocalMailbox("alice")]


def test_program_and_file_destinations_carry_the_alias() -> None:
    world = World('archive: "|/usr/bin/archiver --box a,b", /var/mail/archive, alice\n')
    result = world.expand("archive")
    assert destinations(result) == [
        ProgramDestination("/usr/bin/archiver --box a,b", "archive"),
        FileDestination("/var/mail/archive", "archive"),
        LocalMailbox("alice"),
    ]


@pytest.mark.parametrize(
    "address",
    [
        "|/bin/sh -c evil",
        "/etc/passwd",
        ":include:/etc/mail/list",
        '"|/bin/sh"@example.com',
        '"/etc/passwd"@localhost',
    ],
)
def test_envelope_recipient_cannot_name_programs_files_or_includes(address: str) -> None:
    world = World(files={"/etc/mail/list": "alice\n"})
    result = world.expand(address)
    assert result.deliveries == ()
    assert len(result.errors) == 1
    assert result.errors[0].permanent
    assert world.reads == []


def test_backslash_user_is_the_mailbox_without_aliasing() -> None:
    world = World("alice: bob\nboth: \\alice, alice\n", forwards={"alice": "carol@x.org\n"})
    assert destinations(world.expand("both")) == [LocalMailbox("alice"), LocalMailbox("bob")]
    assert destinations(world.expand("\\alice")) == [LocalMailbox("alice")]
    assert Path("/home/alice/.forward") not in world.reads  # \alice skips alice's .forward


def test_backslash_unknown_user() -> None:
    result = World("x: \\ghost\n").expand("x")
    assert result.errors == (ExpansionError("\\ghost", "User unknown", True),)


def test_alias_expanding_to_itself_is_the_mailbox() -> None:
    world = World("alice: alice, alice@other.org\n")
    assert destinations(world.expand("alice")) == [
        LocalMailbox("alice"),
        RemoteAddress("alice@other.org"),
    ]


def test_self_alias_without_such_user_is_a_loop() -> None:
    world = World("a: a\n")
    result = world.expand("a")
    assert result.deliveries == ()
    assert result.errors == (ExpansionError("a", "alias loop: a -> a", True),)


def test_loop_a_b_a_is_reported_and_rest_still_delivers() -> None:
    world = World("a: b, alice\nb: a, bob\n")
    result = world.expand("a@example.com")
    assert destinations(result) == [LocalMailbox("bob"), LocalMailbox("alice")]
    assert result.errors == (ExpansionError("a", "alias loop: a -> b -> a", True),)


def test_loop_through_local_domain_spelling() -> None:
    world = World("a: b@example.com\nb: A@localhost\n", users={"a", "b"})
    result = world.expand("a")
    assert result.deliveries == ()
    assert result.errors[0].message == "alias loop: a -> b -> a"


def test_depth_limit() -> None:
    chain = "".join(f"l{i}: l{i + 1}\n" for i in range(10)) + "l10: alice\n"
    world = World(chain)
    deep = world.expand("l0", max_depth=5)
    assert deep.deliveries == ()
    assert len(deep.errors) == 1
    assert deep.errors[0].permanent
    assert "nested too deeply" in deep.errors[0].message
    # Exactly max_depth levels of aliasing is fine.
    assert destinations(world.expand("l6", max_depth=5)) == [LocalMailbox("alice")]
    assert world.expand("l5", max_depth=5).errors != ()
    assert destinations(world.expand("l0")) == [LocalMailbox("alice")]  # default 20


def test_duplicates_are_delivered_once() -> None:
    world = World(
        "all: staff, alice, ALICE@example.com, x@remote.org, x@Remote.Org, team\n"
        "staff: alice, bob\n"
        "team: bob, x@remote.org\n"
    )
    result = world.expand("all")
    assert destinations(result) == [
        LocalMailbox("alice"),
        LocalMailbox("bob"),
        RemoteAddress("x@remote.org"),
    ]


def test_same_program_from_different_aliases_is_kept_per_alias() -> None:
    world = World('a: "|/bin/vacation", b\nb: "|/bin/vacation"\n')
    assert destinations(world.expand("a")) == [
        ProgramDestination("/bin/vacation", "a"),
        ProgramDestination("/bin/vacation", "b"),
    ]


def test_include_file() -> None:
    world = World(
        "list: :include:/etc/mail/list.members, carol\n",
        files={"/etc/mail/list.members": '# members\nalice, bob@remote.org\n"|/bin/log list"\n'},
    )
    result = world.expand("list")
    assert destinations(result) == [
        LocalMailbox("alice"),
        RemoteAddress("bob@remote.org"),
        ProgramDestination("/bin/log list", "list"),
        LocalMailbox("carol"),
    ]
    assert [p for p in world.reads if p.name != ".forward"] == [Path("/etc/mail/list.members")]


def test_include_file_is_read_at_expansion_time() -> None:
    world = World("list: :include:/lists/l\n", files={"/lists/l": "alice\n"})
    expander = world.expander()
    assert destinations(expander.expand("list")) == [LocalMailbox("alice")]
    world.files["/lists/l"] = "bob\n"
    assert destinations(expander.expand("list")) == [LocalMailbox("bob")]


def test_nested_includes() -> None:
    world = World(
        "outer: :include:/l/one\n",
        files={"/l/one": "alice\n:include:/l/two\n", "/l/two": "bob, sub\n"},
    )
    world.aliases["sub"] = ("carol",)
    assert destinations(world.expand("outer")) == [
        LocalMailbox("alice"),
        LocalMailbox("bob"),
        LocalMailbox("carol"),
    ]


def test_missing_include_is_temporary_and_rest_delivers() -> None:
    world = World("list: :include:/l/missing, alice\n")
    result = world.expand("list")
    assert destinations(result) == [LocalMailbox("alice")]
    assert len(result.errors) == 1
    error = result.errors[0]
    assert error.address == ":include:/l/missing"
    assert not error.permanent
    assert "/l/missing" in error.message


def test_include_loop() -> None:
    world = World(
        "list: :include:/l/a\n",
        files={"/l/a": "alice, :include:/l/b\n", "/l/b": "bob, :include:/l/a\n"},
    )
    result = world.expand("list")
    assert destinations(result) == [LocalMailbox("alice"), LocalMailbox("bob")]
    assert result.errors == (
        ExpansionError(
            ":include:/l/a", "alias loop: :include:/l/a -> :include:/l/b -> :include:/l/a", True
        ),
    )


def test_include_with_relative_path_is_refused() -> None:
    result = World("list: :include:relative/file\n").expand("list")
    assert result.errors[0].permanent
    assert "absolute" in result.errors[0].message


def test_include_syntax_error_is_temporary() -> None:
    world = World("list: :include:/l/bad, bob\n", files={"/l/bad": 'alice\n"oops\n'})
    result = world.expand("list")
    assert destinations(result) == [LocalMailbox("bob")]
    assert not result.errors[0].permanent
    assert "/l/bad:2:" in result.errors[0].message


def test_self_reference_inside_include_file() -> None:
    world = World("alice: :include:/l/a\n", files={"/l/a": "alice, bob\n"})
    assert destinations(world.expand("alice")) == [LocalMailbox("alice"), LocalMailbox("bob")]


def test_include_with_real_files(tmp_path: Path) -> None:
    members = tmp_path / "members"
    members.write_text("alice\n# bob is away\ncarol\n", encoding="utf-8")
    expander = Expander(
        lookup_alias=lambda n: (f":include:{members}",) if n == "list" else None,
        is_local_domain=lambda d: d == "example.com",
        user_exists=lambda u: u in {"alice", "carol"},
        files=NO_FILES,
    )
    result = expander.expand("list@example.com")
    assert destinations(result) == [LocalMailbox("alice"), LocalMailbox("carol")]
    members.unlink()
    assert not expander.expand("list@example.com").errors[0].permanent


def test_owner_list_becomes_the_envelope_sender() -> None:
    world = World(
        "staff: alice, bob@remote.org\nowner-staff: root\nplain: carol\n",
    )
    staff = world.expand("staff@Example.COM")
    assert {d.sender for d in staff.deliveries} == {"owner-staff@example.com"}
    assert destinations(staff) == [LocalMailbox("alice"), RemoteAddress("bob@remote.org")]
    plain = world.expand("plain@example.com")
    assert [d.sender for d in plain.deliveries] == [None]
    direct = world.expand("alice")
    assert [d.sender for d in direct.deliveries] == [None]


def test_owner_of_nested_lists() -> None:
    world = World(
        "outer: alice, inner\nowner-outer: root\ninner: bob\nowner-inner: carol\n"
        "noowner: bob\nwrap: noowner\nowner-wrap: root\n"
    )
    result = world.expand("outer@mail.example.com")
    assert result.deliveries == (
        Delivery(LocalMailbox("alice"), "owner-outer@mail.example.com"),
        Delivery(LocalMailbox("bob"), "owner-inner@mail.example.com"),
    )
    # A nested list without its own owner keeps the outer owner.
    wrapped = world.expand("wrap@example.com")
    assert wrapped.deliveries == (Delivery(LocalMailbox("bob"), "owner-wrap@example.com"),)


def test_owner_sender_for_unqualified_address() -> None:
    world = World("staff: alice\nowner-staff: root\n")
    assert world.expand("staff").deliveries[0].sender == "owner-staff"
    qualified = world.expand("staff", default_domain="Example.com")
    assert qualified.deliveries[0].sender == "owner-staff@example.com"


def test_forward_file_to_remote_and_self() -> None:
    world = World(forwards={"alice": "# keep a copy\n\\alice, alice@home.example.net\n"})
    result = world.expand("alice@example.com")
    assert destinations(result) == [
        LocalMailbox("alice"),
        RemoteAddress("alice@home.example.net"),
    ]
    assert world.reads == [Path("/home/alice/.forward")]


def test_forward_self_name_without_backslash_is_the_mailbox() -> None:
    world = World(forwards={"bob": "Bob, carol\n"})
    assert destinations(world.expand("bob")) == [LocalMailbox("bob"), LocalMailbox("carol")]


def test_forward_program_runs_as_the_user() -> None:
    world = World(forwards={"bob": '"|/usr/bin/vacation bob"\n'})
    assert destinations(world.expand("bob")) == [
        ProgramDestination("/usr/bin/vacation bob", "bob", run_as="bob")
    ]


def test_missing_or_empty_forward_means_mailbox() -> None:
    world = World(forwards={"carol": "# nothing\n"})
    assert destinations(world.expand("alice")) == [LocalMailbox("alice")]
    assert destinations(world.expand("carol")) == [LocalMailbox("carol")]


def test_no_forward_file_configured() -> None:
    reads: list[Path] = []

    def reader(path: Path) -> str:
        reads.append(path)
        return ""

    expander = Expander(
        lookup_alias=lambda n: None,
        is_local_domain=lambda d: True,
        user_exists=lambda u: True,
        files=TextFiles(reader),
    )
    assert destinations(expander.expand("anyone")) == [LocalMailbox("anyone")]
    assert reads == []


def test_unreadable_forward_is_temporary() -> None:
    def reader(path: Path) -> str:
        raise OSError(5, "Input/output error")

    expander = Expander(
        lookup_alias=lambda n: None,
        is_local_domain=lambda d: True,
        user_exists=lambda u: True,
        files=TextFiles(reader, lambda u: Path(f"/home/{u}/.forward")),
    )
    result = expander.expand("alice")
    assert result.deliveries == ()
    assert not result.errors[0].permanent


def test_forward_loop_between_users() -> None:
    world = World(forwards={"alice": "bob\n", "bob": "alice\n"})
    result = world.expand("alice")
    assert result.deliveries == ()
    assert result.errors == (ExpansionError("alice", "alias loop: alice -> bob -> alice", True),)


def test_alias_to_user_with_forward() -> None:
    world = World("help: alice\n", forwards={"alice": "carol@else.where\n"})
    assert destinations(world.expand("help")) == [RemoteAddress("carol@else.where")]


def test_errors_are_not_duplicated() -> None:
    world = World("x: ghost, ghost, y\ny: ghost\n")
    result = world.expand("x")
    assert result.errors == (ExpansionError("ghost", "User unknown", True),)


def test_empty_address() -> None:
    result = World().expand("<>")
    assert result.deliveries == ()
    assert result.errors[0].permanent


def test_is_deliverable_reads_nothing() -> None:
    world = World(
        "list: :include:/l/missing\nghostlist: ghost\n",
        forwards={"alice": "|/bin/false\n"},
    )
    expander = world.expander()
    assert expander.is_deliverable("list@example.com")
    assert expander.is_deliverable("ghostlist")
    assert expander.is_deliverable("<Alice@Example.com>")
    assert expander.is_deliverable("\\bob")
    assert expander.is_deliverable("anyone@remote.org")
    assert not expander.is_deliverable("ghost@example.com")
    assert not expander.is_deliverable("\\list")
    assert not expander.is_deliverable("<>")
    assert not expander.is_deliverable("|/bin/sh")
    assert not expander.is_deliverable("/etc/passwd")
    assert not expander.is_deliverable(":include:/l/missing")
    assert not expander.is_deliverable('"|/bin/sh"@example.com')
    assert not expander.is_deliverable("@remote.org")
    assert world.reads == []


# -- forwarding = local (12.2.3.2): unknown users go to the relay ----------------------------


def test_with_forwarding_local_an_unknown_user_goes_to_the_relay() -> None:
    world = World(aliases="staff: alice, nobody-here\n")
    expander = world.expander(relay_unknown_to="big.com")
    assert destinations(expander.expand("zoe")) == [RemoteAddress("zoe@big.com")]
    assert destinations(expander.expand("\\zoe")) == [RemoteAddress("zoe@big.com")]
    assert destinations(expander.expand("staff")) == [
        LocalMailbox("alice"),
        RemoteAddress("nobody-here@big.com"),
    ]
    assert expander.is_deliverable("zoe@mail.example.com")
    assert not expander.is_deliverable('"|cmd"@mail.example.com')


def test_without_forwarding_local_an_unknown_user_is_refused() -> None:
    expander = World().expander()
    assert expander.expand("zoe").errors[0].message == "User unknown"
    assert not expander.is_deliverable("zoe@mail.example.com")
