"""The local-delivery agent for mbox spool files: the store's appends, in the MTA's terms.

The spool itself (locking, the mboxrd format, the append transaction, group commit)
lives in :mod:`posthouse.store.mbox`; this module says what its outcomes mean for mail:

* :func:`mailbox_path` -- a user name that cannot be a spool file is a permanent
  ``5.1.3`` refusal;
* :func:`mailbox_error` -- a failed append is a *temporary* ``4.2.0`` failure (a locked,
  refused or unwritable mailbox: mail waits for it, as with mail.local), or ``4.3.0``
  for an unexpected error;
* :class:`MailboxWriter` -- the mbox :class:`~posthouse.mta.agents.transaction.DeliveryAgent`
  (recipients: :class:`SpoolMailbox`), over group-committed appends
  (:class:`~posthouse.store.mbox.writer.MboxAppender`): the messages of transactions
  committed together go into one mailbox under one lock with one fsync.  Each copy starts
  with the ``Return-Path:`` of the transaction's sender.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from posthouse.mta.agents.local_runner import PrefixedReader
from posthouse.mta.agents.transaction import MessageEnvelope, RecipientResult, TransactionBase
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

__all__ = ["MailboxWriter", "SpoolMailbox", "mailbox_error", "mailbox_path"]


@dataclass(frozen=True)
class SpoolMailbox:
    """The mbox spool file of local user ``user``: the mbox agent's recipient."""

    user: str
    path: Path


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
    """The mbox delivery agent: appends to mbox files with one lock and one fsync per batch
    and mailbox."""

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

    def start(self, envelope: MessageEnvelope) -> MboxTransaction:
        return MboxTransaction(envelope, writer=self)


class MboxTransaction(TransactionBase[SpoolMailbox]):
    """One message for one or more spool mailboxes."""

    def __init__(self, envelope: MessageEnvelope, *, writer: MailboxWriter) -> None:
        super().__init__(envelope)
        self._writer = writer

    async def commit(self) -> list[RecipientResult[SpoolMailbox]]:
        body = self._begin_commit()
        envelope = self.envelope
        received = envelope.received
        if body.content is not None:  # one copy in memory, shared by every mailbox
            shared = MboxMessage(envelope.sender, envelope.return_path + body.content, received)
            appends = [self._writer.append(box.path, shared) for box in self.recipients]
            errors = [await appends[0]] if len(appends) == 1 else await asyncio.gather(*appends)
            return [RecipientResult(b, e) for b, e in zip(self.recipients, errors, strict=True)]
        with contextlib.ExitStack() as files:
            appends = []
            for box in self.recipients:
                try:
                    stream = files.enter_context(body.open())
                except OSError as exc:
                    return self._all(MailError("4.3.0", f"cannot read the message: {exc}"))
                content = PrefixedReader(envelope.return_path, stream)
                message = MboxMessage(envelope.sender, content, received)  # type: ignore[arg-type]
                appends.append(self._writer.append(box.path, message))
            errors = await asyncio.gather(*appends)
        return [RecipientResult(b, e) for b, e in zip(self.recipients, errors, strict=True)]
