"""The maildrop as the engine sees it: sizes, unique ids and deletion marks.

The application describes the locked maildrop with `MaildropInfo` when it
accepts a login; the engine then answers STAT, LIST, UIDL, DELE and RSET
(RFC 1939 §5, §7) from `MaildropMarks` without asking the application again.
Deletions are only marks until the UPDATE state (RFC 1939 §6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# RFC 1939 §7 (UIDL): 1 to 70 characters in the range 0x21 to 0x7E.
_UID_MAX: Final = 70


def valid_uid(uid: str) -> bool:
    """True if ``uid`` is a valid unique-id (RFC 1939 §7)."""
    # Printable ASCII is 0x20-0x7E; without the space that is exactly 0x21-0x7E.
    return 1 <= len(uid) <= _UID_MAX and uid.isascii() and uid.isprintable() and " " not in uid


def _all_valid_uids(uids: Sequence[str]) -> bool:
    """``all(map(valid_uid, uids))``, checked on all of them at once (big maildrops)."""
    joined = " ".join(uids)  # valid uids have no space: exactly len(uids) - 1 in here
    return (
        joined.isascii()
        and joined.isprintable()
        and joined.count(" ") == max(len(uids) - 1, 0)
        and min(map(len, uids), default=1) >= 1
        and max(map(len, uids), default=0) <= _UID_MAX
    )


@dataclass(frozen=True)
class MaildropInfo:
    """Snapshot of a maildrop at login: message n (1-based) has ``sizes[n-1]`` octets.

    ``sizes`` are the octet counts as sent (CRLF line endings, before
    dot-stuffing; RFC 1939 §5 "exact size").  ``total_octets`` must equal
    their sum and ``count`` their number.
    """

    count: int
    total_octets: int
    sizes: Sequence[int]
    uids: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(self.sizes))
        object.__setattr__(self, "uids", tuple(self.uids))
        if self.count < 0 or len(self.sizes) != self.count or len(self.uids) != self.count:
            raise ValueError("count must equal the number of sizes and uids")
        if min(self.sizes, default=0) < 0:
            raise ValueError("message sizes must not be negative")
        if self.total_octets != sum(self.sizes):
            raise ValueError("total_octets must be the sum of sizes")
        if not _all_valid_uids(self.uids):
            bad = next(uid for uid in self.uids if not valid_uid(uid))
            raise ValueError(f"invalid unique-id {bad!r} (RFC 1939 §7)")
        if len(set(self.uids)) != len(self.uids):
            raise ValueError("unique-ids must be unique")


class MaildropMarks:
    """Per-session view of a `MaildropInfo` plus the deletion marks."""

    __slots__ = ("_deleted", "_info")

    def __init__(self, info: MaildropInfo) -> None:
        self._info = info
        self._deleted: set[int] = set()

    @property
    def deleted(self) -> tuple[int, ...]:
        """Numbers of the messages marked deleted, ascending."""
        return tuple(sorted(self._deleted))

    def exists(self, number: int) -> bool:
        return 1 <= number <= self._info.count

    def is_deleted(self, number: int) -> bool:
        return number in self._deleted

    def size(self, number: int) -> int:
        return self._info.sizes[number - 1]

    def uid(self, number: int) -> str:
        return self._info.uids[number - 1]

    def stat(self) -> tuple[int, int]:
        """Count and total size of the messages not marked deleted (RFC 1939 §5 STAT)."""
        sizes = self._info.sizes
        deleted = sum(sizes[n - 1] for n in self._deleted)
        return self._info.count - len(self._deleted), self._info.total_octets - deleted

    def live(self) -> list[int]:
        """Numbers of the messages not marked deleted, ascending."""
        return [n for n in range(1, self._info.count + 1) if n not in self._deleted]

    def delete(self, number: int) -> None:
        self._deleted.add(number)

    def undelete_all(self) -> None:
        self._deleted.clear()
