"""The local-delivery agent for mbox spool files: the store's appends, in the MTA's terms.

The spool itself (locking, the mboxrd format, the append transaction, group commit)
lives in :mod:`posthouse.store.mbox`; this module says what its outcomes mean for mail:

* :func:`mailbox_path` -- a user name that cannot be a spool file is a permanent
  ``5.1.3`` refusal;
* :func:`mailbox_error` -- a failed append is a *temporary* ``4.2.0`` failure (a locked,
  refused or unwritable mailbox: mail waits for it, as with mail.local), or ``4.3.0``
  for an unexpected error;
* :class:`MailboxWriter` -- group-committed appends
  (:class:`~posthouse.store.mbox.writer.MboxAppender`) answering with a
  :class:`~posthouse.mta.errors.MailError` or None.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

from posthouse.mta.errors import MailError
from posthouse.store.mbox.append import MboxMessage
from posthouse.store.mbox.locking import (
    LockSettings,
    MailboxLockTimeout,
    MailboxNameError,
    UnsafeMailboxError,
    spool_file,
)
from posthouse.store.mbox.writer import MboxAppender

__all__ = ["MailboxWriter", "mailbox_error", "mailbox_path"]


def mailbox_path(spool_dir: Path, user: str) -> Path:
    """``spool_dir/user``, or a permanent :class:`MailError` for a name that cannot be a
    mailbox (:func:`~posthouse.store.mbox.locking.spool_file`)."""
    try:
        return spool_file(spool_dir, user)
    except MailboxNameError as exc:
        raise MailError("5.1.3", str(exc)) from None


def mailbox_error(path: Path, exc: Exception) -> MailError:
    """What a failed append to mailbox ``path`` means for the mail."""
    match exc:
        case MailboxLockTimeout():
            return MailError("4.2.0", f"mailbox {path} is locked: {exc}")
        case UnsafeMailboxError():
            # Temporary, as mail.local has it: the administrator fixes the file, mail waits.
            return MailError("4.2.0", f"mailbox {path} refused: {exc.strerror}")
        case OSError():
            return MailError("4.2.0", f"cannot write mailbox {path}: {exc.strerror or exc}")
        case _:
            return MailError("4.3.0", f"internal error writing {path}: {exc}")


class MailboxWriter:
    """Appends to mbox files with one lock and one fsync per batch and mailbox."""

    def __init__(
        self,
        *,
        locking: LockSettings,
        owner_of: Callable[[Path], tuple[int, int] | None] = lambda _path: None,
        trusted_uids: Collection[int] = (),
    ) -> None:
        self._appender = MboxAppender(locking=locking, owner_of=owner_of, trusted_uids=trusted_uids)

    async def append(self, path: Path, message: MboxMessage) -> MailError | None:
        """Append ``message`` durably; returns None on success or the (temporary) error."""
        failure = await self._appender.append(path, message)
        return None if failure is None else mailbox_error(path, failure)
