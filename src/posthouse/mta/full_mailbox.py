"""The RCPT-time answer for a recipient whose IMAP mailbox is over quota (chapter 12.5.8).

When a user's quota root is already over its limit, delivery fails temporarily until the
user makes room.  Saying so at ``RCPT TO`` (``452 4.2.2``, RFC 3463 "mailbox full", as
Cyrus's lmtpd does) leaves the message with the sending server, which retries for days,
instead of accepting it into this host's queue.

The address is checked where it finally delivers: it is expanded with the aliases (by the
daemon's own rules, :class:`~posthouse.mta.expand.Expander`), and the answer is 452 only
when *every* destination is a local user's store mailbox whose quota root is full.  An alias
with one target that can still take the message (another user, a spool mailbox, a remote
address, a program or file) is accepted, and delivery defers the full ones, as it does for a
message to several users.  Nothing is read but the aliases, the user table and the store's
quota records: ``.forward`` files are not read (a user is taken as its own mailbox, as
before), an ``:include:`` file counts as a destination that may take the message, and any
doubt (an expansion error, more than :data:`MAX_CHECKED` destinations, an expansion that
needs more than :data:`MAX_LOOKUPS` alias lookups) answers "not full": delivery checks again
and defers the message then.  The limits keep a big list in the aliases file from costing
every RCPT its whole expansion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from posthouse.mta.agents.store import StoreDelivery, StoreMailbox
from posthouse.mta.destinations import LocalMailbox
from posthouse.mta.errors import MailError
from posthouse.mta.expand import Expander, Refused, TrustedText
from posthouse.mta.local_mail import LocalMail

__all__ = ["MAX_CHECKED", "MAX_LOOKUPS", "AliasesOnly", "FullMailboxCheck", "Lookup"]

MAX_CHECKED = 50  # destinations of one recipient checked at RCPT time; more: accepted
MAX_LOOKUPS = 200  # alias lookups of one recipient's expansion at RCPT time; more: accepted

#: An alias lookup: the targets of a name, or None when it is no alias.
Lookup = Callable[[str], tuple[str, ...] | None]


class _OverBudget(Exception):
    """The expansion needs more alias lookups than RCPT time allows."""


class AliasesOnly:
    """The :class:`~posthouse.mta.expand.FileSource` of the RCPT-time expansion: no file is
    read then (a user is its own mailbox; an include file is left to delivery)."""

    def read_forward(self, user: str) -> TrustedText | Refused | None:
        return None

    def read_include(self, path: Path, parent_run_as: str) -> TrustedText | Refused:
        return Refused("not read at RCPT time", temporary=True)


@dataclass(frozen=True)
class FullMailboxCheck:
    """See the module docstring; call it with a recipient address.  ``expander(lookup)``
    makes the daemon's expander over :class:`AliasesOnly` with ``lookup`` for its alias
    lookups (``lookup_alias``, counted)."""

    lookup_alias: Lookup
    expander: Callable[[Lookup], Expander]
    local_mail: LocalMail
    store: StoreDelivery

    async def __call__(self, address: str) -> MailError | None:
        left = MAX_LOOKUPS

        def counted(name: str) -> tuple[str, ...] | None:
            nonlocal left
            left -= 1
            if left < 0:
                raise _OverBudget
            return self.lookup_alias(name)

        try:
            expansion = self.expander(counted).expand(address)
        except _OverBudget:
            return None
        deliveries = expansion.deliveries
        if expansion.errors or not deliveries or len(deliveries) > MAX_CHECKED:
            return None
        refusal: MailError | None = None
        for delivery in deliveries:
            destination = delivery.destination
            if not isinstance(destination, LocalMailbox):
                return None
            try:
                where = self.local_mail.target(destination.user)
            except MailError:
                return None
            if not isinstance(where, StoreMailbox):
                return None
            refusal = await self.store.over_quota(where)
            if refusal is None:
                return None  # this one takes the message: accepted
        return refusal
