"""The RFC 9208 QUOTA commands (GETQUOTA, GETQUOTAROOT, SETQUOTA) and the ``quotawarn``
alert on SELECT (chapter 12.5.8).

The store decides (:class:`~posthouse.store.user_quota.UserQuotas`: who may see and set
which root, the alert's threshold); this module turns its answers into ``QUOTA`` and
``QUOTAROOT`` responses.  STORAGE is the only resource: usage and limit in units of 1024
octets (RFC 9208 §5.1), usage rounded down as Cyrus reports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from posthouse.protocols.imap import mutf7, response
from posthouse.protocols.imap.arguments import MailboxName, QuotaRoot, SetQuota
from posthouse.protocols.imap.commands import Command
from posthouse.protocols.imap.response import Atom, data
from posthouse.server.imap.outcome import Outcome
from posthouse.store.backend import QuotaUsage
from posthouse.store.session import OpenMailbox, UserSession
from posthouse.store.user_quota import UserQuotas

if TYPE_CHECKING:
    from posthouse.server.imap.session import IMAPSession

__all__ = ["QuotaCommands"]

Handler = Callable[[Command], Awaitable[Outcome | None]]
STORAGE = "STORAGE"  # RFC 9208 §5.1


class QuotaCommands:
    """See the module docstring."""

    def __init__(self, session: IMAPSession) -> None:
        self.session = session
        self.engine = session.engine

    def handlers(self) -> dict[str, Handler]:
        return {
            "GETQUOTA": self.getquota,
            "GETQUOTAROOT": self.getquotaroot,
            "SETQUOTA": self.setquota,
        }

    @property
    def quotas(self) -> UserQuotas:
        user: UserSession | None = self.session.user
        assert user is not None, "the engine runs these commands only after a login"
        return UserQuotas(user)

    def _name_in(self, wire: str) -> str:
        return mutf7.from_wire(wire, utf8=self.engine.utf8)

    def _name_out(self, name: str) -> str:
        return mutf7.to_wire(name, utf8=self.engine.utf8)

    def _quota(self, usage: QuotaUsage) -> None:
        """RFC 9208 §5.1: ``* QUOTA root (STORAGE used limit)``; a root without a limit
        (none here: removing the limit removes the root) would list no resource."""
        resources: list[object] = []
        if usage.limit_kb is not None:
            resources = [Atom(STORAGE), usage.used_bytes // 1024, usage.limit_kb]
        self.engine.untagged(
            data(Atom("QUOTA"), self._name_out(usage.root), resources, utf8=self.engine.utf8)
        )

    async def getquota(self, command: Command) -> Outcome | None:
        arguments = command.arguments
        assert isinstance(arguments, QuotaRoot)
        self._quota(await self.quotas.get(self._name_in(arguments.root)))
        return None

    async def getquotaroot(self, command: Command) -> Outcome | None:
        """RFC 9208 §4.3: ``* QUOTAROOT mailbox root...`` then a QUOTA response per root."""
        arguments = command.arguments
        assert isinstance(arguments, MailboxName)
        roots = await self.quotas.roots_of(self._name_in(arguments.mailbox))
        self.engine.untagged(
            data(
                Atom("QUOTAROOT"),
                arguments.mailbox,
                *(self._name_out(usage.root) for usage in roots),
                utf8=self.engine.utf8,
            )
        )
        for usage in roots:
            self._quota(usage)
        return None

    async def setquota(self, command: Command) -> Outcome | None:
        """RFC 9208 §4.1.3: the listed limits replace the root's; an empty list removes it."""
        arguments = command.arguments
        assert isinstance(arguments, SetQuota)
        unknown = sorted({name for name, _ in arguments.limits} - {STORAGE})
        if unknown:
            return Outcome("NO", f"Only the STORAGE resource is supported, not {unknown[0]}")
        if len(arguments.limits) > 1:
            return Outcome("BAD", "STORAGE is given more than once")
        limit = arguments.limits[0][1] if arguments.limits else None
        usage = await self.quotas.set(self._name_in(arguments.root), limit)
        if usage is not None:
            self._quota(usage)
        return None

    async def alert(self, mailbox: OpenMailbox) -> None:
        """Chapter 12.5.8: on SELECT, ``* NO [ALERT]`` when the mailbox's root is past
        ``quotawarn`` percent (the form Cyrus sends)."""
        warning = await self.quotas.warning(mailbox, self.session.services.store.quota_warn)
        if warning is not None:
            self.engine.untagged(response.Status("NO", warning, code=response.ALERT))
