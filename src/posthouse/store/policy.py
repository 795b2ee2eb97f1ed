"""The rules the mail service enforces, as replaceable policies (chapter 12.5.7, 12.5.8).

:class:`AccessPolicy` answers "which rights does this user hold on this mailbox";
:class:`QuotaPolicy` answers "may this many bytes be added here".  The service asks them and
nothing else does, so IMAP, POP3, delivery and the tools get the same answers.

:class:`CyrusAccess` is the chapter's rule: the ACL's rights for the user, ``anyone`` and the
user's groups, minus the matching negative rights, plus ``l`` and ``a`` implicitly for the
owner of a personal mailbox and for the configured admins.  Its ``groups`` callable names a
user's groups (the application passes :class:`posthouse.auth.groups.GroupDirectory`: system
groups and posthouse's group table); :meth:`CyrusAccess.implicit_rights` is what LISTRIGHTS
reports as always granted.  The quota rule (the limit of the nearest quota root, and
delivery's exception) is :class:`~posthouse.store.quota_policy.RootLimits`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from posthouse.store.acl import Acl, rights_for
from posthouse.store.backend import MailboxRecord, MailStoreBackend
from posthouse.store.names import USER_PREFIX, owner_of, parent_of

__all__ = ["AccessPolicy", "CyrusAccess", "QuotaPolicy"]

IMPLICIT_RIGHTS = frozenset("la")


class AccessPolicy(Protocol):
    def rights(self, user: str, record: MailboxRecord) -> frozenset[str]: ...

    def is_admin(self, user: str) -> bool: ...

    def implicit_rights(self, identifier: str, record: MailboxRecord) -> frozenset[str]:
        """The rights ``identifier`` holds on ``record`` whatever its ACL (LISTRIGHTS)."""
        ...


class QuotaPolicy(Protocol):
    async def check(
        self,
        backend: MailStoreBackend,
        record: MailboxRecord,
        added_bytes: int,
        *,
        delivery: bool,
        leaving: MailboxRecord | None = None,
    ) -> None:
        """Raise :class:`~posthouse.store.errors.OverQuota` to refuse the addition;
        ``leaving``: the mailbox the bytes leave in the same operation (MOVE)."""
        ...


def _no_groups(user: str) -> Iterable[str]:
    return ()


@dataclass(frozen=True)
class CyrusAccess:
    admins: frozenset[str] = frozenset()
    groups: Callable[[str], Iterable[str]] = field(default=_no_groups)

    def is_admin(self, user: str) -> bool:
        return user in self.admins

    def rights(self, user: str, record: MailboxRecord) -> frozenset[str]:
        rights = rights_for(Acl.parse(record.acl), user, self.groups(user))
        if user in self.admins or owner_of(record.name) == user:
            rights |= IMPLICIT_RIGHTS
        return rights

    def implicit_rights(self, identifier: str, record: MailboxRecord) -> frozenset[str]:
        """``l a`` for the owner and the admins; ``p`` on a user's INBOX for everyone else,
        as Cyrus answers LISTRIGHTS: delivery to an INBOX never asks for ``p``."""
        if identifier in self.admins or owner_of(record.name) == identifier:
            return IMPLICIT_RIGHTS
        if parent_of(record.name) == USER_PREFIX:
            return frozenset("p")
        return frozenset()
