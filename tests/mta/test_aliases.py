"""Tests for posthouse.mta.aliases: the aliases(5) text format."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.mta.aliases import AliasSyntaxError, parse_address_list, parse_aliases


def parse(text: str) -> dict[str, tuple[str, ...]]:
    return parse_aliases(textwrap.dedent(text), "/etc/aliases")


def syntax_error(text: str) -> AliasSyntaxError:
    with pytest.raises(AliasSyntaxError) as info:
        parse(text)
    return info.value


def test_simple_entries_and_case_insensitive_names() -> None:
    result = parse(
        """\
        Postmaster: root
        Staff: alice, Bob,carol
        """
    )
    assert result == {"postmaster": ("root",), "staff": ("alice", "Bob", "carol")}


def test_chapter_12_1_3_client_delivery_example() -> None:
    result = parse(
        """\
        username1: username1@client1
        username2: username2@client1
        """
    )
    assert result == {
        "username1": ("username1@client1",),
        "username2": ("username2@client1",),
    }


def test_continuation_lines_with_spaces_and_tabs() -> None:
    text = "team: alice,\n    bob,\n\tcarol\n  dave, eve,\nother: x\n"
    assert parse_aliases(text, "a") == {
        "team": ("alice", "bob", "carol", "dave", "eve"),
        "other": ("x",),
    }


def test_comments_and_blank_lines() -> None:
    result = parse(
        """\
        # The system aliases.
        root: admin

           # indented comment lines are comments too
        list: a,
        # a comment inside a continued alias is skipped
            b
        """
    )
    assert result == {"root": ("admin",), "list": ("a", "b")}


def test_hash_inside_an_entry_is_not_a_comment() -> None:
    assert parse('prog: "|/bin/echo #1"\n') == {"prog": ("|/bin/echo #1",)}


def test_every_destination_kind() -> None:
    result = parse(
        """\
        kinds: user, \\self, user@other.host, :include:/etc/mail/list,
            "|/usr/bin/prog arg", /var/log/mail.archive, :include: /etc/spaced
        """
    )
    assert result["kinds"] == (
        "user",
        "\\self",
        "user@other.host",
        ":include:/etc/mail/list",
        "|/usr/bin/prog arg",
        "/var/log/mail.archive",
        ":include:/etc/spaced",
    )


def test_quoted_entries_keep_commas() -> None:
    result = parse(
        """\
        filter: "|/usr/bin/filter --tags a,b,c", "/var/mail/a, b", other
        """
    )
    assert result["filter"] == ("|/usr/bin/filter --tags a,b,c", "/var/mail/a, b", "other")


def test_quoted_local_part_stays_quoted() -> None:
    assert parse('x: "john, doe"@example.com\n') == {"x": ('"john, doe"@example.com',)}


def test_escaped_quote_inside_quotes() -> None:
    assert parse('x: "|/bin/say \\"hi, there\\""\n') == {"x": ('|/bin/say "hi, there"',)}


def test_unquoted_program_may_contain_spaces() -> None:
    assert parse("x: |/usr/bin/prog -v\n") == {"x": ("|/usr/bin/prog -v",)}


def test_display_name_and_angle_brackets() -> None:
    assert parse("x: Alice Example <alice@example.com>, <bob>\n") == {
        "x": ("alice@example.com", "bob")
    }


def test_empty_items_and_trailing_commas_are_ignored() -> None:
    assert parse("x: a,, b,\n") == {"x": ("a", "b")}


def test_include_prefix_is_case_insensitive() -> None:
    assert parse("x: :INCLUDE:/a/b\n") == {"x": (":include:/a/b",)}


def test_error_string_format() -> None:
    err = syntax_error(
        """\
        ok: a
        broken line
        """
    )
    assert (err.path, err.line) == ("/etc/aliases", 2)
    assert err.message == "missing ':' after alias name"
    assert str(err) == "/etc/aliases:2: missing ':' after alias name"


def test_empty_name() -> None:
    err = syntax_error("a: b\n\n: c\n")
    assert err.line == 3
    assert "empty alias name" in err.message


def test_empty_list() -> None:
    err = syntax_error("a: b\n# c\nempty:\nd: e\n")
    assert err.line == 3
    assert "no destinations" in err.message


def test_empty_list_with_only_commas_and_blank_continuation() -> None:
    err = syntax_error("a: ,\n")
    assert err.line == 1


def test_duplicate_name_reports_both_lines() -> None:
    err = syntax_error("root: a\nother: b\n\nROOT: c\n")
    assert err.line == 4
    assert "line 1" in err.message
    assert "line 4" in err.message
    assert "'root'" in err.message


def test_unterminated_quote() -> None:
    err = syntax_error('a: b\nx: "|/bin/prog, c\n')
    assert err.line == 2
    assert "unterminated" in err.message


def test_error_line_inside_continuation() -> None:
    err = syntax_error('list: a,\n    b,\n    "broken\nz: y\n')
    assert err.line == 3


def test_continuation_without_alias() -> None:
    with pytest.raises(AliasSyntaxError) as info:
        parse_aliases("# header\n   a, b\n", "f")
    err = info.value
    assert err.line == 2
    assert "continuation" in err.message


def test_blank_line_ends_an_alias() -> None:
    with pytest.raises(AliasSyntaxError) as info:
        parse_aliases("list: a\n\n    b\n", "f")
    assert info.value.line == 3


def test_unquoted_whitespace_is_a_missing_comma() -> None:
    err = syntax_error("list: alice bob\n")
    assert err.line == 1
    assert "missing comma" in err.message


@pytest.mark.parametrize("name", ["a b", "user@host", '"q"', "|prog", "a,b"])
def test_invalid_names(name: str) -> None:
    err = syntax_error(f"{name}: x\n")
    assert err.line == 1


def test_program_and_include_must_have_content() -> None:
    assert syntax_error("x: |\n").line == 1
    assert syntax_error("x: :include:\n").line == 1
    assert syntax_error('x: ""\n').line == 1


def test_crlf_line_endings() -> None:
    assert parse_aliases("a: b,\r\n  c\r\n", "f") == {"a": ("b", "c")}


def test_parse_address_list_for_include_and_forward_files() -> None:
    text = textwrap.dedent(
        """\
        # members of the list
        alice, bob@example.org

          carol
        "|/usr/bin/vacation alice, again"
        \\alice
        """
    )
    assert parse_address_list(text, "/etc/mail/list") == (
        "alice",
        "bob@example.org",
        "carol",
        "|/usr/bin/vacation alice, again",
        "\\alice",
    )


def test_parse_address_list_errors_have_lines() -> None:
    with pytest.raises(AliasSyntaxError) as info:
        parse_address_list('a\n# c\n"oops\n', "/inc")
    assert str(info.value).startswith("/inc:3: ")


def test_parse_address_list_empty() -> None:
    assert parse_address_list("# nothing here\n\n", "f") == ()


_names = st.from_regex(r"[a-z][a-z0-9._-]{0,10}", fullmatch=True)
_targets = st.lists(
    st.one_of(
        _names,
        st.builds(lambda a, b: f"{a}@{b}.example", _names, _names),
        _names.map(lambda n: f'"|/usr/bin/{n} a, b"'),
    ),
    min_size=1,
    max_size=5,
)


@given(st.dictionaries(_names, _targets, max_size=8))
def test_round_trip_property(aliases: dict[str, list[str]]) -> None:
    lines = []
    for name, targets in aliases.items():
        first, *rest = targets
        lines.append(f"{name.upper()}: {first},")
        lines.extend(f"\t{t}," for t in rest)
    parsed = parse_aliases("\n".join(lines) + "\n", "gen")
    expected = {name: tuple(t.strip('"') for t in targets) for name, targets in aliases.items()}
    assert parsed == expected
