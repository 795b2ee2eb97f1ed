"""``deliver`` (the chapter's deliver(8), 12.5): one message into users' mailboxes in the
IMAP store, as a local mailer or a user's program hands it over.

:func:`deliver_message` delivers exactly as the MTA's store agent does
(:class:`~posthouse.mta.agents.store.StoreDelivery`: ``Return-Path:`` of the sender, the
caches the IMAP server builds, durable before it returns), to each user's INBOX or, with a
folder (``-m``), to ``INBOX.folder`` when that mailbox lets ``poster`` (``-a``; else
``anonymous``) post to it.  It returns one result per user; a store that cannot be opened
is a temporary failure of every user, so the calling MTA retries.

``ignore_quota`` (``-q``) delivers whatever the quota says; ``suppress_duplicates`` (``-e``)
skips a user whose copy would be written to a mailbox this Message-ID was delivered to
already (the mailbox actually written: a folder that admits no posting means the INBOX), as
recorded in ``deliver.db`` under the IMAP configuration directory
(:mod:`posthouse.store.fs.delivered`; Message-ID and mailbox name, as Cyrus's duplicate
database); a message without a Message-ID is always delivered.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import time
from dataclasses import dataclass
from email.parser import BytesHeaderParser

from posthouse.admin.mailstore import as_store_owner
from posthouse.app import mail_store_for, store_delivery_for
from posthouse.config.schema import Settings
from posthouse.imap_layout import imap_config_dir
from posthouse.mta.agents.store import StoreMailbox
from posthouse.mta.agents.transaction import MessageBody, MessageEnvelope
from posthouse.mta.errors import MailError
from posthouse.store.acl import ANONYMOUS
from posthouse.store.errors import StoreError
from posthouse.store.fs.delivered import DeliveredLog
from posthouse.store.service import MailStore

__all__ = ["DeliverRequest", "DeliverResult", "deliver_message"]


@dataclass(frozen=True)
class DeliverRequest:
    users: tuple[str, ...]
    content: bytes
    sender: str  # "" for the null sender
    folder: str | None = None
    poster: str | None = None  # -a: whose posting right admits the message to the folder
    ignore_quota: bool = False  # -q
    suppress_duplicates: bool = False  # -e


@dataclass(frozen=True)
class DeliverResult:
    user: str
    error: MailError | None  # None: delivered (or, with ``duplicate``, delivered before)
    duplicate: bool = False


def deliver_message(settings: Settings, request: DeliverRequest) -> list[DeliverResult]:
    """Deliver the message to every user of the request (module docstring)."""
    users = [user.lower() for user in request.users]
    try:
        with as_store_owner(settings):
            return asyncio.run(_deliver(settings, request, users))
    except (StoreError, OSError, sqlite3.Error) as exc:
        error = MailError("4.3.0", f"the IMAP store cannot be opened: {exc}")
        return [DeliverResult(user, error) for user in users]


async def _deliver(
    settings: Settings, request: DeliverRequest, users: list[str]
) -> list[DeliverResult]:
    message_id = message_id_of(request.content) if request.suppress_duplicates else ""
    delivered = DeliveredLog(imap_config_dir(settings) / "deliver.db") if message_id else None
    store = mail_store_for(settings)
    try:
        mailboxes = await _mailboxes(store, request, users) if delivered is not None else {}
        duplicates = {
            user
            for user, mailbox in mailboxes.items()
            if delivered is not None and delivered.delivered(message_id, mailbox)
        }
        errors = await _store_deliver(store, request, [u for u in users if u not in duplicates])
        if delivered is not None:
            done = [u for u in users if u not in duplicates and errors[u] is None]
            delivered.record(message_id, [mailboxes[u] for u in done if u in mailboxes])
    finally:
        await store.backend.close()
        if delivered is not None:
            delivered.close()
    return [
        DeliverResult(user, None, duplicate=True)
        if user in duplicates
        else DeliverResult(user, errors[user])
        for user in users
    ]


async def _mailboxes(store: MailStore, request: DeliverRequest, users: list[str]) -> dict[str, str]:
    """The mailbox each user's copy is written to (the folder, or the INBOX it falls back
    to): Cyrus's duplicate database keys on it with the Message-ID.  A user whose mailbox
    cannot be found is left out: delivery reports why."""
    found = {}
    for user in users:
        try:
            found[user] = await store.delivery_mailbox(
                user, folder=request.folder, poster=request.poster or ANONYMOUS
            )
        except StoreError:
            continue
    return found


async def _store_deliver(
    store: MailStore, request: DeliverRequest, users: list[str]
) -> dict[str, MailError | None]:
    if not users:
        return {}
    agent = store_delivery_for(
        lambda: store, request.poster or ANONYMOUS, ignore_quota=request.ignore_quota
    )
    envelope = MessageEnvelope("deliver", request.sender, time.time(), len(request.content))
    transaction = agent.start(envelope)
    for user in users:
        transaction.add_recipient(StoreMailbox(user, request.folder))
    transaction.body(MessageBody(io.BytesIO, request.content))
    results = await transaction.commit()
    return {result.recipient.user: result.error for result in results}


def message_id_of(content: bytes) -> str:
    """The message's Message-ID as written (surrounding space removed), or ''."""
    value = BytesHeaderParser().parsebytes(content).get("Message-ID", "")
    return " ".join(str(value).split())
