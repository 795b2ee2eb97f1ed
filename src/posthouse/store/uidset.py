"""Sets of UIDs kept as sorted, disjoint, non-adjacent ranges (seen state, UID arguments).

A :class:`UidSet` is immutable.  Its text form is IMAP's ``sequence-set`` of UIDs without
``*`` (RFC 3501 §9: ``1:5,7,9:12``), which is also how per-user seen state is stored, like
Cyrus's seen records.  Parsing is strict and bounded (:data:`MAX_TEXT`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

__all__ = ["MAX_TEXT", "MAX_UID", "UidSet"]

MAX_UID = 2**32 - 1  # RFC 3501 §2.3.1.1: nz-number, 32 bits
MAX_TEXT = 1_000_000


class UidSet:
    """An immutable set of UIDs (1..2**32-1) as ranges."""

    __slots__ = ("_ranges",)

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        merged: list[tuple[int, int]] = []
        for low, high in sorted(ranges):
            if not 1 <= low <= high <= MAX_UID:
                raise ValueError(f"bad UID range {low}:{high}")
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        self._ranges: tuple[tuple[int, int], ...] = tuple(merged)

    @classmethod
    def of(cls, uids: Iterable[int]) -> UidSet:
        ranges: list[tuple[int, int]] = []
        for uid in sorted(set(uids)):
            if ranges and uid == ranges[-1][1] + 1:
                ranges[-1] = (ranges[-1][0], uid)
            else:
                ranges.append((uid, uid))
        return cls(ranges)

    @classmethod
    def parse(cls, text: str) -> UidSet:
        """``"1:5,7"`` -> the set; ``""`` -> empty.  ``ValueError`` if malformed."""
        if len(text) > MAX_TEXT:
            raise ValueError("UID set text too long")
        if not text:
            return cls()
        ranges = []
        for part in text.split(","):
            low_text, sep, high_text = part.partition(":")
            low = _number(low_text)
            high = _number(high_text) if sep else low
            ranges.append((min(low, high), max(low, high)))
        return cls(ranges)

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        return self._ranges

    def __str__(self) -> str:
        return ",".join(f"{a}" if a == b else f"{a}:{b}" for a, b in self._ranges)

    def __repr__(self) -> str:
        return f"UidSet({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UidSet) and self._ranges == other._ranges

    def __hash__(self) -> int:
        return hash(self._ranges)

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def __len__(self) -> int:
        return sum(b - a + 1 for a, b in self._ranges)

    def __iter__(self) -> Iterator[int]:
        for low, high in self._ranges:
            yield from range(low, high + 1)

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        i = bisect.bisect_right(self._ranges, (uid, MAX_UID + 1)) - 1
        return i >= 0 and self._ranges[i][0] <= uid <= self._ranges[i][1]

    def union(self, other: UidSet) -> UidSet:
        return UidSet(self._ranges + other._ranges)

    def difference(self, other: UidSet) -> UidSet:
        result: list[tuple[int, int]] = []
        for low, high in self._ranges:
            start = low
            for o_low, o_high in other._ranges:
                if o_high < start or o_low > high:
                    continue
                if o_low > start:
                    result.append((start, o_low - 1))
                start = max(start, o_high + 1)
                if start > high:
                    break
            if start <= high:
                result.append((start, high))
        return UidSet(result)

    def intersection(self, other: UidSet) -> UidSet:
        return self.difference(self.difference(other))

    def max(self) -> int:
        """The largest UID (0 when empty)."""
        return self._ranges[-1][1] if self._ranges else 0


def _number(text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 10 or text.startswith("0"):
        raise ValueError(f"bad UID {text!r}")
    value = int(text)
    if value > MAX_UID:
        raise ValueError(f"UID {value} out of range")
    return value
