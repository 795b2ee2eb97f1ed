"""Mailbox names, the user's view (chapter 12.5.6), modified UTF-7, UID sets, ACL rights and
LIST patterns: the pure logic under the IMAP store."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.store.acl import Acl, AclError, parse_rights, rights_for
from posthouse.store.errors import StoreError
from posthouse.store.names import (
    MAX_LEVEL_LENGTH,
    MAX_NAME_LENGTH,
    InvalidName,
    NoInbox,
    UserView,
    check_name,
    owner_of,
    resolve_relative,
)
from posthouse.store.patterns import compile_pattern, listing
from posthouse.store.uidset import UidSet

# -- the chapter's namespace examples (12.5.6) --


def test_hansen_sees_his_personal_mailboxes_under_inbox() -> None:
    hansen = UserView("hansen")
    assert hansen.to_internal("INBOX") == "user.hansen"
    assert hansen.to_internal("INBOX.work") == "user.hansen.work"
    assert hansen.to_visible("user.hansen") == "INBOX"
    assert hansen.to_visible("user.hansen.work") == "INBOX.work"


def test_others_see_hansen_s_mailbox_by_its_full_name() -> None:
    fred = UserView("fred")
    assert fred.to_visible("user.hansen.work") == "user.hansen.work"
    assert fred.to_internal("user.hansen.work") == "user.hansen.work"
    assert fred.to_internal("INBOX") == "user.fred"
    assert owner_of("user.hansen.work") == "hansen"
    assert owner_of("shared.news") is None


def test_inbox_is_case_insensitive() -> None:
    view = UserView("hansen")
    assert view.to_internal("inbox") == "user.hansen"
    assert view.to_internal("InBoX.work") == "user.hansen.work"


def test_users_with_dots_log_in_but_have_no_inbox() -> None:
    view = UserView("j.smith")
    assert not view.has_inbox
    with pytest.raises(NoInbox):
        view.to_internal("INBOX")
    assert view.to_internal("shared.news") == "shared.news"
    # user.j.smith would be user "j"'s folder "smith": never shown as this user's INBOX
    assert view.to_visible("user.j.smith") == "user.j.smith"


def test_relative_names_resolve_as_the_chapter_says() -> None:
    top = "user.hansen"
    assert resolve_relative(".work.personnel.issues", top) == "user.hansen.work.personnel.issues"
    assert resolve_relative("work.personnel.issues", top) == "work.personnel.issues"


# -- validation --


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a..b",
        ".a",
        "a.",
        "a/b",
        "../etc",
        "a\x00b",
        "a%",
        "a*b",
        "a\nb",
        "x" * (MAX_NAME_LENGTH + 1),
        "a." + "y" * (MAX_LEVEL_LENGTH + 1),
        "INBOX.x",  # the store never holds the view-only name
    ],
)
def test_bad_names_are_refused_with_a_reason(name: str) -> None:
    with pytest.raises(InvalidName) as info:
        check_name(name)
    assert str(info.value)


@pytest.mark.parametrize("visible", ["INBOX..x", "INBOX.", "INBOX./x", "INBOX.%"])
def test_bad_names_under_inbox_are_refused(visible: str) -> None:
    with pytest.raises(InvalidName):
        UserView("hansen").to_internal(visible)


def test_good_names_pass() -> None:
    for name in ("user.hansen.work", "shared.news", "Ünïcode.名前", "a b.c-d"):
        assert check_name(name) == name


# -- UID sets --


def test_uid_set_text_form() -> None:
    uids = UidSet.parse("7,1:5,9:12,6")
    assert str(uids) == "1:7,9:12"
    assert 7 in uids and 8 not in uids and 12 in uids
    assert len(uids) == 11
    with pytest.raises(ValueError):
        UidSet.parse("0:3")
    with pytest.raises(ValueError):
        UidSet.parse("1,,2")
    with pytest.raises(ValueError):
        UidSet.parse("4294967296")


small_sets = st.frozensets(st.integers(1, 200), max_size=60)


@given(small_sets, small_sets)
def test_uid_set_operations_agree_with_python_sets(a: frozenset[int], b: frozenset[int]) -> None:
    x, y = UidSet.of(a), UidSet.of(b)
    assert set(x.union(y)) == a | b
    assert set(x.difference(y)) == a - b
    assert set(x.intersection(y)) == a & b
    assert UidSet.parse(str(x)) == x
    assert all((n in x) == (n in a) for n in range(0, 202))


# -- rights (chapter 12.5.7) --


def test_fred_and_anonymous_rights_from_the_chapter_s_acl() -> None:
    acl = Acl.parse("anyone\tlrsp\tfred\tlwi\t-anonymous\ts\t")
    assert rights_for(acl, "fred") == frozenset("lrswip")
    assert rights_for(acl, "anonymous") == frozenset("lrp")


def test_obsolete_rights_letters_expand_as_rfc_4314_says() -> None:
    assert parse_rights("c") == frozenset("kx")
    assert parse_rights("d") == frozenset("te")
    with pytest.raises(AclError):
        parse_rights("z")


def test_group_rights_and_negative_group_rights() -> None:
    acl = Acl.parse("group:staff\tlr\t-group:interns\tr\t")
    assert rights_for(acl, "ann", ["staff"]) == frozenset("lr")
    assert rights_for(acl, "ian", ["staff", "interns"]) == frozenset("l")
    assert rights_for(acl, "bob") == frozenset()


# -- LIST patterns --


def test_star_and_percent() -> None:
    names = ["INBOX", "INBOX.a", "INBOX.a.b", "shared.news"]
    assert [m.name for m in listing("*", names)] == sorted(names)
    assert [m.name for m in listing("%", names)] == ["INBOX", "shared"]
    # a level that is no mailbox itself is listed as \Noselect (RFC 3501 §6.3.8)
    assert [(m.name, m.exists) for m in listing("shar%", names)] == [("shared", False)]
    assert [(m.name, m.exists) for m in listing("shared.%", names)] == [("shared.news", True)]
    assert [(m.name, m.exists) for m in listing("sh*", names)] == [("shared.news", True)]
    assert [m.name for m in listing("INBOX.%", names)] == ["INBOX.a"]
    assert [m.name for m in listing("inbox*", names)] == ["INBOX", "INBOX.a", "INBOX.a.b"]
    assert listing("INBOX", names)[0].has_children


def test_patterns_are_bounded() -> None:
    with pytest.raises(StoreError, match="at most 20 wildcards"):
        compile_pattern("*" * 50)
    with pytest.raises(StoreError, match="at most 1024 characters"):
        compile_pattern("a" * 1025)


LEVEL = st.text(
    alphabet=st.characters(blacklist_characters="./%*", blacklist_categories=["Cc", "Cs"]),
    min_size=1,
    max_size=12,
)


@given(st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True), st.lists(LEVEL, max_size=4))
def test_an_owner_s_names_round_trip_through_the_view(user: str, levels: list[str]) -> None:
    if levels and levels[0].upper() == "INBOX":
        levels = ["x", *levels]
    internal = ".".join(["user", user, *levels])
    view = UserView(user)
    visible = view.to_visible(internal)
    assert visible.startswith("INBOX")
    assert view.to_internal(visible) == internal
    other = UserView(user + "x")
    assert other.to_visible(internal) == internal
    assert other.to_internal(internal) == internal
