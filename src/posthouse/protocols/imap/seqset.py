"""Sequence sets: parsing, resolving against a mailbox, and compact formatting.

RFC 3501 §9 ``sequence-set``: comma-separated numbers and ranges, ``*`` for the largest
number in use; RFC 5182 adds ``$``, the saved result of the last SEARCH.  A range is
unordered (``4:2`` is ``2:4``), so ``n:*`` with n above the largest number means
largest:n (RFC 9051 §6.4.8).  The same functions serve message sequence numbers and
UIDs; for UIDPLUS (RFC 4315 §3) and ESEARCH (RFC 4731 §3.1) responses `format_numbers`
writes the compact form.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from posthouse.protocols.imap.errors import CommandError

MAX_NUMBER: Final = 4294967295  # RFC 3501 §9 nz-number: 32-bit
_DIGITS: Final = frozenset("0123456789")

# A range end: an int, or None for "*".
End = int | None


@dataclass(frozen=True)
class SequenceSet:
    """A parsed sequence set: ranges as written (None is "*"), or ``saved`` for "$"."""

    ranges: tuple[tuple[End, End], ...] = ()
    saved: bool = False

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(_format_range(low, high) for low, high in self.ranges)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Ordered, merged, non-overlapping ranges with "*" read as ``largest``.

        Numbers above ``largest`` are kept: sequence numbers out of range are the
        caller's error to report, UIDs that do not exist simply match nothing.
        A saved set ("$") must be substituted by the caller first.
        """
        if self.saved:
            raise ValueError("resolve the saved search result ($) before resolving")
        spans = sorted(
            _ordered(largest if low is None else low, largest if high is None else high)
            for low, high in self.ranges
        )
        return _merge(spans)

    def contains(self, number: int, largest: int) -> bool:
        """True if ``number`` is in the set when "*" is ``largest``."""
        for low, high in self.ranges:
            first, last = _ordered(
                largest if low is None else low, largest if high is None else high
            )
            if first <= number <= last:
                return True
        return False

    def message_spans(self, count: int) -> list[tuple[int, int]]:
        """The sequence numbers in a mailbox of ``count`` messages, as ascending, merged
        (low, high) spans.

        RFC 3501 §9 (seq-number): a number that is not a valid message sequence
        number is an error, BAD.
        """
        spans = self.resolve(count)
        if count == 0 or (spans and spans[-1][1] > count) or (spans and spans[0][0] < 1):
            raise CommandError("Invalid message sequence number (the mailbox has fewer messages)")
        return spans

    def select_uids(self, uids: Sequence[int]) -> list[int]:
        """The UIDs of ``uids`` (ascending) that are in the set; "*" is the largest UID.

        Works by bisection, so a set like ``1:*`` costs one slice, not a scan per UID.
        """
        if not uids:
            return []
        chosen: list[int] = []
        for low, high in self.resolve(uids[-1]):
            start = bisect.bisect_left(uids, low)
            stop = bisect.bisect_right(uids, high)
            chosen.extend(uids[start:stop])
        return chosen


def _ordered(first: int, last: int) -> tuple[int, int]:
    return (first, last) if first <= last else (last, first)


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in spans:
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def _format_range(low: End, high: End) -> str:
    first = "*" if low is None else str(low)
    if low == high:
        return first
    return f"{first}:{'*' if high is None else high}"


def _number(text: str, whole: str) -> End:
    if text == "*":
        return None
    if not text or not set(text) <= _DIGITS or text[0] == "0" or len(text) > 10:
        raise CommandError(f"Invalid sequence set {whole!r}: {text!r} is not a number 1-4294967295")
    value = int(text)
    if value > MAX_NUMBER:
        raise CommandError(f"Invalid sequence set {whole!r}: {text} is larger than 4294967295")
    return value


def parse(text: str, *, allow_saved: bool = True) -> SequenceSet:
    """Parse RFC 3501 §9 ``sequence-set`` (or RFC 5182 ``$``); `CommandError` BAD if invalid."""
    if text == "$" and allow_saved:
        return SequenceSet(saved=True)
    ranges: list[tuple[End, End]] = []
    for item in text.split(","):
        low, colon, high = item.partition(":")
        first = _number(low, text)
        last = _number(high, text) if colon else first
        ranges.append((first, last))
    return SequenceSet(tuple(ranges))


def from_numbers(numbers: Iterable[int]) -> SequenceSet:
    """The compact set of the given numbers (e.g. for a saved search result)."""
    return SequenceSet(tuple(_compact(numbers)))


def _compact(numbers: Iterable[int]) -> Iterator[tuple[End, End]]:
    return iter(_merge((n, n) for n in sorted(set(numbers))))


def format_numbers(numbers: Iterable[int]) -> str:
    """The compact sequence-set text of ``numbers``: "1:3,5,9:10" (RFC 4315 uid-set).

    Empty input gives "" (the caller decides whether that may be sent at all).
    """
    return ",".join(_format_range(low, high) for low, high in _compact(numbers))


def format_ordered(numbers: Sequence[int]) -> str:
    """A set that keeps the given order, ranges only for consecutive ascending runs.

    COPYUID (RFC 4315 §3) pairs source and destination UIDs by position, so their
    sets must keep the order of the copy rather than sort.
    """
    parts: list[str] = []
    start = 0
    for index in range(1, len(numbers) + 1):
        if index == len(numbers) or numbers[index] != numbers[index - 1] + 1:
            parts.append(_format_range(numbers[start], numbers[index - 1]))
            start = index
    return ",".join(parts)
