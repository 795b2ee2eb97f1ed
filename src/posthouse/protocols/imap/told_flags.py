"""The flags a session last told its client of each message, by UID.

The session compares what the store reports with what the client was told, so that only
real changes become untagged FETCH responses.  ``FETCH 1:* (UID FLAGS)`` on a
100,000-message mailbox tells them all at once, and a dict of 100,000 entries made from
nothing costs more than the rest of that FETCH but the rendering of its lines.  So a bulk
tell is kept as it came: the UIDs (ascending) and the flags, two lists, looked up by
bisection.  Each tell, bulk or single, has a generation number; a lookup takes the newest
of the single tells' entry and the bulk tells' entries.  A bulk tell drops the earlier ones
it covers (the same ``1:*`` again); beyond :data:`MAX_BULK` others they are folded into the
single tells' dict.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

__all__ = ["MAX_BULK", "MIN_BULK", "ToldFlags"]

MIN_BULK = 1024  # fewer messages at once go into the dict
MAX_BULK = 4  # bulk tells kept as lists before they are folded into the dict

_Flags = frozenset[str]


class ToldFlags:
    """See the module docstring.  ``None`` is "never told" (or forgotten)."""

    def __init__(self) -> None:
        self._generation = 0
        self._single: dict[int, tuple[int, _Flags | None]] = {}
        self._bulk: list[tuple[int, Sequence[int], Sequence[_Flags]]] = []  # oldest first

    def _next(self) -> int:
        self._generation += 1
        return self._generation

    def get(self, uid: int) -> _Flags | None:
        generation, flags = self._single.get(uid, (0, None))
        for bulk_generation, uids, told in reversed(self._bulk):
            if bulk_generation < generation:
                break
            at = bisect.bisect_left(uids, uid)
            if at < len(uids) and uids[at] == uid:
                return told[at]
        return flags

    def __setitem__(self, uid: int, flags: _Flags) -> None:
        self._single[uid] = (self._next(), flags)

    def pop(self, uid: int, default: None = None) -> None:
        """Forget what the client was told of ``uid`` (an expunged message)."""
        if uid in self._single or self._bulk:
            self._single[uid] = (self._next(), None)

    def update(self, told: Mapping[int, _Flags]) -> None:
        for uid, flags in told.items():
            self[uid] = flags

    def tell_many(self, uids: Sequence[int], flags: Sequence[_Flags]) -> None:
        """``uids`` (ascending) were told ``flags``; the lists are kept, not copied: the
        caller does not change them afterwards."""
        if len(uids) != len(flags):
            raise ValueError("a flag list per UID")
        if len(uids) < MIN_BULK:
            generation = self._next()
            self._single.update((uid, (generation, f)) for uid, f in zip(uids, flags, strict=True))
            return
        self._bulk = [bulk for bulk in self._bulk if not _covers(uids, bulk[1])]
        self._bulk.append((self._next(), uids, flags))
        if len(self._bulk) > MAX_BULK:
            self._fold()

    def _fold(self) -> None:
        """The bulk tells into the dict, oldest first, keeping newer single tells."""
        single = self._single
        for generation, uids, flags in self._bulk:
            for uid, told in zip(uids, flags, strict=True):
                if single.get(uid, (0, None))[0] < generation:
                    single[uid] = (generation, told)
        self._bulk = []


def _covers(new: Sequence[int], old: Sequence[int]) -> bool:
    """Whether ``old`` is a run of ``new`` (both ascending): its UIDs all told again."""
    if not old:
        return True
    at = bisect.bisect_left(new, old[0])
    return new[at : at + len(old)] == old
