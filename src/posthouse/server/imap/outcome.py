"""How an IMAP command ends: `Outcome` (raised by the command groups) and the one mapping
of store errors to RFC 5530 response codes (`store_error_status`).

A mailbox the user may not see raises the same ``MailboxNotFound`` as a missing one, so
both answer NO [NONEXISTENT] (or [TRYCREATE] as a COPY/APPEND target, RFC 3501 §6.3.11);
[SERVERBUG] is only for the server's own faults (`unexpected`), never for user errors;
I/O errors are NO [UNAVAILABLE].
"""

from __future__ import annotations

import logging

from posthouse.protocols.imap.errors import CommandError
from posthouse.protocols.imap.response import (
    ALREADYEXISTS,
    EXPUNGEISSUED,
    LIMIT,
    NONEXISTENT,
    NOPERM,
    OVERQUOTA,
    SERVERBUG,
    UNAVAILABLE,
    Code,
    StatusName,
)
from posthouse.store.errors import (
    InvalidName,
    MailboxExists,
    MailboxNotFound,
    MessageNotFound,
    NoInbox,
    NotPermitted,
    OverQuota,
    SpecialUseRefused,
    StoreError,
    StoreUnavailable,
    UnknownPartition,
)

log = logging.getLogger("posthouse.imap")


class Outcome(Exception):
    """A command ends with this status (raised by the command groups)."""

    def __init__(self, status: StatusName, text: str, code: Code | None = None) -> None:
        super().__init__(text)
        self.status: StatusName = status
        self.text = text
        self.code = code


def store_error_status(error: StoreError | InvalidName, *, target: bool = False) -> Outcome:
    """The response to a store error; ``target``: the mailbox was a COPY/APPEND target
    (RFC 3501 §6.3.11: NO [TRYCREATE] when it does not exist)."""
    text = str(error) or type(error).__name__
    match error:
        case MailboxNotFound():
            code = Code("TRYCREATE") if target else NONEXISTENT
            return Outcome("NO", text, code)
        case MailboxExists():
            return Outcome("NO", text, ALREADYEXISTS)
        case NotPermitted():
            return Outcome("NO", text, NOPERM)
        case OverQuota():
            return Outcome("NO", text, OVERQUOTA)
        case MessageNotFound():
            return Outcome("NO", text, EXPUNGEISSUED)
        case SpecialUseRefused():
            return Outcome("NO", text, Code("USEATTR"))  # RFC 6154 §3
        case InvalidName() | NoInbox() | UnknownPartition():
            return Outcome("NO", text, Code("CANNOT"))
        case StoreUnavailable():
            return Outcome("NO", "The mail store is not available now, try again", UNAVAILABLE)
    temporary = isinstance(error, StoreError) and error.temporary
    return Outcome("NO", text, UNAVAILABLE if temporary else LIMIT)


def command_error(error: CommandError) -> Outcome:
    return Outcome(
        error.status, error.text, Code(*error.code.split(" ", 1)) if error.code else None
    )


def unexpected(what: str) -> Outcome:
    log.exception("imap: %s failed unexpectedly", what)
    return Outcome("NO", "Internal error; it has been logged", SERVERBUG)
