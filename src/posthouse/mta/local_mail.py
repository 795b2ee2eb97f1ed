"""Where a local user's mail goes: the one decision direct delivery and queue delivery share.

Both :mod:`posthouse.mta.direct` (at intake, while the client waits) and
:mod:`posthouse.mta.delivery` (queue runs) find their delivery agents through
:mod:`posthouse.mta.targets`, which asks :meth:`LocalMail.target` what to do with a
:class:`~posthouse.mta.destinations.LocalMailbox`, so the answer cannot differ between the
two routes.  Today the answer is the user's spool mailbox (``spool/mail/USER``, named only
through :func:`~posthouse.mta.agents.mbox.mailbox_path`), or, with ``forwarding = local``
(12.2.3.2: "forward all mail, including local domain mail"), the relay as
``user@default_domain``.  The IMAP store will add the user's INBOX here, chosen by the
user's service type (12.5.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posthouse.mta.address import join_address
from posthouse.mta.agents.mbox import SpoolMailbox, mailbox_path
from posthouse.mta.destinations import RemoteAddress

__all__ = ["LocalMail", "SpoolMailbox"]


@dataclass(frozen=True)
class LocalMail:
    """The decision (module docstring).  ``relay_domain``: set when local mail is forwarded
    to the relay (``forwarding = local``), the domain it is addressed at there."""

    spool_dir: Path
    relay_domain: str | None = None

    def target(self, user: str) -> SpoolMailbox | RemoteAddress:
        """Where mail for ``user`` goes; raises :class:`~posthouse.mta.errors.MailError`
        (5.1.3) for a name that cannot be a mailbox."""
        if self.relay_domain is not None:
            return RemoteAddress(join_address(user, self.relay_domain))
        return SpoolMailbox(user, mailbox_path(self.spool_dir, user))
