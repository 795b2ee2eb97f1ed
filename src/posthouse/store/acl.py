"""Access control lists as the store keeps them, and the rights of a user (chapter 12.5.7).

An ACL is stored as Cyrus writes it in the mailboxes list: ``identifier TAB rights TAB ...``.
Rights are RFC 4314 letters (``l r s w i p k x t e a``); the chapter's obsolete ``c`` and ``d``
are read as their RFC 4314 §2.1.1 expansions (``c`` = ``k x``, ``d`` = ``t e``).

:func:`rights_for` computes what a user holds: the union of the entries for the user,
``anyone`` and the user's groups, minus the union of the matching negative (``-identifier``)
entries.  Implicit rights (owners and admins hold ``l`` and ``a``) are added by the service
(:mod:`posthouse.store.service`), which is where the policy is enforced.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ALL_RIGHTS",
    "ANONYMOUS",
    "ANYONE",
    "Acl",
    "AclError",
    "parse_rights",
    "rights_for",
]

ALL_RIGHTS = frozenset("lrswipkxtea")
ANYONE = "anyone"
ANONYMOUS = "anonymous"
_OBSOLETE = {"c": "kx", "d": "te"}  # RFC 4314 §2.1.1
MAX_ENTRIES = 1000


class AclError(ValueError):
    """An ACL or a rights string the store cannot accept."""


def parse_rights(text: str) -> frozenset[str]:
    rights: set[str] = set()
    for letter in text:
        if letter in _OBSOLETE:
            rights.update(_OBSOLETE[letter])
        elif letter in ALL_RIGHTS or letter.isdigit():
            rights.add(letter)
        else:
            raise AclError(f"unknown right {letter!r}")
    return frozenset(rights)


def format_rights(rights: Iterable[str]) -> str:
    order = "lrswipkxtea0123456789"
    return "".join(letter for letter in order if letter in set(rights))


@dataclass(frozen=True)
class Acl:
    """An ordered list of ``(identifier, rights)``; a negative entry's identifier starts with -."""

    entries: tuple[tuple[str, frozenset[str]], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Acl:
        """The ACL stored as ``text`` (parsed once per distinct text: LIST asks for the rights
        on every mailbox)."""
        return _parse(text)

    @classmethod
    def _parse(cls, text: str) -> Acl:
        fields = text.split("\t")
        if fields and fields[-1] == "":
            fields.pop()
        if len(fields) % 2:
            raise AclError("an ACL holds identifier and rights pairs")
        if len(fields) // 2 > MAX_ENTRIES:
            raise AclError(f"an ACL holds at most {MAX_ENTRIES} entries")
        entries = []
        for i in range(0, len(fields), 2):
            identifier = fields[i]
            if not identifier or identifier == "-" or any(c in identifier for c in "\t\r\n\0"):
                raise AclError(f"bad ACL identifier {identifier!r}")
            entries.append((identifier, parse_rights(fields[i + 1])))
        return cls(tuple(entries))

    def __str__(self) -> str:
        return "".join(f"{ident}\t{format_rights(r)}\t" for ident, r in self.entries)

    def with_entry(self, identifier: str, rights: frozenset[str]) -> Acl:
        """This ACL with ``identifier``'s entry replaced (removed when ``rights`` is empty)."""
        kept = tuple((i, r) for i, r in self.entries if i != identifier)
        return Acl((*kept, (identifier, rights)) if rights else kept)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Acl:
    return Acl._parse(text)


def rights_for(acl: Acl, user: str, groups: Iterable[str] = ()) -> frozenset[str]:
    """The rights ``user`` (a member of ``groups``) holds under ``acl`` (chapter 12.5.7)."""
    identities = {user, ANYONE, *(f"group:{g}" for g in groups)}
    granted: set[str] = set()
    denied: set[str] = set()
    for identifier, rights in acl.entries:
        if identifier.startswith("-"):
            if identifier[1:] in identities:
                denied |= rights
        elif identifier in identities:
            granted |= rights
    return frozenset(granted - denied)
