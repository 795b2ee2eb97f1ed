"""Tests for posthouse.mta.address_fields: addresses found and replaced, other bytes kept."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.mta.address_fields import (
    MAX_HEADER_SECTION,
    HeaderSectionFilter,
    addr_specs,
    addresses_in,
    rewrite_address_list,
    rewrite_header_section,
)


def qualify(address: str) -> str:
    return address if "@" in address else address + "@h.example"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" joe", ["joe"]),
        (" Joe Smith <joe@a.example>", ["joe@a.example"]),
        (' "Smith, Joe" <joe>, ann', ["joe", "ann"]),
        (" joe@a.example (Joe Smith)", ["joe@a.example"]),
        (" team: a, b@c;, d", ["a", "b@c", "d"]),
        (" undisclosed-recipients:;", []),
        (" VAXA::SMITH", ["VAXA::SMITH"]),
        (" Smith <VAXA::SMITH>", ["VAXA::SMITH"]),
        (" SMITH@ACME:.nyc.hub", ["SMITH@ACME:.nyc.hub"]),
        (" uuhost!joe", ["uuhost!joe"]),
        (" <@relay.example:joe@a.example>", ["joe@a.example"]),  # RFC 5322 §4.4 obs-route
        (" joe . smith @ a.example", ["joe.smith@a.example"]),  # CFWS around the dots
        (" Joe Smith", []),  # a phrase alone is no address
        (" =?utf-8?q?J=C3=B6e?= <joe>", ["joe"]),
        ("", []),
    ],
)
def test_addr_specs(value: str, expected: list[str]) -> None:
    assert addr_specs(value) == expected


def test_only_changed_addresses_are_replaced_and_the_rest_is_kept() -> None:
    value = ' "Joe (not a comment), Jr." <joe> (home),\r\n\t=?utf-8?q?Ann?= <ann@x.example>'
    out = rewrite_address_list(value, qualify)
    assert out == (
        ' "Joe (not a comment), Jr." <joe@h.example> (home),\r\n\t=?utf-8?q?Ann?= <ann@x.example>'
    )


def test_groups_are_kept() -> None:
    out = rewrite_address_list(" Friends: ann, (c) bob ;, carl", qualify)
    assert out == " Friends: ann@h.example, (c) bob@h.example ;, carl@h.example"


def test_header_section_touches_only_the_named_fields() -> None:
    header = (
        b"Received: from x (joe)\r\n"
        b"From: joe\r\n"
        b"Subject: To: bob\r\n"
        b"To: bob,\r\n  carl\r\n"
        b"X-Latin: caf\xe9\r\n"
        b"CC:ann\r\n"
    )
    out = rewrite_header_section(header, {"from": qualify, "to": qualify, "cc": qualify})
    assert out == (
        b"Received: from x (joe)\r\n"
        b"From: joe@h.example\r\n"
        b"Subject: To: bob\r\n"
        b"To: bob@h.example,\r\n  carl@h.example\r\n"
        b"X-Latin: caf\xe9\r\n"
        b"CC:ann@h.example\r\n"
    )


def test_non_utf8_bytes_in_an_address_field_survive() -> None:
    header = b"From: Jos\xe9 <jose>\r\n"
    assert (
        rewrite_header_section(header, {"from": qualify}) == b"From: Jos\xe9 <jose@h.example>\r\n"
    )


def test_addresses_in_collects_without_changing() -> None:
    header = b"To: a, VAXA::SMITH\r\nCc: team: b;\r\nBcc: c\r\nFrom: d\r\n"
    assert addresses_in(header, ("to", "cc", "bcc")) == ["a", "VAXA::SMITH", "b", "c"]


@pytest.mark.parametrize("piece", [1, 3, 7, 1000])
def test_the_filter_gives_the_same_bytes_whatever_the_pieces(piece: int) -> None:
    message = b"From: joe\r\nTo: bob\r\n\r\nFrom: body is not a header\r\n"
    rewrites = {"from": qualify, "to": qualify}
    chunks = [message[i : i + piece] for i in range(0, len(message), piece)]
    filtered = HeaderSectionFilter(rewrites)
    out = b"".join(filtered.feed(chunk) for chunk in chunks) + filtered.finish()
    assert out == (
        b"From: joe@h.example\r\nTo: bob@h.example\r\n\r\nFrom: body is not a header\r\n"
    )


def test_the_filter_holds_nothing_back_after_the_header() -> None:
    filtered = HeaderSectionFilter({"from": qualify})
    assert filtered.feed(b"From: joe\r\n") == b""
    assert filtered.feed(b"\r\nbody") == b"From: joe@h.example\r\n\r\nbody"
    assert filtered.feed(b" more") == b" more"
    assert filtered.finish() == b""


def test_a_message_that_is_all_header_is_rewritten_at_the_end() -> None:
    filtered = HeaderSectionFilter({"from": qualify})
    assert filtered.feed(b"From: joe\r\n") == b""
    assert filtered.finish() == b"From: joe@h.example\r\n"


def test_an_oversized_header_section_passes_unchanged() -> None:
    filtered = HeaderSectionFilter({"from": qualify})
    big = b"From: joe\r\n" + b"X: " + b"y" * MAX_HEADER_SECTION + b"\r\n"
    assert filtered.feed(big) == big
    assert filtered.feed(b"\r\nbody") == b"\r\nbody"


# -- properties --------------------------------------------------------------------------

_atom = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~", min_size=1,
                max_size=8)  # fmt: skip
_local = st.lists(_atom, min_size=1, max_size=3).map(".".join)
_domain = st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=3).map(
    ".".join
)
_phrase_word = st.one_of(
    st.from_regex(r"[A-Za-z]{1,8}", fullmatch=True),
    st.from_regex(r'"[A-Za-z ,:;<>@()]{0,8}"', fullmatch=True),
    st.from_regex(r"=\?utf-8\?q\?[A-Za-z=0-9]{1,8}\?=", fullmatch=True),
)


@st.composite
def mailboxes(draw: st.DrawFn) -> tuple[str, str]:
    """(how a mailbox is written, its addr-spec): bare, name-addr, with comments."""
    local = draw(_local)
    domain = draw(st.one_of(st.none(), _domain))
    spec = local if domain is None else f"{local}@{domain}"
    style = draw(st.sampled_from(["bare", "angle", "named", "comment"]))
    if style == "bare":
        return spec, spec
    if style == "angle":
        return f"<{spec}>", spec
    if style == "comment":
        return f"{spec} (a (nested) comment)", spec
    name = " ".join(draw(st.lists(_phrase_word, min_size=1, max_size=3)))
    return f"{name} <{spec}>", spec


@given(st.lists(mailboxes(), min_size=1, max_size=4), st.booleans())
def test_every_written_mailbox_is_found_and_rewritten_in_place(
    boxes: list[tuple[str, str]], grouped: bool
) -> None:
    written = ",\r\n\t".join(text for text, _ in boxes)
    value = f" Team: {written};" if grouped else f" {written}"
    specs = [spec for _, spec in boxes]
    assert addr_specs(value) == specs
    out = rewrite_address_list(value, qualify)
    assert addr_specs(out) == [qualify(spec) for spec in specs]
    # Only the addr-specs changed: put the old ones back and the value is what it was.
    restored = out
    for spec in specs:
        if qualify(spec) != spec:
            restored = restored.replace(qualify(spec), spec, 1)
    assert restored == value


@given(st.binary(max_size=300))
def test_an_unchanging_rewrite_keeps_any_header_section(header: bytes) -> None:
    assert rewrite_header_section(header, {"from": str, "to": str}) == header


def _both_ways(value: str) -> tuple[tuple[str, list[str]], tuple[str, list[str]]]:
    """(result, addresses given to the rewrite) with the shortcut and by the tokenizer."""
    from posthouse.mta import address_fields

    def run(rewrite_list: Callable[[str, Callable[[str], str]], str]) -> tuple[str, list[str]]:
        calls: list[str] = []

        def rewrite(address: str) -> str:
            calls.append(address)
            return address.upper() + ".q"

        return rewrite_list(value, rewrite), calls

    return run(rewrite_address_list), run(address_fields._rewrite_tokens)


_PLAIN_BODIES = [
    " <sender@local.test>\r",
    " sender@local.test",
    " joe",
    " Joe Smith <joe@a.example>\r\n\t",
    "\r\n\t<a.b-c+d@x-1.example>",
    " host!user",
    " <joe>",
    # Not plain: the tokenizer decides, and the answers must agree.
    " <>",
    " Joe<joe@a.example>",
    ' "Joe" <joe@a.example>',
    " joe@a.example (Joe)",
    " a@b, c@d",
    " .joe@a.example",
    " joe..x@a.example",
    " joe@[10.0.0.1]",
    " <@r.example:joe@a.example>",
    " VAXA::SMITH",
    " team: a;",
    " Joe Smith",
]


@pytest.mark.parametrize("value", _PLAIN_BODIES)
def test_the_shortcut_for_one_plain_mailbox_agrees_with_the_tokenizer(value: str) -> None:
    fast, slow = _both_ways(value)
    assert fast == slow
    assert rewrite_address_list(value, lambda a: a) == value


@given(st.text(alphabet="ab.@<>!( \t\r\n", max_size=20))
def test_the_shortcut_agrees_with_the_tokenizer_on_any_text(value: str) -> None:
    fast, slow = _both_ways(value)
    assert fast == slow
