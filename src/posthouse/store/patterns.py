"""LIST and LSUB patterns over the names a user sees (RFC 3501 §6.3.8, §6.3.9).

``*`` matches anything, ``%`` anything but the hierarchy separator.  The reference name is
prefixed to the pattern.  ``INBOX`` matches case-insensitively as the first level (RFC 3501 §5.1).
:func:`listing` also returns the hierarchy levels a trailing ``%`` matches that are not
mailboxes themselves, marked ``\\Noselect`` (RFC 3501 §6.3.8).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from posthouse.store.errors import StoreError
from posthouse.store.names import INBOX, SEPARATOR

__all__ = ["MAX_PATTERN", "Match", "compile_pattern", "join_reference", "listing", "literal_prefix"]

MAX_PATTERN = 1024
_MAX_WILDCARDS = 20


@dataclass(frozen=True)
class Match:
    """One name LIST returns: ``exists`` False for a bare hierarchy level (``\\Noselect``)."""

    name: str
    exists: bool
    has_children: bool


def join_reference(reference: str, pattern: str) -> str:
    """The pattern to match once the reference is applied (RFC 3501 §6.3.8 leaves a non-empty
    reference to the implementation).  The chapter's relative names (12.5.6): under the
    reference ``user.hansen``, ``.work.personnel.issues`` is relative and resolves to
    ``user.hansen.work.personnel.issues``, while ``work.personnel.issues`` names itself.  So
    a name is joined to the reference when either side brings the separator, or the name
    starts with a wildcard (``LIST INBOX *`` as Cyrus takes it); otherwise it stands alone."""
    if (
        reference
        and pattern
        and not reference.endswith(SEPARATOR)
        and pattern[0] not in (SEPARATOR, "*", "%")
    ):
        return pattern
    return reference + pattern


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A regular expression matching the visible names ``pattern`` selects; a StoreError
    (IMAP: NO [LIMIT]) for a pattern over the limits."""
    if len(pattern) > MAX_PATTERN:
        raise StoreError(f"a LIST pattern is at most {MAX_PATTERN} characters")
    if pattern.count("*") + pattern.count("%") > _MAX_WILDCARDS:
        raise StoreError(f"a LIST pattern holds at most {_MAX_WILDCARDS} wildcards")
    parts: list[str] = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "%":
            parts.append(f"[^{re.escape(SEPARATOR)}]*")
        else:
            parts.append(re.escape(ch))
    body = "".join(parts)
    # INBOX is case-insensitive as a first level: match any case of it.
    upper = pattern[: len(INBOX)].upper()
    if upper == INBOX and (len(pattern) == len(INBOX) or pattern[len(INBOX)] in f"{SEPARATOR}*%"):
        body = "(?i:INBOX)" + body[len(re.escape(pattern[: len(INBOX)])) :]
    return re.compile(f"{body}\\Z", re.DOTALL)


def literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard."""
    cut = min((i for i in (pattern.find("*"), pattern.find("%")) if i >= 0), default=len(pattern))
    return pattern[:cut]


def listing(pattern: str, names: Iterable[str]) -> list[Match]:
    """The matches of ``pattern`` among the visible ``names`` and their hierarchy levels,
    sorted by name."""
    regex = compile_pattern(pattern)
    existing = set(names)
    candidates: dict[str, bool] = {}
    parents: set[str] = set()
    for name in existing:
        levels = name.split(SEPARATOR)
        for depth in range(1, len(levels)):
            parent = SEPARATOR.join(levels[:depth])
            parents.add(parent)
            if parent not in existing and pattern.endswith("%") and regex.match(parent):
                candidates.setdefault(parent, False)
        if regex.match(name):
            candidates[name] = True
    return [Match(name, exists, name in parents) for name, exists in sorted(candidates.items())]
