"""The local-delivery agent for the IMAP store: mail for IMAP-type users (chapter 12.5.2).

:class:`StoreDelivery` is a :class:`~posthouse.mta.agents.transaction.DeliveryAgent` whose
recipients are :class:`StoreMailbox` (a user, and the folder of ``user+folder@domain``).
One transaction is one message: at commit it is appended to every recipient's mailbox
through the store's one service (:meth:`posthouse.store.service.MailStore.deliver`, which
decides INBOX or folder by the mailbox's ACL and checks quota), and each append returns
only after the message file's fsync and the index's commit, so the SMTP ``250`` (or the
queue's "sent") follows durable delivery as with mbox spool files.  Each copy starts with
the ``Return-Path:`` of the transaction's sender, as Cyrus's lmtpd adds it.

The store expects its caller to supply the cached ENVELOPE, BODYSTRUCTURE and header
section; building them is the IMAP protocol's job, so the agent is given the same
:data:`Prepare` function the IMAP server's APPEND uses (wired by the application).

The store's errors become :class:`~posthouse.mta.errors.MailError` with RFC 3463 statuses
(:func:`store_error`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from posthouse.mta.agents.transaction import (
    MessageBody,
    MessageEnvelope,
    RecipientResult,
    TransactionBase,
)
from posthouse.mta.errors import MailError
from posthouse.store.acl import ANONYMOUS
from posthouse.store.backend import NewMessage
from posthouse.store.content import to_crlf
from posthouse.store.errors import (
    InvalidName,
    MailboxNotFound,
    NoInbox,
    NotPermitted,
    OverQuota,
    StoreError,
)
from posthouse.store.service import MailStore

__all__ = ["Prepare", "StoreDelivery", "StoreMailbox", "store_error"]

#: Builds the message to append with its caches: (content with CRLF, internal date, flags).
Prepare = Callable[[bytes, datetime, frozenset[str]], NewMessage]


@dataclass(frozen=True)
class StoreMailbox:
    """The store agent's recipient: ``user``'s INBOX, or ``folder`` below it when that
    mailbox exists and allows posting (else the INBOX, the store's rule)."""

    user: str
    folder: str | None = None


def store_error(user: str, exc: Exception) -> MailError:
    """What a failed delivery into ``user``'s mailbox means for the mail (RFC 3463)."""
    match exc:
        case MailboxNotFound() | NoInbox() | InvalidName():
            return MailError("5.1.1", f"{user}: mailbox unknown: {exc}")
        case NotPermitted():
            return MailError("5.7.1", f"{user}: posting not allowed: {exc}")
        case OverQuota():
            # Chapter 12.5.8: delivery over a quota root that is over its limit waits.
            return MailError("4.2.2", f"{user}: mailbox over quota: {exc}")
        case StoreError() if exc.temporary:
            return MailError("4.3.0", f"{user}: mail store unavailable: {exc}")
        case StoreError():
            return MailError("5.2.0", f"{user}: mail store refused the message: {exc}")
        case OSError():
            return MailError("4.3.0", f"{user}: mail store I/O error: {exc.strerror or exc}")
        case _:
            return MailError("4.3.0", f"{user}: internal error delivering to the store: {exc}")


class StoreDelivery:
    """The store delivery agent (module docstring).  ``store`` gives the process's one
    :class:`MailStore` (made on first use); ``poster`` is whose ``p`` right lets mail into
    a folder (``anonymous``: the MTA; ``deliver -a USER`` names a user); ``ignore_quota``:
    ``deliver -q``."""

    def __init__(
        self,
        store: Callable[[], MailStore],
        prepare: Prepare,
        *,
        poster: str = ANONYMOUS,
        ignore_quota: bool = False,
    ) -> None:
        self._store = store
        self._prepare = prepare
        self._poster = poster
        self._ignore_quota = ignore_quota

    def start(self, envelope: MessageEnvelope) -> StoreTransaction:
        return StoreTransaction(envelope, agent=self)

    async def message(self, envelope: MessageEnvelope, body: MessageBody) -> NewMessage:
        """The message as the store keeps it: Return-Path, CRLF line ends, caches built.
        Raises :class:`MailError` when it cannot be read or is over the store's limit."""
        limit = self._store().max_message_size
        if body.content is not None:
            content = body.content
        else:
            try:
                content = await asyncio.to_thread(_read, body, limit + 1)
            except OSError as exc:
                raise MailError("4.3.0", f"cannot read the message: {exc}") from None
        content = to_crlf(envelope.return_path + content)
        if len(content) > limit:
            raise MailError("5.3.4", f"message too big for the mail store (at most {limit} octets)")
        return await asyncio.to_thread(self._prepare, content, envelope.received, frozenset())

    async def deliver(self, box: StoreMailbox, message: NewMessage) -> MailError | None:
        """Append ``message`` durably to ``box``; None on success, else the error."""
        try:
            await self._store().deliver(
                box.user,
                [message],
                folder=box.folder,
                poster=self._poster,
                ignore_quota=self._ignore_quota,
            )
        except Exception as exc:  # every failure is a result, never an exception
            return store_error(box.user, exc)
        return None

    async def over_quota(self, box: StoreMailbox) -> MailError | None:
        """4.2.2 when ``box``'s quota root is already over its limit (asked at RCPT time);
        None otherwise: every other problem is found, and answered, at delivery."""
        try:
            await self._store().check_delivery(box.user, folder=box.folder, poster=self._poster)
        except OverQuota as exc:
            return store_error(box.user, exc)
        except (StoreError, InvalidName, OSError, sqlite3.Error):
            return None
        return None


def _read(body: MessageBody, limit: int) -> bytes:
    with body.open() as stream:
        return stream.read(limit)


class StoreTransaction(TransactionBase[StoreMailbox]):
    """One message for one or more users' mailboxes in the store."""

    def __init__(self, envelope: MessageEnvelope, *, agent: StoreDelivery) -> None:
        super().__init__(envelope)
        self._agent = agent

    async def commit(self) -> list[RecipientResult[StoreMailbox]]:
        body = self._begin_commit()
        try:
            message = await self._agent.message(self.envelope, body)
        except MailError as error:
            return self._all(error)
        errors = await asyncio.gather(*(self._agent.deliver(b, message) for b in self.recipients))
        return [RecipientResult(b, e) for b, e in zip(self.recipients, errors, strict=True)]
