"""The RCPT-time answer for a local user whose IMAP mailbox is over quota (chapter 12.5.8).

When a user's quota root is already over its limit, delivery fails temporarily until the
user makes room.  Saying so at ``RCPT TO`` (``452 4.2.2``, RFC 3463 "mailbox full", as
Cyrus's lmtpd does) leaves the message with the sending server, which retries for days,
instead of accepting it into this host's queue.  Only a plain local user's address is
checked (``user`` or ``user+folder`` at a local domain, not an alias); nothing is read but
the user table and the store's quota record, and any doubt answers "not full": delivery
checks again and defers the message then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from posthouse.mta.address import (
    normalize_local,
    split_address,
    split_detail,
    strip_angle_brackets,
    unquote_local,
)
from posthouse.mta.agents.store import StoreDelivery, StoreMailbox
from posthouse.mta.errors import MailError
from posthouse.mta.local_mail import LocalMail

__all__ = ["FullMailboxCheck"]


@dataclass(frozen=True)
class FullMailboxCheck:
    """See the module docstring; call it with a recipient address."""

    is_local_domain: Callable[[str], bool]
    is_alias: Callable[[str], bool]
    local_mail: LocalMail
    store: StoreDelivery

    async def __call__(self, address: str) -> MailError | None:
        local, domain = split_address(strip_angle_brackets(address))
        if domain and not self.is_local_domain(domain):
            return None
        local = unquote_local(local)
        name, detail = split_detail(local)
        if not name or self.is_alias(normalize_local(local)) or self.is_alias(name.lower()):
            return None
        key = name.lower() if detail is None else f"{name.lower()}+{detail}"
        try:
            where = self.local_mail.target(key)
        except MailError:
            return None
        if not isinstance(where, StoreMailbox):
            return None
        return await self.store.over_quota(where)
