"""Errors of the IMAP mail store, protocol-neutral: each server maps them to its reply codes.

Every error carries ``temporary`` (trying again later may help) like the MTA's and the
maildrop's errors.  The suggested IMAP response codes (RFC 5530) are in the docstrings; the
store itself never builds a protocol response.
"""

from __future__ import annotations

from posthouse.store.names import InvalidName, NoInbox

__all__ = [
    "AclChanged",
    "InvalidName",
    "MailboxExists",
    "MailboxNotFound",
    "MessageNotFound",
    "NoInbox",
    "NotPermitted",
    "OverQuota",
    "StoreError",
    "StoreUnavailable",
]


class StoreError(Exception):
    """Base of the store's errors; ``temporary`` tells whether a retry may succeed."""

    temporary = False

    def __init__(self, message: str, *, temporary: bool | None = None) -> None:
        super().__init__(message)
        if temporary is not None:
            self.temporary = temporary


class MailboxNotFound(StoreError):
    """No such mailbox, or one the user may not see (``[NONEXISTENT]``)."""


class MailboxExists(StoreError):
    """The name is taken (``[ALREADYEXISTS]``)."""


class NotPermitted(StoreError):
    """The user sees the mailbox but lacks the right for the operation (``[NOPERM]``)."""


class AclChanged(StoreError):
    """Another change of the ACL came first (a read-modify-write is tried again)."""

    temporary = True


class OverQuota(StoreError):
    """The quota root's limit would be exceeded (``[OVERQUOTA]``)."""


class MessageNotFound(StoreError):
    """The UID is not (or no longer) in the mailbox (``[EXPUNGEISSUED]`` / ``NO``)."""


class StoreUnavailable(StoreError):
    """An I/O error, a lock not obtained in time, a damaged index (``[UNAVAILABLE]``)."""

    temporary = True


class SpecialUseRefused(StoreError):
    """A special use the server does not support or the user has already (``[USEATTR]``)."""
