"""Mailbox names: the store's internal names and what one user sees (chapter 12.5.6).

Internally every mailbox has one system-wide name, levels separated by ``.``:
``user.hansen`` is Hansen's INBOX, ``user.hansen.work`` his ``work`` folder, anything not
under ``user.`` (``shared.news``) is a shared mailbox.  A :class:`UserView` translates for one
logged-in user: the owner sees ``user.hansen.work`` as ``INBOX.work``; everybody else sees it
as ``user.hansen.work`` (where the ACL lets them).  ``INBOX`` is case-insensitive
(RFC 3501 §5.1).  Users whose names contain a dot can log in but have no INBOX.

Names are Unicode here.  The wire form (modified UTF-7, RFC 3501 §5.1.3, or UTF-8 where
UTF8=ACCEPT is enabled) is the protocol's business: see :mod:`posthouse.protocols.imap.mutf7`.

:func:`check_name` is the one validation every name passes before it reaches a backend:
no empty level (so no ``..`` and no leading or trailing dot), no ``/``, no NUL or other
control character, no LIST wildcard (``%``, ``*``), limits on the whole name and on each
level.  Names never reach the file system anyway (backends map mailboxes to ids); the
rules keep names portable and unambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "INBOX",
    "MAX_LEVELS",
    "MAX_LEVEL_LENGTH",
    "MAX_NAME_LENGTH",
    "SEPARATOR",
    "USER_PREFIX",
    "InvalidName",
    "NoInbox",
    "UserView",
    "check_name",
    "check_user_name",
    "children_prefix",
    "is_inferior",
    "owner_of",
    "parent_of",
    "resolve_relative",
    "user_inbox",
]

SEPARATOR = "."
USER_PREFIX = "user"
INBOX = "INBOX"
MAX_NAME_LENGTH = 490  # Cyrus's MAX_MAILBOX_NAME
MAX_LEVEL_LENGTH = 255
MAX_LEVELS = 64
MAX_USER_LENGTH = 128

# Characters a name never holds: NUL and other controls, "/" (a path separator elsewhere)
# and the LIST wildcards (RFC 3501 §6.3.8).
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/%*]")
_USER_FORBIDDEN = re.compile(r"[\x00-\x20\x7f/%*]")


class InvalidName(ValueError):
    """A mailbox or user name the store refuses; the message says why."""


class NoInbox(InvalidName):
    """The user has no INBOX (a dot in the user name, chapter 12.5.6)."""


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid internal mailbox name, else raise :class:`InvalidName`."""
    if not name:
        raise InvalidName("a mailbox name cannot be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"a mailbox name is at most {MAX_NAME_LENGTH} characters")
    bad = _FORBIDDEN.search(name)
    if bad:
        raise InvalidName(f"a mailbox name cannot contain {bad.group()!r}")
    levels = name.split(SEPARATOR)
    if len(levels) > MAX_LEVELS:
        raise InvalidName(f"a mailbox name has at most {MAX_LEVELS} levels")
    for level in levels:
        if not level:
            raise InvalidName(
                f"a mailbox name cannot have an empty level (no '{SEPARATOR}' at either end,"
                f" no '{SEPARATOR}{SEPARATOR}')"
            )
        if len(level) > MAX_LEVEL_LENGTH:
            raise InvalidName(f"a level of a mailbox name is at most {MAX_LEVEL_LENGTH} characters")
    if levels[0].upper() == INBOX:
        raise InvalidName("INBOX is a name only a user's view has; the store calls it user.NAME")
    return name


def check_user_name(user: str) -> str:
    """Return ``user`` if it can name a user at all (login, seen state, subscriptions)."""
    if not user or len(user) > MAX_USER_LENGTH:
        raise InvalidName(f"a user name has 1 to {MAX_USER_LENGTH} characters")
    bad = _USER_FORBIDDEN.search(user)
    if bad:
        raise InvalidName(f"a user name cannot contain {bad.group()!r}")
    return user


def user_inbox(user: str) -> str:
    """The internal name of ``user``'s INBOX; :class:`NoInbox` for dotted user names."""
    check_user_name(user)
    if SEPARATOR in user:
        raise NoInbox(f"user {user} has a '{SEPARATOR}' in the name and so no INBOX")
    return check_name(f"{USER_PREFIX}{SEPARATOR}{user}")


def owner_of(name: str) -> str | None:
    """The user whose personal hierarchy holds ``name`` (``user.NAME...``), or None."""
    levels = name.split(SEPARATOR, 2)
    if len(levels) >= 2 and levels[0] == USER_PREFIX:
        return levels[1]
    return None


def parent_of(name: str) -> str | None:
    """``a.b.c`` -> ``a.b``; None for a top-level name."""
    head, sep, _ = name.rpartition(SEPARATOR)
    return head if sep else None


def children_prefix(name: str) -> str:
    """The prefix every inferior of ``name`` starts with."""
    return name + SEPARATOR


def is_inferior(name: str, of: str) -> bool:
    """Whether ``name`` is ``of`` or below it in the hierarchy."""
    return name == of or name.startswith(children_prefix(of))


def resolve_relative(name: str, top: str) -> str:
    """A name as chapter 12.5.6 resolves it where relative names are allowed.

    With the top of the hierarchy ``user.hansen``, ``.work.personnel.issues`` resolves to
    ``user.hansen.work.personnel.issues`` and ``work.personnel.issues`` to itself.
    """
    if name.startswith(SEPARATOR):
        return check_name(top + name)
    return check_name(name)


@dataclass(frozen=True)
class UserView:
    """The names one user sees and types (RFC 2342 personal and other users' namespaces).

    ``to_internal`` takes what the user typed (``INBOX``, ``inbox.work``, ``user.fred.x``,
    ``shared.news``) and returns the internal name; ``to_visible`` does the reverse.
    """

    user: str

    def __post_init__(self) -> None:
        check_user_name(self.user)

    @property
    def has_inbox(self) -> bool:
        return SEPARATOR not in self.user

    @property
    def inbox(self) -> str:
        return user_inbox(self.user)

    def to_internal(self, visible: str) -> str:
        first, sep, rest = visible.partition(SEPARATOR)
        if first.upper() == INBOX:
            inbox = self.inbox  # NoInbox for dotted user names
            if not sep:
                return inbox
            if not rest:
                raise InvalidName("a mailbox name cannot end with the separator")
            return check_name(inbox + SEPARATOR + rest)
        return check_name(visible)

    def to_visible(self, internal: str) -> str:
        if self.has_inbox:
            inbox = f"{USER_PREFIX}{SEPARATOR}{self.user}"
            if internal == inbox:
                return INBOX
            if internal.startswith(inbox + SEPARATOR):
                return INBOX + internal[len(inbox) :]
        return internal

    def is_personal(self, internal: str) -> bool:
        """Whether ``internal`` is in this user's own hierarchy (``user.NAME`` and below)."""
        return self.has_inbox and is_inferior(internal, f"{USER_PREFIX}{SEPARATOR}{self.user}")
