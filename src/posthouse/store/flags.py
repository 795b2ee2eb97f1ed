"""Message flags (RFC 3501 §2.3.2): validation, and the compact form indexes keep.

:func:`check_flags` is what every flag passes before it is stored: system flags in their
canonical spelling (case-insensitive on input), keywords that are atoms, ``\\Recent``
dropped (a session flag no one can set, RFC 3501 §6.4.6).  An index keeps the system flags
of a message as a bit mask and its keywords as one space-separated string:
:func:`split_flags`, :data:`FLAG_SETS` and :func:`apply_change` work on that form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from posthouse.store.backend import SYSTEM_FLAGS, FlagMode
from posthouse.store.errors import StoreError

__all__ = [
    "DELETED_BIT",
    "FLAG_SETS",
    "SEEN_BIT",
    "apply_bit",
    "apply_change",
    "check_flags",
    "split_flags",
]

MAX_FLAG_LENGTH = 100
MAX_FLAGS = 64
_ATOM = re.compile(r"[\x21-\x7e]+\Z")
_ATOM_SPECIALS = set('(){%*"\\]')
_BIT = {flag: 1 << i for i, flag in enumerate(SYSTEM_FLAGS)}
_BIT_UPPER = {flag.upper(): bit for flag, bit in _BIT.items()}
SEEN_BIT = _BIT["\\Seen"]
DELETED_BIT = _BIT["\\Deleted"]
FLAG_SETS = [
    frozenset(flag for flag, bit in _BIT.items() if mask & bit) for mask in range(1 << len(_BIT))
]


def check_flags(flags: frozenset[str]) -> frozenset[str]:
    """System flags in their canonical case plus valid keywords (RFC 3501 §2.3.2, flag-keyword
    is an atom); \\Recent cannot be set (RFC 3501 §6.4.6)."""
    if len(flags) > MAX_FLAGS:
        raise StoreError(f"at most {MAX_FLAGS} flags at once")
    canonical = {flag.upper(): flag for flag in SYSTEM_FLAGS}
    result = set()
    for flag in flags:
        if flag.startswith("\\"):
            if flag.upper() == "\\RECENT":
                continue
            if flag.upper() not in canonical:
                raise StoreError(f"{flag} is not a flag a message can have")
            result.add(canonical[flag.upper()])
        elif len(flag) > MAX_FLAG_LENGTH or not _ATOM.match(flag) or _ATOM_SPECIALS & set(flag):
            raise StoreError(f"{flag!r} is not a valid keyword")
        else:
            result.add(flag)
    return frozenset(result)


def split_flags(flags: Iterable[str]) -> tuple[int, list[str]]:
    """System flags as a bit mask (case-insensitive, RFC 3501 §2.3.2) and the keywords."""
    mask = 0
    keywords: list[str] = []
    for flag in flags:
        bit = _BIT_UPPER.get(flag.upper())
        if bit is not None:
            mask |= bit
        elif flag.startswith("\\"):
            raise StoreError(f"{flag} is not a flag a message can keep")
        elif flag.lower() not in (k.lower() for k in keywords):
            keywords.append(flag)
    return mask, keywords


def apply_change(
    mode: FlagMode, old_mask: int, old_words: str, mask: int, words: list[str]
) -> tuple[int, str]:
    current = old_words.split(" ") if old_words else []
    lower = {w.lower() for w in words}
    if mode is FlagMode.REPLACE:
        return mask, " ".join(words)
    if mode is FlagMode.ADD:
        have = {w.lower() for w in current}
        return old_mask | mask, " ".join(current + [w for w in words if w.lower() not in have])
    return old_mask & ~mask, " ".join(w for w in current if w.lower() not in lower)


def apply_bit(mode: FlagMode, was: bool, given: bool) -> bool:
    if mode is FlagMode.REPLACE:
        return given
    if mode is FlagMode.ADD:
        return was or given
    return was and not given
