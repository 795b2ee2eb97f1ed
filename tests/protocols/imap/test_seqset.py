"""Sequence sets (RFC 3501 §9, RFC 5182 $) and UID-set formatting (RFC 4315, RFC 4731)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.protocols.imap import seqset
from posthouse.protocols.imap.errors import CommandError


def test_parse_numbers_ranges_star_and_saved() -> None:
    parsed = seqset.parse("1,3:5,7:*,*")
    assert parsed.ranges == ((1, 1), (3, 5), (7, None), (None, None))
    assert str(parsed) == "1,3:5,7:*,*"
    assert seqset.parse("$").saved
    assert str(seqset.parse("$")) == "$"


@pytest.mark.parametrize(
    "bad", ["", ",", "1,", "0", "1:0", "01", "1::2", "a", "1:2:3", "4294967296", "*:", "$,1", "-1"]
)
def test_malformed_sets_are_bad(bad: str) -> None:
    with pytest.raises(CommandError) as caught:
        seqset.parse(bad)
    assert caught.value.status == "BAD"
    assert repr(bad) in caught.value.text


def test_saved_can_be_refused_where_not_allowed() -> None:
    with pytest.raises(CommandError):
        seqset.parse("$", allow_saved=False)


def test_resolve_orders_merges_and_reads_star() -> None:
    assert seqset.parse("5:3,1,2,9:*").resolve(10) == [(1, 5), (9, 10)]
    assert seqset.parse("*").resolve(7) == [(7, 7)]


def test_n_to_star_above_the_largest_means_largest_to_n() -> None:
    # RFC 9051 §6.4.8: "n:*" with n > largest is largest:n, so the last message is in it.
    parsed = seqset.parse("20:*")
    assert parsed.resolve(5) == [(5, 20)]
    assert parsed.contains(5, 5)
    assert not parsed.contains(4, 5)
    assert parsed.select_uids([1, 2, 3]) == [3]


def test_message_numbers_beyond_the_mailbox_are_bad() -> None:
    assert seqset.parse("2:3,1").message_spans(3) == [(1, 3)]
    assert seqset.parse("1:*").message_spans(4) == [(1, 4)]
    assert seqset.parse("4,1:2").message_spans(4) == [(1, 2), (4, 4)]
    with pytest.raises(CommandError):
        seqset.parse("4").message_spans(3)
    with pytest.raises(CommandError):
        seqset.parse("1:*").message_spans(0)


def test_select_uids_skips_missing_ones() -> None:
    uids = [3, 7, 8, 20, 21, 500]
    assert seqset.parse("1:7,21:*").select_uids(uids) == [3, 7, 21, 500]
    assert seqset.parse("9:19").select_uids(uids) == []
    assert seqset.parse("*").select_uids(uids) == [500]
    assert seqset.parse("1:*").select_uids([]) == []


def test_select_uids_on_a_large_mailbox_is_by_slices() -> None:
    uids = list(range(1, 100_001))
    assert len(seqset.parse("1:*").select_uids(uids)) == 100_000
    assert seqset.parse("99999:*,5").select_uids(uids) == [5, 99999, 100000]


def test_resolving_a_saved_set_needs_substitution() -> None:
    with pytest.raises(ValueError):
        seqset.parse("$").resolve(3)


def test_compact_formatting() -> None:
    assert seqset.format_numbers([5, 1, 2, 3, 9, 10, 3]) == "1:3,5,9:10"
    assert seqset.format_numbers([]) == ""
    assert seqset.format_numbers([42]) == "42"
    # COPYUID keeps the copy's order: RFC 4315 §3 pairs UIDs by position.
    assert seqset.format_ordered([304, 319, 320, 321]) == "304,319:321"
    assert seqset.format_ordered([10, 9, 8]) == "10,9,8"
    assert seqset.from_numbers([4, 2, 3]).ranges == ((2, 4),)


@given(st.sets(st.integers(min_value=1, max_value=300), max_size=60))
def test_format_then_parse_gives_the_same_numbers(numbers: set[int]) -> None:
    text = seqset.format_numbers(numbers)
    if not numbers:
        assert text == ""
        return
    parsed = seqset.parse(text)
    assert seqset.parse(text).select_uids(sorted(numbers)) == sorted(numbers)
    resolved = {n for low, high in parsed.resolve(max(numbers)) for n in range(low, high + 1)}
    assert resolved == numbers
    # compact: no two ranges that could merge
    spans = parsed.resolve(max(numbers))
    assert all(b[0] > a[1] + 1 for a, b in itertools.pairwise(spans))


@given(st.text(alphabet="0123456789:,*$ x-", max_size=30))
def test_parse_raises_only_the_protocol_error(text: str) -> None:
    try:
        parsed = seqset.parse(text)
    except CommandError as error:
        assert error.status == "BAD"
        return
    if not parsed.saved:
        for low, high in parsed.resolve(50):
            assert 1 <= low <= high
