"""Quota roots as one logged-in user sees and changes them (RFC 9208, chapter 12.5.8).

:class:`UserQuotas` gives a :class:`~posthouse.store.session.UserSession` the three quota
commands and the ``quotawarn`` alert, in the names that user sees (Cyrus shows Hansen his
root ``user.hansen`` as ``INBOX``).  Who may do what follows Cyrus: GETQUOTAROOT needs the
read right on the mailbox, GETQUOTA is for admins and for roots in the user's own
hierarchy, SETQUOTA only for admins (on a root that is an existing mailbox), and the alert
on SELECT goes only to users who hold the expunge right ``e`` on the mailbox (Cyrus tests
its ``d``/``e`` right): only they can free space.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from posthouse.store.backend import QuotaUsage
from posthouse.store.errors import MailboxNotFound, NotPermitted
from posthouse.store.quota_policy import usage_percent

if TYPE_CHECKING:
    from posthouse.store.session import OpenMailbox, UserSession

__all__ = ["UserQuotas"]


class UserQuotas:
    """See the module docstring."""

    def __init__(self, session: UserSession) -> None:
        self.session = session
        self.backend = session.backend
        self.view = session.view

    def _visible(self, usage: QuotaUsage) -> QuotaUsage:
        return replace(usage, root=self.view.to_visible(usage.root))

    async def roots_of(self, visible: str) -> list[QuotaUsage]:
        """RFC 9208 §4.3 GETQUOTAROOT: the root limiting the mailbox (none or one here)."""
        record, _ = await self.session._find(visible, "r", "see this mailbox's quota")
        usage = await self.backend.quota_root_of(record.name)
        return [] if usage is None else [self._visible(usage)]

    async def get(self, visible_root: str) -> QuotaUsage:
        """RFC 9208 §4.2 GETQUOTA."""
        root = self.view.to_internal(visible_root)
        if not self.session.is_admin and not self.view.is_personal(root):
            raise NotPermitted(f"you may not see the quota root {visible_root}")
        usage = await self.backend.quota(root)
        if usage is None:
            raise MailboxNotFound(f"no quota root {visible_root}")
        return self._visible(usage)

    async def set(self, visible_root: str, limit_kb: int | None) -> QuotaUsage | None:
        """RFC 9208 §4.1.3 SETQUOTA: a limit in KB; None removes the root (the limit is
        lifted, its mailboxes count to the root above)."""
        if not self.session.is_admin:
            raise NotPermitted("only an administrator sets quotas")
        root = self.view.to_internal(visible_root)
        if await self.backend.get_mailbox(root) is None:
            raise MailboxNotFound(f"mailbox {visible_root} does not exist")
        if limit_kb is None:
            await self.backend.remove_quota(root)
            return None
        return self._visible(await self.backend.set_quota(root, limit_kb))

    async def warning(self, mailbox: OpenMailbox, warn_percent: int) -> str | None:
        """The alert for SELECT (chapter 12.5.8 ``quotawarn``), or None."""
        if mailbox.read_only or "e" not in mailbox.rights:
            return None
        usage = await self.backend.quota_root_of(mailbox.record.name)
        percent = None if usage is None else usage_percent(usage)
        if usage is None or percent is None:
            return None
        root = self.view.to_visible(usage.root)
        if percent >= 100:
            return f"Mailbox is over quota (quota root {root}): delete or expunge mail"
        if percent > warn_percent:
            return f"Mailbox is at {int(percent)}% of quota (quota root {root})"
        return None
