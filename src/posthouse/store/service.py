"""The mail service: the one API that IMAP, POP3, delivery and the tools use on the store.

:class:`MailStore` wraps a :class:`~posthouse.store.backend.MailStoreBackend` and enforces,
once, the rules of chapter 12.5.6-12.5.8: the namespace (``INBOX`` for ``user.NAME``, users
with dots have no INBOX, creating a user's INBOX creates the user with the SPECIAL-USE
folders, deleting it deletes all their mailboxes), the rights of each user on each mailbox
(:class:`~posthouse.store.policy.AccessPolicy`; a mailbox the user may neither list nor read
answers as one that does not exist), seen state per user, and quota checks
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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from posthouse.store.acl import ANONYMOUS
from posthouse.store.backend import (
    SYSTEM_FLAGS,
    AppendResult,
    Changes,
    CopyResult,
    ExpungeResult,
    FlagChange,
    FlagMode,
    MailboxRecord,
    MailboxSnapshot,
    MailboxStatus,
    MailStoreBackend,
    MessageMeta,
    NewMailbox,
    NewMessage,
    StoreResult,
    Viewer,
)
from posthouse.store.errors import (
    MailboxExists,
    MailboxNotFound,
    NotPermitted,
    StoreError,
)
from posthouse.store.names import (
    INBOX,
    SEPARATOR,
    USER_PREFIX,
    UserView,
    check_name,
    check_user_name,
    children_prefix,
    owner_of,
    parent_of,
    user_inbox,
)
from posthouse.store.patterns import join_reference, listing, literal_prefix
from posthouse.store.policy import AccessPolicy, CountOnlyQuota, CyrusAccess, QuotaPolicy
from posthouse.store.uidset import UidSet

__all__ = [
    "DEFAULT_FOLDERS",
    "ListItem",
    "MailStore",
    "OpenMailbox",
    "UserSession",
    "to_crlf",
]

#: The folders a new user gets, with their RFC 6154 SPECIAL-USE attributes.
DEFAULT_FOLDERS = (
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
)
OWNER_ACL_RIGHTS = "lrswipkxtea"
MAX_FLAG_LENGTH = 100
MAX_FLAGS = 64
_ATOM = re.compile(r"[\x21-\x7e]+\Z")
_ATOM_SPECIALS = set('(){%*"\\]')
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


def to_crlf(content: bytes) -> bytes:
    """Every line end as CRLF, as the store keeps messages (chapter 12.5.5)."""
    crlf = content.count(b"\r\n")
    if content.count(b"\n") == crlf and content.count(b"\r") == crlf:
        return content
    return _LINE_ENDS.sub(b"\r\n", content)


def check_flags(flags: frozenset[str]) -> frozenset[str]:
    """System flags in their canonical case plus valid keywords (RFC 3501 §2.3.2, flag-keyword
    is an atom); \\Recent cannot be set (RFC 3501 §6.4.6)."""
    if len(flags) > MAX_FLAGS:
        raise StoreError(f"at most {MAX_FLAGS} flags at once")
    canonical = {flag.upper(): flag for flag in SYSTEM_FLAGS}
    result = set()
    for flag in flags:
        if flag.startswith("\\"):
            if flag.upper() == "\\RECENT":
                continue
            if flag.upper() not in canonical:
                raise StoreError(f"{flag} is not a flag a message can have")
            result.add(canonical[flag.upper()])
        elif len(flag) > MAX_FLAG_LENGTH or not _ATOM.match(flag) or _ATOM_SPECIALS & set(flag):
            raise StoreError(f"{flag!r} is not a valid keyword")
        else:
            result.add(flag)
    return frozenset(result)


@dataclass(frozen=True)
class ListItem:
    """One LIST/LSUB answer: the name the user sees and its attributes (RFC 3501 §7.2.2,
    RFC 3348 CHILDREN, RFC 6154 SPECIAL-USE)."""

    name: str
    attributes: frozenset[str]


@dataclass(frozen=True)
class OpenMailbox:
    """A selected (or examined) mailbox: what the session may do and the snapshot taken."""

    record: MailboxRecord
    name: str
    rights: frozenset[str]
    viewer: Viewer
    read_only: bool
    snapshot: MailboxSnapshot
    flags: tuple[str, ...]
    permanent_flags: tuple[str, ...]
    keeps_seen: bool = True

    @property
    def mailbox_id(self) -> str:
        return self.record.id


@dataclass
class MailStore:
    """The store's one service (see the module docstring)."""

    backend: MailStoreBackend
    access: AccessPolicy = field(default_factory=CyrusAccess)
    quota: QuotaPolicy = field(default_factory=CountOnlyQuota)
    default_partition: str = "default"
    default_acl: str = ""  # imapd.conf defaultacl: a top-level mailbox's ACL
    max_message_size: int = 64 * 1024 * 1024  # octets; the engine announces it (APPENDLIMIT)
    max_messages_per_append: int = 10_000  # one MULTIAPPEND or delivery batch

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

    async def create_user(self, user: str) -> MailboxRecord:
        """Create ``user``'s INBOX, the SPECIAL-USE folders, and subscribe the user to them
        (chapter 12.5.6; what ``mailusradm`` calls when a user becomes IMAP type)."""
        inbox = user_inbox(user)
        acl = f"{user}\t{OWNER_ACL_RIGHTS}\t"
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
        """Delete ``user``'s INBOX and every mailbox below it; returns the names deleted."""
        inbox = user_inbox(user)
        return await self._delete_tree(inbox)

    async def _delete_tree(self, name: str) -> list[str]:
        records = await self.backend.list_mailboxes(children_prefix(name))
        own = await self.backend.get_mailbox(name)
        names = [r.name for r in records] + ([own.name] if own else [])
        if not names:
            raise MailboxNotFound(f"no mailbox {name}")
        deleted = await self.backend.delete_mailboxes(names)
        return [r.name for r in deleted]

    async def deliver(
        self, user: str, messages: Sequence[NewMessage], *, folder: str | None = None
    ) -> AppendResult:
        """Local delivery into ``user``'s INBOX (the MTA's agent and ``deliver`` call this).

        With ``folder`` (``user+folder@domain``, ``deliver -m folder``) the message goes to
        ``INBOX.folder`` when that mailbox lets the delivery system post to it (the ``p``
        right of ``anonymous``, chapter 12.5.7), else to the INBOX, as Cyrus's deliver does.
        """
        inbox = user_inbox(user)
        record = None
        if folder:
            target = await self.backend.get_mailbox(check_name(inbox + SEPARATOR + folder))
            if target is not None and "p" in self.rights(ANONYMOUS, target):
                record = target
        if record is None:
            record = await self.backend.get_mailbox(inbox)
        if record is None:
            raise MailboxNotFound(f"user {user} has no INBOX")
        messages = self.checked(messages)
        await self.quota.check(
            self.backend, record, sum(len(m.content) for m in messages), delivery=True
        )
        return await self.backend.append(record.id, messages)

    # -- helpers for sessions --

    def rights(self, user: str, record: MailboxRecord) -> frozenset[str]:
        return self.access.rights(user, record)

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


