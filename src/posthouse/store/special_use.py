"""Which RFC 6154 special uses a CREATE may give a mailbox (CREATE-SPECIAL-USE, §3).

The uses of real mailboxes may be chosen: ``\\Archive``, ``\\Drafts``, ``\\Junk``, ``\\Sent``
and ``\\Trash``.  ``\\All`` and ``\\Flagged`` name virtual mailboxes, which this store has
not, and any other attribute is unknown: both are refused, as is a use that another of the
owner's mailboxes already has (one Sent folder per user, like Cyrus's "SPECIAL-USE flag
conflict").  A mailbox may have several uses; they are kept space-separated in its record.
Mailboxes outside the users' hierarchies (shared ones) have no owner to conflict with.
"""

from __future__ import annotations

from collections.abc import Iterable

from posthouse.store.backend import MailboxRecord
from posthouse.store.errors import SpecialUseRefused

CREATABLE = ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")
_BY_UPPER = {use.upper(): use for use in CREATABLE}


def uses_of(record: MailboxRecord) -> frozenset[str]:
    return frozenset(record.special_use.split())


def chosen_uses(requested: Iterable[str], owners_mailboxes: Iterable[MailboxRecord]) -> str:
    """The record value for the ``requested`` uses; SpecialUseRefused when one cannot be."""
    uses: list[str] = []
    for attribute in requested:
        use = _BY_UPPER.get(attribute.upper())
        if use is None:
            raise SpecialUseRefused(
                f"{attribute} is not a special use a mailbox can be created with"
                f" (these can: {' '.join(CREATABLE)})"
            )
        if use not in uses:
            uses.append(use)
    for record in owners_mailboxes:
        taken = uses_of(record).intersection(uses)
        if taken:
            raise SpecialUseRefused(f"{min(taken)} is already the use of another mailbox")
    return " ".join(uses)
