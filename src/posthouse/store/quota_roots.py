"""Which quota root limits a mailbox (chapter 12.5.8): the nearest root at or above it.

A quota root is a mailbox name (``user.hansen``, ``user.hansen.personnel``); it limits the
mailboxes at its level and below that no lower root claims, so each mailbox is limited by
at most one root.  The root is found from the mailbox's name and the set of roots that
exist, as Cyrus's ``quota_findroot`` walks up the name: nothing is stored per mailbox, so
a root created, removed or renamed never leaves a mailbox pointing at the wrong one.
"""

from __future__ import annotations

from collections.abc import Container

from posthouse.store.names import parent_of

__all__ = ["candidate_roots", "nearest_root"]


def candidate_roots(name: str) -> list[str]:
    """``name`` and each of its parents, nearest first."""
    found: list[str] = []
    level: str | None = name
    while level is not None:
        found.append(level)
        level = parent_of(level)
    return found


def nearest_root(name: str, roots: Container[str]) -> str | None:
    """The root among ``roots`` that limits mailbox ``name``, or None."""
    for candidate in candidate_roots(name):
        if candidate in roots:
            return candidate
    return None
