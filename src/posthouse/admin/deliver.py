"""``deliver`` (the chapter's deliver(8), 12.5): one message into users' mailboxes in the
IMAP store, as a local mailer or a user's program hands it over.

:func:`deliver_message` delivers exactly as the MTA's store agent does
(:class:`~posthouse.mta.agents.store.StoreDelivery`: ``Return-Path:`` of the sender, the
caches the IMAP server builds, durable before it returns), to each user's INBOX or, with a
folder (``-m``), to ``INBOX.folder`` when that mailbox lets ``poster`` (``-a``; else
``anonymous``) post to it.  It returns one result per user; a store that cannot be opened
is a temporary failure of every user, so the calling MTA retries.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import time
from dataclasses import dataclass

from posthouse.app import mail_store_for, store_delivery_for
from posthouse.config.schema import Settings
from posthouse.mta.agents.store import StoreMailbox
from posthouse.mta.agents.transaction import MessageBody, MessageEnvelope
from posthouse.mta.errors import MailError
from posthouse.store.acl import ANONYMOUS
from posthouse.store.errors import StoreError

__all__ = ["DeliverRequest", "DeliverResult", "deliver_message"]


@dataclass(frozen=True)
class DeliverRequest:
    users: tuple[str, ...]
    content: bytes
    sender: str  # "" for the null sender
    folder: str | None = None
    poster: str | None = None  # -a: whose posting right admits the message to the folder


@dataclass(frozen=True)
class DeliverResult:
    user: str
    error: MailError | None  # None: delivered


def deliver_message(settings: Settings, request: DeliverRequest) -> list[DeliverResult]:
    """Deliver the message to every user of the request (module docstring)."""
    users = [user.lower() for user in request.users]
    try:
        return asyncio.run(_deliver(settings, request, users))
    except (StoreError, OSError, sqlite3.Error) as exc:
        error = MailError("4.3.0", f"the IMAP store cannot be opened: {exc}")
        return [DeliverResult(user, error) for user in users]


async def _deliver(
    settings: Settings, request: DeliverRequest, users: list[str]
) -> list[DeliverResult]:
    store = mail_store_for(settings)
    try:
        agent = store_delivery_for(lambda: store, request.poster or ANONYMOUS)
        envelope = MessageEnvelope("deliver", request.sender, time.time(), len(request.content))
        transaction = agent.start(envelope)
        for user in users:
            transaction.add_recipient(StoreMailbox(user, request.folder))
        transaction.body(MessageBody(io.BytesIO, request.content))
        results = await transaction.commit()
    finally:
        await store.backend.close()
    errors = {result.recipient.user: result.error for result in results}
    return [DeliverResult(user, errors[user]) for user in users]
