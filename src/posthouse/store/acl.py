"""Access control lists as the store keeps them, and the rights of a user (chapter 12.5.7).

An ACL is stored as Cyrus writes it in the mailboxes list: ``identifier TAB rights TAB ...``.
Rights are RFC 4314 letters (``l r s w i p k x t e a``); the chapter's obsolete ``c`` and ``d``
are read as their RFC 4314 §2.1.1 expansions (``c`` = ``k x``, ``d`` = ``t e``, as Cyrus reads
them), and :func:`wire_rights` answers them back as that section asks (``c`` whenever ``k`` or
``x`` is held, ``d`` whenever ``t`` or ``e``).  Digits are the
implementation-defined rights RFC 4314 §2.1 leaves to sites, kept as given.

:func:`modified_rights` applies a SETACL rights argument (``+`` adds, ``-`` removes, otherwise
replaces, RFC 4314 §3.1); :func:`check_identifier` is the one rule for what an identifier may
be (users, ``anyone``, ``anonymous``, ``group:NAME``, each optionally ``-`` for a negative
entry).

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
    "BadIdentifier",
    "TooManyEntries",
    "UnknownRight",
    "check_identifier",
    "format_rights",
    "listed_rights",
    "modified_rights",
    "parse_rights",
    "rights_for",
    "wire_rights",
]

ALL_RIGHTS = frozenset("lrswipkxtea")
ANYONE = "anyone"
ANONYMOUS = "anonymous"
_OBSOLETE = {"c": "kx", "d": "te"}  # RFC 4314 §2.1.1
MAX_ENTRIES = 1000
MAX_IDENTIFIER = 255  # octets; longer than any user or group name this system has
GROUP_PREFIX = "group:"
_DIGITS = "0123456789"


class AclError(ValueError):
    """An ACL or a rights string the store cannot accept."""


class UnknownRight(AclError):
    """A letter that is no right (RFC 4314 §3.1: the command is answered BAD)."""


class BadIdentifier(AclError):
    """An identifier no ACL entry can have."""


class TooManyEntries(AclError):
    """The ACL would exceed :data:`MAX_ENTRIES`."""


def parse_rights(text: str) -> frozenset[str]:
    rights: set[str] = set()
    for letter in text:
        if letter in _OBSOLETE:
            rights.update(_OBSOLETE[letter])
        elif letter in ALL_RIGHTS or letter in _DIGITS:
            rights.add(letter)
        else:
            raise UnknownRight(f"unknown right {letter!r}")
    return frozenset(rights)


def modified_rights(current: frozenset[str], argument: str) -> frozenset[str]:
    """RFC 4314 §3.1: ``+rights`` adds to ``current``, ``-rights`` removes, else replaces."""
    if argument.startswith("+"):
        return current | parse_rights(argument[1:])
    if argument.startswith("-"):
        return current - parse_rights(argument[1:])
    return parse_rights(argument)


def wire_rights(rights: Iterable[str]) -> str:
    """Rights as answered to clients: with the obsolete ``c`` and ``d`` added whenever one of
    the rights they stand for is held (RFC 4314 §2.1.1), so RFC 2086 clients understand."""
    held = set(rights)
    text = format_rights(held - set("a" + _DIGITS))
    if held & {"k", "x"}:
        text += "c"
    if held & {"t", "e"}:
        text += "d"
    return text + format_rights(held & set("a" + _DIGITS))


def listed_rights(required: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    """RFC 4314 §3.7 LISTRIGHTS data: the rights always granted, then each right that may be
    granted on its own (as Cyrus lists them, ``c`` and ``d`` and the digits included)."""
    optional = wire_rights((ALL_RIGHTS | set(_DIGITS)) - required)
    return wire_rights(required), tuple(optional)


def check_identifier(identifier: str) -> str:
    """``identifier`` if an ACL entry may name it, else :class:`BadIdentifier`."""
    name = identifier[1:] if identifier.startswith("-") else identifier
    if not name or name == GROUP_PREFIX:
        raise BadIdentifier("an identifier names a user, anyone, anonymous or group:NAME")
    if len(identifier.encode()) > MAX_IDENTIFIER:
        raise BadIdentifier(f"an identifier is at most {MAX_IDENTIFIER} octets")
    if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in identifier):
        raise BadIdentifier(f"no spaces or control characters in an identifier: {identifier!r}")
    return identifier


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
            raise TooManyEntries(f"an ACL holds at most {MAX_ENTRIES} entries")
        entries = []
        for i in range(0, len(fields), 2):
            entries.append((check_identifier(fields[i]), parse_rights(fields[i + 1])))
        return cls(tuple(entries))

    @classmethod
    def from_pairs(cls, text: str) -> Acl:
        """The ACL written as imapd.conf's ``defaultacl`` is: ``ID RIGHTS ID RIGHTS ...``
        separated by spaces (``anyone lrs``)."""
        words = text.split()
        if len(words) % 2:
            raise AclError("expected pairs of an identifier and its rights, e.g. 'anyone lrs'")
        acl = cls()
        for i in range(0, len(words), 2):
            acl = acl.with_entry(words[i], parse_rights(words[i + 1]))
        return acl

    def __str__(self) -> str:
        return "".join(f"{ident}\t{format_rights(r)}\t" for ident, r in self.entries)

    def with_entry(self, identifier: str, rights: frozenset[str]) -> Acl:
        """This ACL with ``identifier``'s entry replaced (removed when ``rights`` is empty)."""
        check_identifier(identifier)
        kept = tuple((i, r) for i, r in self.entries if i != identifier)
        if not rights:
            return Acl(kept)
        if len(kept) >= MAX_ENTRIES:
            raise TooManyEntries(f"an ACL holds at most {MAX_ENTRIES} entries")
        return Acl((*kept, (identifier, rights)))

    def rights_of(self, identifier: str) -> frozenset[str]:
        """The rights of ``identifier``'s own entry (none when it has no entry)."""
        return next((r for i, r in self.entries if i == identifier), frozenset())


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Acl:
    return Acl._parse(text)


def rights_for(acl: Acl, user: str, groups: Iterable[str] = ()) -> frozenset[str]:
    """The rights ``user`` (a member of ``groups``) holds under ``acl`` (chapter 12.5.7)."""
    identities = {user, ANYONE, *(GROUP_PREFIX + g for g in groups)}
    granted: set[str] = set()
    denied: set[str] = set()
    for identifier, rights in acl.entries:
        if identifier.startswith("-"):
            if identifier[1:] in identities:
                denied |= rights
        elif identifier in identities:
            granted |= rights
    return frozenset(granted - denied)
