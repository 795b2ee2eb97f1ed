"""Where a local user's mail goes: the one decision direct delivery and queue delivery share.

Both :mod:`posthouse.mta.direct` (at intake, while the client waits) and
:mod:`posthouse.mta.delivery` (queue runs) find their delivery agents through
:mod:`posthouse.mta.targets`, which asks :meth:`LocalMail.target` what to do with a
:class:`~posthouse.mta.destinations.LocalMailbox`, so the answer cannot differ between the
two routes.  The answer, in this order:

* with ``forwarding = local`` (12.2.3.2: "forward all mail, including local domain mail"),
  the relay as ``user@default_domain``;
* for a user whose service type keeps mail in the IMAP store (IMAP, IMAP with mail password,
  12.5.2), the user's INBOX in the store (:class:`~posthouse.mta.agents.store.StoreMailbox`),
  or for ``user+folder`` that folder when the store lets mail be posted to it;
* else the user's spool mailbox (``spool/mail/USER``, named only through
  :func:`~posthouse.mta.agents.mbox.mailbox_path`); a ``+detail`` is dropped there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from posthouse.mta.address import join_address, split_detail
from posthouse.mta.agents.mbox import SpoolMailbox, mailbox_path
from posthouse.mta.agents.store import StoreMailbox
from posthouse.mta.destinations import RemoteAddress

__all__ = ["LocalMail", "SpoolMailbox", "StoreMailbox"]


def _no_store(user: str) -> bool:
    return False


@dataclass(frozen=True)
class LocalMail:
    """The decision (module docstring).  ``relay_domain``: set when local mail is forwarded
    to the relay (``forwarding = local``), the domain it is addressed at there.
    ``uses_store``: whether a user's service type keeps their mail in the IMAP store."""

    spool_dir: Path
    relay_domain: str | None = None
    uses_store: Callable[[str], bool] = field(default=_no_store)

    def target(self, user: str) -> SpoolMailbox | StoreMailbox | RemoteAddress:
        """Where mail for ``user`` (``user+detail``) goes; raises
        :class:`~posthouse.mta.errors.MailError` (5.1.3) for a name that cannot be a mailbox."""
        if self.relay_domain is not None:
            return RemoteAddress(join_address(user, self.relay_domain))
        name, detail = split_detail(user)
        if self.uses_store(name):
            return StoreMailbox(name, detail)
        return SpoolMailbox(name, mailbox_path(self.spool_dir, name))