class UserSession:
    """One logged-in user's view of the store: names as the user sees them, rights checked.

    A mailbox the user may neither look up (``l``) nor read (``r``) raises
    :class:`MailboxNotFound`, exactly as a missing one (RFC 4314 §6).
    """

    def __init__(self, store: MailStore, view: UserView) -> None:
        self.service = store
        self.view = view
        self.backend = store.backend

    @property
    def user(self) -> str:
        return self.view.user

    @property
    def is_admin(self) -> bool:
        return self.service.access.is_admin(self.user)

    def namespace(self) -> tuple[tuple[str, str] | None, tuple[str, str], tuple[str, str]]:
        """RFC 2342 NAMESPACE: (personal, other users, shared) as (prefix, separator); no
        personal namespace for users without an INBOX."""
        personal = (INBOX + SEPARATOR, SEPARATOR) if self.view.has_inbox else None
        return personal, (USER_PREFIX + SEPARATOR, SEPARATOR), ("", SEPARATOR)

    # -- names and rights --

    def _viewer(self, record: MailboxRecord) -> Viewer:
        return Viewer(self.user, private_seen=owner_of(record.name) != self.user)

    async def _find(self, visible: str) -> tuple[MailboxRecord, frozenset[str]]:
        name = self.view.to_internal(visible)
        record = await self.backend.get_mailbox(name)
        if record is None:
            raise MailboxNotFound(f"mailbox {visible} does not exist")
        rights = self.service.rights(self.user, record)
        if not rights & {"l", "r"}:
            raise MailboxNotFound(f"mailbox {visible} does not exist")
        return record, rights

    @staticmethod
    def _require(rights: frozenset[str], needed: str, what: str) -> None:
        missing = set(needed) - rights
        if missing:
            raise NotPermitted(f"you may not {what} (missing rights {''.join(sorted(missing))})")

    # -- LIST, LSUB, subscriptions --

    async def list_mailboxes(self, reference: str, pattern: str) -> list[ListItem]:
        """RFC 3501 §6.3.8 LIST in this user's names (``l`` decides what is seen)."""
        full = join_reference(reference, pattern)
        if not full:
            return [ListItem("", frozenset({"\\Noselect"}))]  # the hierarchy delimiter query
        prefix = literal_prefix(full)
        records = {r.name: r for r in await self.backend.list_mailboxes(prefix)}
        if self.view.has_inbox:
            inbox = self.view.inbox
            for r in await self.backend.list_mailboxes(inbox):
                if r.name == inbox or r.name.startswith(children_prefix(inbox)):
                    records[r.name] = r
        visible = {
            self.view.to_visible(r.name): r
            for r in records.values()
            if "l" in self.service.rights(self.user, r)
        }
        subscribed = await self.backend.subscriptions(self.user)
        items = []
        for match in listing(full, visible):
            attributes = {"\\HasChildren" if match.has_children else "\\HasNoChildren"}
            if not match.exists:
                attributes.add("\\Noselect")
            else:
                record = visible[match.name]
                if record.special_use:
                    attributes.add(record.special_use)
                if record.name in subscribed:
                    attributes.add("\\Subscribed")
            items.append(ListItem(match.name, frozenset(attributes)))
        return items

    async def list_subscribed(self, reference: str, pattern: str) -> list[ListItem]:
        """RFC 3501 §6.3.9 LSUB: the subscribed names matching, existing or not."""
        full = join_reference(reference, pattern)
        names = {self.view.to_visible(n) for n in await self.backend.subscriptions(self.user)}
        return [
            ListItem(m.name, frozenset() if m.exists else frozenset({"\\Noselect"}))
            for m in listing(full, names)
        ]

    async def subscribe(self, visible: str) -> None:
        """RFC 3501 §6.3.6 (a name that does not exist may be subscribed)."""
        await self.backend.set_subscribed(self.user, self.view.to_internal(visible), True)

    async def unsubscribe(self, visible: str) -> None:
        await self.backend.set_subscribed(self.user, self.view.to_internal(visible), False)

    # -- CREATE, DELETE, RENAME --

    async def create(self, visible: str, *, partition: str | None = None) -> MailboxRecord:
        """RFC 3501 §6.3.3.  Creating ``INBOX`` when it does not exist creates the user.

        A new mailbox takes its closest existing parent's ACL and partition (chapter 12.5.7,
        12.5.9), a top-level one ``defaultacl`` and the default partition.  Only an
        administrator names a ``partition`` (cyradm); IMAP clients never can."""
        if partition is not None and not self.is_admin:
            raise NotPermitted("only an administrator chooses a partition")
        # RFC 3501 §6.3.3: a trailing separator only declares the intent to hold children.
        name = self.view.to_internal(visible[:-1] if visible.endswith(SEPARATOR) else visible)
        if self.view.has_inbox and name == self.view.inbox:
            return await self.service.create_user(self.user)
        if owner_of(name) is not None and parent_of(name) == USER_PREFIX:
            if not self.is_admin:  # user.X itself is created with the user
                raise NotPermitted("only an administrator creates users' INBOXes")
            return await self.service.create_user(owner_of(name) or "")
        parent = await self.service.closest_existing(name)
        if parent is None:
            if not self.is_admin:
                raise NotPermitted("only an administrator creates top-level mailboxes")
            acl, inherited = self.service.default_acl, self.service.default_partition
        else:
            if not self.is_admin:
                rights = self.service.rights(self.user, parent)
                if not rights & {"l", "r"}:
                    raise NotPermitted(f"you may not create mailboxes under {visible}")
                self._require(rights, "k", "create mailboxes here")
            acl, inherited = parent.acl, parent.partition
        return await self.backend.create_mailbox(NewMailbox(name, partition or inherited, acl))

    async def delete(self, visible: str) -> list[str]:
        """RFC 3501 §6.3.4: INBOX cannot be deleted by its user; an administrator deleting
        ``user.NAME`` deletes all of NAME's mailboxes (chapter 12.5.6)."""
        name = self.view.to_internal(visible)
        if self.view.has_inbox and name == self.view.inbox and not self.is_admin:
            raise NotPermitted("INBOX cannot be deleted")
        record, rights = await self._find(visible)
        if not self.is_admin:
            self._require(rights, "x", "delete this mailbox")
        if owner_of(name) is not None and parent_of(name) == USER_PREFIX:
            return await self.service.delete_user(owner_of(name) or "")
        deleted = await self.backend.delete_mailboxes([record.name])
        return [self.view.to_visible(r.name) for r in deleted]

    async def rename(self, old_visible: str, new_visible: str) -> list[tuple[str, str]]:
        """RFC 3501 §6.3.5; renaming INBOX moves its messages to the new mailbox and leaves
        INBOX (and INBOX's inferiors) where they are."""
        old = self.view.to_internal(old_visible)
        new = self.view.to_internal(new_visible)
        record, rights = await self._find(old_visible)
        if not self.is_admin:
            self._require(rights, "x", "rename this mailbox")
        if await self.backend.get_mailbox(new) is not None:
            raise MailboxExists(f"mailbox {new_visible} already exists")
        parent = await self.service.closest_existing(new)
        if not self.is_admin and (
            parent is None or "k" not in self.service.rights(self.user, parent)
        ):
            raise NotPermitted(f"you may not create {new_visible}")
        if self.view.has_inbox and old == self.view.inbox:
            target = await self.backend.create_mailbox(
                NewMailbox(new, record.partition, record.acl)
            )
            snapshot = await self.backend.snapshot(record.id, viewer=self._viewer(record))
            if snapshot.uids:
                await self.backend.copy(record.id, UidSet.of(snapshot.uids), target.id, move=True)
            return [(old_visible, new_visible)]
        pairs = await self.backend.rename_mailbox(old, new)
        return [(self.view.to_visible(a), self.view.to_visible(b)) for a, b in pairs]

    # -- SELECT, EXAMINE, STATUS --

    async def select(self, visible: str, *, read_only: bool = False) -> OpenMailbox:
        """RFC 3501 §6.3.1/§6.3.2: the snapshot; \\Recent is claimed unless read-only."""
        record, rights = await self._find(visible)
        self._require(rights, "r", "read this mailbox")
        viewer = self._viewer(record)
        writable = bool(rights & set("wsitex"))
        read_only = read_only or not writable
        keeps_seen = "s" in rights
        snapshot = await self.backend.snapshot(record.id, viewer=viewer)
        if not read_only and keeps_seen:  # what this session shows as \Recent, no other will
            await self.backend.claim_recent(record.id, self.user, snapshot.status.uidnext - 1)
        flags = tuple(SYSTEM_FLAGS) + snapshot.keywords
        permanent: list[str] = []
        if not read_only:
            permanent += [f for f in SYSTEM_FLAGS if _right_for_flag(f) in rights]
            if "w" in rights:
                permanent += [*snapshot.keywords, "\\*"]
        return OpenMailbox(
            record=record,
            name=self.view.to_visible(record.name),
            rights=rights,
            viewer=viewer,
            read_only=read_only,
            snapshot=snapshot,
            flags=flags,
            permanent_flags=tuple(permanent),
            keeps_seen=keeps_seen,
        )

    async def status(self, visible: str) -> MailboxStatus:
        record, rights = await self._find(visible)
        self._require(rights, "r", "read this mailbox")
        return await self.backend.status(record.id, viewer=self._viewer(record))

    # -- messages --

    async def append(self, visible: str, messages: Sequence[NewMessage]) -> AppendResult:
        """RFC 3501 §6.3.11 / RFC 3502 MULTIAPPEND: all the messages or none."""
        record, rights = await self._find(visible)
        self._require(rights, "i", "append to this mailbox")
        messages = self.service.checked(messages)
        if any("\\Seen" in m.flags for m in messages) and "s" not in rights:
            messages = [_without(m, "\\Seen") for m in messages]
        await self.service.quota.check(
            self.backend, record, sum(len(m.content) for m in messages), delivery=False
        )
        viewer = self._viewer(record)
        if not viewer.private_seen:
            return await self.backend.append(record.id, messages)
        seen = [i for i, m in enumerate(messages) if "\\Seen" in m.flags]
        result = await self.backend.append(record.id, [_without(m, "\\Seen") for m in messages])
        if seen:
            await self.backend.store_flags(
                record.id,
                UidSet.of(result.uids[i] for i in seen),
                FlagChange(FlagMode.ADD, frozenset({"\\Seen"})),
                viewer=viewer,
            )
        return result

    async def fetch(
        self, mailbox: OpenMailbox, uids: UidSet, *, cached: bool = False
    ) -> list[MessageMeta]:
        return await self.backend.fetch(
            mailbox.mailbox_id, uids, viewer=mailbox.viewer, cached=cached
        )

    async def search_headers(
        self, mailbox: OpenMailbox, uids: UidSet, field: str, needle: bytes
    ) -> tuple[UidSet, UidSet]:
        """SEARCH HEADER from the cached header sections: (matches, UIDs without a cached
        header, which the caller searches in the message itself)."""
        return await self.backend.search_headers(mailbox.mailbox_id, uids, field, needle)

    async def read_message(self, mailbox: OpenMailbox, uid: int) -> bytes:
        return await self.backend.read_message(mailbox.mailbox_id, uid)

    def open_message(self, mailbox: OpenMailbox, uid: int) -> BinaryIO:
        """A blocking file object of the message (read it in a thread)."""
        return self.backend.open_message(mailbox.mailbox_id, uid)

    async def store_flags(
        self,
        mailbox: OpenMailbox,
        uids: UidSet,
        change: FlagChange,
        *,
        unchanged_since: int | None = None,
    ) -> StoreResult:
        """RFC 3501 §6.4.6 with RFC 7162 UNCHANGEDSINCE; flags the user has no right to
        change are left alone (\\Seen needs ``s``, \\Deleted ``t``, the rest ``w``)."""
        if mailbox.read_only:
            raise NotPermitted("the mailbox is read-only")
        flags = check_flags(change.flags)
        allowed = frozenset(f for f in flags if _right_for_flag(f) in mailbox.rights)
        if change.mode is FlagMode.REPLACE:
            # Replacing only touches the flags the user may change: keep the others as they are.
            return await self._replace_permitted(mailbox, uids, allowed, unchanged_since)
        if not allowed:
            return StoreResult(())
        return await self.backend.store_flags(
            mailbox.mailbox_id,
            uids,
            FlagChange(change.mode, allowed),
            viewer=mailbox.viewer,
            unchanged_since=unchanged_since,
        )

    async def _replace_permitted(
        self, mailbox: OpenMailbox, uids: UidSet, flags: frozenset[str], since: int | None
    ) -> StoreResult:
        if {"s", "t", "w"} <= mailbox.rights:
            return await self.backend.store_flags(
                mailbox.mailbox_id,
                uids,
                FlagChange(FlagMode.REPLACE, flags),
                viewer=mailbox.viewer,
                unchanged_since=since,
            )
        changeable = [f for f in SYSTEM_FLAGS if _right_for_flag(f) in mailbox.rights]
        removed = frozenset(changeable) - flags
        added = await self.backend.store_flags(
            mailbox.mailbox_id,
            uids,
            FlagChange(FlagMode.ADD, flags),
            viewer=mailbox.viewer,
            unchanged_since=since,
        )
        if removed:
            taken = await self.backend.store_flags(
                mailbox.mailbox_id,
                uids,
                FlagChange(FlagMode.REMOVE, removed),
                viewer=mailbox.viewer,
                unchanged_since=since,
            )
            latest = {m.uid: m for m in added.changed + taken.changed}
            return StoreResult(tuple(latest[u] for u in sorted(latest)), added.failed)
        return added

    async def expunge(self, mailbox: OpenMailbox, uids: UidSet | None = None) -> ExpungeResult:
        """RFC 3501 §6.4.3 (all \\Deleted) or RFC 4315 UID EXPUNGE (those in ``uids``)."""
        if mailbox.read_only:
            raise NotPermitted("the mailbox is read-only")
        self._require(mailbox.rights, "e", "expunge messages here")
        return await self.backend.expunge(mailbox.mailbox_id, uids)

    async def copy(
        self, mailbox: OpenMailbox, uids: UidSet, target_visible: str, *, move: bool = False
    ) -> CopyResult:
        """RFC 3501 §6.4.7 COPY, RFC 6851 MOVE; the result carries RFC 4315 COPYUID data."""
        target, rights = await self._find(target_visible)
        self._require(rights, "i", "copy messages into that mailbox")
        if move:
            if mailbox.read_only:
                raise NotPermitted("the mailbox is read-only")
            self._require(mailbox.rights, "te", "move messages out of this mailbox")
        metas = await self.backend.fetch(mailbox.mailbox_id, uids, viewer=mailbox.viewer)
        await self.service.quota.check(
            self.backend, target, sum(m.size for m in metas), delivery=False
        )
        return await self.backend.copy(mailbox.mailbox_id, uids, target.id, move=move)

    async def changes_since(self, mailbox: OpenMailbox, modseq: int) -> Changes:
        """RFC 7162 CHANGEDSINCE / QRESYNC: changed messages and VANISHED UIDs."""
        return await self.backend.changes_since(mailbox.mailbox_id, modseq, viewer=mailbox.viewer)

    def change_token(self, mailbox: OpenMailbox) -> int:
        return self.backend.change_token(mailbox.mailbox_id)

    async def wait_for_change(self, mailbox: OpenMailbox, token: int, timeout: float) -> int:
        """For IDLE: returns when another session (in any process) committed a change to the
        mailbox, or after ``timeout`` seconds; then ask :meth:`changes_since`."""
        return await self.backend.wait_for_change(mailbox.mailbox_id, token, timeout)

    async def refresh(self, mailbox: OpenMailbox) -> MailboxSnapshot:
        """A new snapshot of an open mailbox (for NOOP/IDLE: new UIDs, new keywords)."""
        return await self.backend.snapshot(mailbox.mailbox_id, viewer=mailbox.viewer)


def _right_for_flag(flag: str) -> str:
    return {"\\Seen": "s", "\\Deleted": "t"}.get(flag, "w")


def _without(message: NewMessage, flag: str) -> NewMessage:
    return NewMessage(
        message.content,
        message.internal_date,
        message.flags - {flag},
        message.envelope,
        message.bodystructure,
        message.header,
    )
