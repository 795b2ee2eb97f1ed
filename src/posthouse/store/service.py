"""The mail service: the one API that IMAP, POP3, delivery and the tools use on the store.

:class:`MailStore` wraps a :class:`~posthouse.store.backend.MailStoreBackend` and enforces,
once, the rules of chapter 12.5.6-12.5.8: the namespace (``INBOX`` for ``user.NAME``, users
with dots have no INBOX, creating a user's INBOX creates the user with the SPECIAL-USE
folders, deleting it deletes all their mailboxes), the rights of each user on each mailbox
(:class:`~posthouse.store.policy.AccessPolicy`; a user lacking a right on a mailbox the user
may not look up gets the answer a missing mailbox gets), seen state per user, and quota checks
(:class:`~posthouse.store.policy.QuotaPolicy`).  :meth:`MailStore.session` gives one logged-in
user's view (:class:`UserSession`), in the names that user sees.

**Why async.**  The callers are asyncio servers and the planned second backend is PostgreSQL
through asyncpg, whose calls are coroutines: an async service lets that backend run on the
event loop without a thread per call, while the file-system backend (blocking SQLite and
fsync) runs its work on its own thread pool behind the same coroutines.  The sans-I/O IMAP
engine does not call the store itself; the server that drives it awaits these methods.
Blocking callers (the POP3 maildrop, run in a thread; command-line tools) run the
coroutines with ``asyncio.run`` or hand them to the server's loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from posthouse.store.acl import ANONYMOUS, format_rights, parse_rights
from posthouse.store.backend import (
    AppendResult,
    MailboxRecord,
    MailStoreBackend,
    NewMailbox,
    NewMessage,
    ReconstructReport,
)
from posthouse.store.content import to_crlf
from posthouse.store.errors import (
    MailboxExists,
    MailboxNotFound,
    StoreError,
    UnknownPartition,
)
from posthouse.store.flags import check_flags
from posthouse.store.names import (
    SEPARATOR,
    InvalidName,
    UserView,
    check_name,
    check_user_name,
    children_prefix,
    parent_of,
    user_inbox,
)
from posthouse.store.policy import AccessPolicy, CyrusAccess, QuotaPolicy
from posthouse.store.quota_policy import RootLimits
from posthouse.store.session import ListItem, OpenMailbox, UserSession

__all__ = [
    "DEFAULT_FOLDERS",
    "ListItem",
    "MailStore",
    "OpenMailbox",
    "UserSession",
]

#: The folders a new user gets, with their RFC 6154 SPECIAL-USE attributes.
DEFAULT_FOLDERS = (
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
)
OWNER_ACL_RIGHTS = "lrswipkxtea"


@dataclass
class MailStore:
    """The store's one service (see the module docstring)."""

    backend: MailStoreBackend
    access: AccessPolicy = field(default_factory=CyrusAccess)
    quota: QuotaPolicy = field(default_factory=RootLimits)
    default_partition: str = "default"
    default_acl: str = ""  # imapd.conf defaultacl: a top-level mailbox's ACL
    max_message_size: int = 64 * 1024 * 1024  # octets; the engine announces it (APPENDLIMIT)
    max_messages_per_append: int = 10_000  # one MULTIAPPEND or delivery batch
    quota_warn: int = 90  # imapd.conf quotawarn: the percentage of a root that draws an alert

    def checked(self, messages: Sequence[NewMessage]) -> list[NewMessage]:
        """The messages with CRLF line ends and valid flags, within the limits."""
        if len(messages) > self.max_messages_per_append:
            raise StoreError(f"at most {self.max_messages_per_append} messages at once")
        result = [_normalised(m) for m in messages]
        for message in result:
            if len(message.content) > self.max_message_size:
                raise StoreError(
                    f"a message is at most {self.max_message_size} octets"
                    f" (this one has {len(message.content)})"
                )
        return result

    def session(self, user: str) -> UserSession:
        """The login-time view of ``user`` (who may have no INBOX)."""
        return UserSession(self, UserView(check_user_name(user)))

    # -- users --

    async def create_user(self, user: str, *, rights: str = OWNER_ACL_RIGHTS) -> MailboxRecord:
        """Create ``user``'s INBOX, the SPECIAL-USE folders, and subscribe the user to them
        (chapter 12.5.6; what ``mailusradm`` calls when a user becomes IMAP type).  ``rights``:
        the user's own rights on them (12.5.2 step 8, "in most cases ... All");
        :class:`~posthouse.store.acl.AclError` for a letter that is no right."""
        inbox = user_inbox(user)
        acl = f"{user}\t{format_rights(parse_rights(rights))}\t"
        record = await self.backend.create_mailbox(NewMailbox(inbox, self.default_partition, acl))
        await self.backend.set_subscribed(user, inbox, True)
        for folder, special_use in DEFAULT_FOLDERS:
            name = inbox + SEPARATOR + folder
            with contextlib.suppress(MailboxExists):  # an administrator made it already
                await self.backend.create_mailbox(
                    NewMailbox(name, record.partition, acl, special_use=special_use)
                )
            await self.backend.set_subscribed(user, name, True)
        return record

    async def delete_user(self, user: str) -> list[str]:
        """Delete ``user``'s INBOX and every mailbox below it, and the user's subscriptions
        (chapter 12.5.5's ``user/NAME.sub``); returns the names deleted."""
        inbox = user_inbox(user)
        deleted = await self._delete_tree(inbox)
        await self.backend.forget_subscriptions(user)
        return deleted

    async def _delete_tree(self, name: str) -> list[str]:
        records = await self.backend.list_mailboxes(children_prefix(name))
        own = await self.backend.get_mailbox(name)
        names = [r.name for r in records] + ([own.name] if own else [])
        if not names:
            raise MailboxNotFound(f"no mailbox {name}")
        deleted = await self.backend.delete_mailboxes(names)
        return [r.name for r in deleted]

    async def deliver(
        self,
        user: str,
        messages: Sequence[NewMessage],
        *,
        folder: str | None = None,
        poster: str = ANONYMOUS,
        ignore_quota: bool = False,
    ) -> AppendResult:
        """Local delivery into ``user``'s INBOX (the MTA's agent and ``deliver`` call this).
        ``ignore_quota``: ``deliver -q``, the quota is not checked (Cyrus's deliver -q).

        With ``folder`` (``user+folder@domain``, ``deliver -m folder``) the message goes to
        ``INBOX.folder`` when that mailbox lets the delivery system post to it (the ``p``
        right of ``poster``: ``anonymous`` unless ``deliver -a`` names who posts, chapter
        12.5.7), else to the INBOX, as Cyrus's deliver does.
        """
        record = await self._delivery_target(user, folder, poster)
        messages = self.checked(messages)
        if not ignore_quota:
            await self.quota.check(
                self.backend, record, sum(len(m.content) for m in messages), delivery=True
            )
        return await self.backend.append(record.id, messages)

    async def check_delivery(
        self, user: str, *, folder: str | None = None, poster: str = ANONYMOUS
    ) -> None:
        """Raise what :meth:`deliver` would before any message is seen (the MTA asks at RCPT
        time): above all :class:`~posthouse.store.errors.OverQuota` when the mailbox's root is
        already over its limit (chapter 12.5.8), so the sender is told to retry at once."""
        record = await self._delivery_target(user, folder, poster)
        await self.quota.check(self.backend, record, 0, delivery=True)

    async def delivery_mailbox(
        self, user: str, *, folder: str | None = None, poster: str = ANONYMOUS
    ) -> str:
        """The name of the mailbox :meth:`deliver` writes to now (the folder, or the INBOX it
        falls back to): what ``deliver -e`` keys its duplicates on, as Cyrus's does."""
        return (await self._delivery_target(user, folder, poster)).name

    async def _delivery_target(self, user: str, folder: str | None, poster: str) -> MailboxRecord:
        inbox = user_inbox(user)
        record = None
        if folder:
            try:
                target = await self.backend.get_mailbox(check_name(inbox + SEPARATOR + folder))
            except InvalidName:  # not a mailbox name: the INBOX, as for a missing folder
                target = None
            if target is not None and "p" in self.rights(poster, target):
                record = target
        if record is None:
            record = await self.backend.get_mailbox(inbox)
        if record is None:
            raise MailboxNotFound(f"user {user} has no INBOX")
        return record

    # -- helpers for sessions --

    def rights(self, user: str, record: MailboxRecord) -> frozenset[str]:
        return self.access.rights(user, record)

    async def reconstruct(self, name: str, *, recursive: bool = False) -> list[ReconstructReport]:
        """Rebuild ``name``'s index (and with ``recursive`` its inferiors'), chapter 12.5.5;
        :class:`MailboxNotFound` if ``name`` does not exist."""
        record = await self.backend.get_mailbox(check_name(name))
        if record is None:
            raise MailboxNotFound(f"no mailbox {name}")
        names = [record.name]
        if recursive:
            names += [r.name for r in await self.backend.list_mailboxes(children_prefix(name))]
        return [await self.backend.reconstruct(each) for each in names]

    async def check_partition(self, partition: str) -> None:
        """:class:`UnknownPartition` unless ``partition`` is configured (chapter 12.5.9)."""
        known = self.backend.partitions()
        if partition not in known:
            names = ", ".join(sorted(known))
            raise UnknownPartition(f"no partition named {partition!r} (configured: {names})")

    async def closest_existing(self, name: str) -> MailboxRecord | None:
        parent = parent_of(name)
        while parent is not None:
            record = await self.backend.get_mailbox(parent)
            if record is not None:
                return record
            parent = parent_of(parent)
        return None


def _normalised(message: NewMessage) -> NewMessage:
    content = to_crlf(message.content)
    flags = check_flags(message.flags)
    if content is message.content and flags == message.flags:
        return message
    return NewMessage(
        content,
        message.internal_date,
        flags,
        message.envelope,
        message.bodystructure,
        message.header,
    )
