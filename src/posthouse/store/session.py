"""One logged-in user's view of the store: :class:`UserSession`, made by
:meth:`posthouse.store.service.MailStore.session`.

Every IMAP command that touches the store has its method here, in the names the user sees
(``INBOX.work`` for ``user.NAME.work``).  Each checks the user's rights on the mailbox once,
through the store's :class:`~posthouse.store.policy.AccessPolicy`, then calls the backend;
an open (selected) mailbox is an :class:`OpenMailbox` carrying its rights and snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from posthouse.store.acl import Acl, check_identifier, modified_rights
from posthouse.store.backend import (
    SYSTEM_FLAGS,
    AppendResult,
    Changes,
    CopyResult,
    ExpungeResult,
    FlagChange,
    FlagColumns,
    FlagMode,
    MailboxRecord,
    MailboxSnapshot,
    MailboxStatus,
    MessageMeta,
    NewMailbox,
    NewMessage,
    ReconstructReport,
    StoreResult,
    Viewer,
)
from posthouse.store.errors import (
    AclChanged,
    MailboxExists,
    MailboxNotFound,
    NotPermitted,
    StoreUnavailable,
)
from posthouse.store.flags import check_flags
from posthouse.store.names import (
    INBOX,
    SEPARATOR,
    USER_PREFIX,
    UserView,
    children_prefix,
    owner_of,
    parent_of,
)
from posthouse.store.patterns import join_reference, listing, literal_prefix
from posthouse.store.special_use import chosen_uses, uses_of
from posthouse.store.uidset import UidSet

if TYPE_CHECKING:
    from posthouse.store.service import MailStore

__all__ = ["ListItem", "OpenMailbox", "UserSession"]

ANY_RIGHT = frozenset("lrikxa")  # RFC 4314 §4: the "Any" column (MYRIGHTS)
ACL_ATTEMPTS = 20  # reads and writes of an ACL that others change at the same time


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


class UserSession:
    """One logged-in user's view of the store: names as the user sees them, rights checked.

    Each command checks the rights RFC 4314 §4 ties to it.  A user who lacks them gets
    :class:`NotPermitted` when the user may look the mailbox up (``l``), else
    :class:`MailboxNotFound`, exactly as for a missing one (RFC 4314 §6), as Cyrus answers:
    with ``r s`` and no ``l`` a mailbox can be selected by name but is never listed.
    SUBSCRIBE needs no right (a name that does not exist may be subscribed too), so LSUB
    shows a subscribed mailbox the user may not look up as it shows a subscribed name that
    does not exist.
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

    async def _find(
        self, visible: str, needed: str, what: str
    ) -> tuple[MailboxRecord, frozenset[str]]:
        """The mailbox and the user's rights on it, when the user holds ``needed`` (RFC 4314
        §4).  Lacking them, :class:`NotPermitted` if the user may look the mailbox up (``l``),
        else :class:`MailboxNotFound` with the very text a missing mailbox gets (RFC 4314 §6:
        no answer tells that a mailbox the user may not see exists)."""
        name = self.view.to_internal(visible)
        record = await self.backend.get_mailbox(name)
        rights = (
            frozenset() if record is None else _interned(self.service.rights(self.user, record))
        )
        if record is None or not rights or (set(needed) - rights and "l" not in rights):
            raise MailboxNotFound(f"mailbox {visible} does not exist")
        self._require(rights, needed, what)
        return record, rights

    @staticmethod
    def _require(rights: frozenset[str], needed: str, what: str) -> None:
        missing = set(needed) - rights
        if missing:
            raise NotPermitted(f"you may not {what} (missing rights {''.join(sorted(missing))})")

    # -- RFC 4314 ACL commands --

    async def get_acl(self, visible: str) -> tuple[tuple[str, frozenset[str]], ...]:
        """RFC 4314 §3.3 GETACL: the entries, negative ones with their ``-`` (needs ``a``)."""
        record, _ = await self._find(visible, "a", "read the ACL of this mailbox")
        return Acl.parse(record.acl).entries

    async def set_acl(self, visible: str, identifier: str, rights: str) -> None:
        """RFC 4314 §3.1 SETACL: ``+`` adds, ``-`` removes, else replaces ``identifier``'s
        rights (an empty result removes the entry); needs ``a``.  An unknown letter is
        :class:`~posthouse.store.acl.UnknownRight` before anything else is looked at."""
        modified_rights(frozenset(), rights)
        await self._change_acl(
            visible, identifier, lambda acl: modified_rights(acl.rights_of(identifier), rights)
        )

    async def delete_acl(self, visible: str, identifier: str) -> None:
        """RFC 4314 §3.2 DELETEACL (an identifier without an entry is no error); needs ``a``."""
        await self._change_acl(visible, identifier, lambda acl: frozenset())

    async def _change_acl(
        self, visible: str, identifier: str, rights: Callable[[Acl], frozenset[str]]
    ) -> None:
        """Give ``identifier`` ``rights(current ACL)``; the ACL is read and written again
        when another change came in between (none is lost)."""
        check_identifier(identifier)
        for _ in range(ACL_ATTEMPTS):
            record, _ = await self._find(visible, "a", "change the ACL of this mailbox")
            acl = Acl.parse(record.acl)
            new = str(acl.with_entry(identifier, rights(acl)))
            if new == record.acl:
                return
            try:
                await self.backend.set_acl(record.name, new, expected=record.acl)
                return
            except AclChanged:
                continue
        raise StoreUnavailable(f"the ACL of {visible} keeps changing; try again")

    async def list_rights(self, visible: str, identifier: str) -> frozenset[str]:
        """RFC 4314 §3.4 LISTRIGHTS: the rights ``identifier`` always holds here, whatever
        the ACL says (the others may all be granted, each on its own); needs ``a``."""
        check_identifier(identifier)
        record, _ = await self._find(visible, "a", "read the ACL of this mailbox")
        return self.service.access.implicit_rights(identifier, record)

    async def my_rights(self, visible: str) -> frozenset[str]:
        """RFC 4314 §3.5 MYRIGHTS: needs any of ``l r i k x a`` (RFC 4314 §4 "Any")."""
        _, rights = await self._find(visible, "", "")
        if not rights & ANY_RIGHT:
            raise MailboxNotFound(f"mailbox {visible} does not exist")
        return rights

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
                attributes.update(uses_of(record))
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

    async def create(
        self, visible: str, *, partition: str | None = None, special_use: Sequence[str] = ()
    ) -> MailboxRecord:
        """RFC 3501 §6.3.3.  Creating ``INBOX`` when it does not exist creates the user.
        ``special_use``: RFC 6154 §3 CREATE ... (USE (...)), see special_use.py.

        A new mailbox takes its closest existing parent's ACL and partition (chapter 12.5.7,
        12.5.9), a top-level one ``defaultacl`` and the default partition.  Only an
        administrator names a ``partition`` (cyradm); IMAP clients never can."""
        if partition is not None and not self.is_admin:
            raise NotPermitted("only an administrator chooses a partition")
        if partition is not None:
            await self.service.check_partition(partition)
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
        uses = ""
        if special_use:
            owner = owner_of(name)
            home = f"{USER_PREFIX}{SEPARATOR}{owner}"
            siblings = [
                r
                for r in (await self.backend.list_mailboxes(home) if owner else [])
                if r.name == home or r.name.startswith(children_prefix(home))
            ]
            uses = chosen_uses(special_use, siblings)
        return await self.backend.create_mailbox(
            NewMailbox(name, partition or inherited, acl, special_use=uses)
        )

    async def delete(self, visible: str) -> list[str]:
        """RFC 3501 §6.3.4: INBOX cannot be deleted by its user; an administrator deleting
        ``user.NAME`` deletes all of NAME's mailboxes (chapter 12.5.6)."""
        name = self.view.to_internal(visible)
        if self.view.has_inbox and name == self.view.inbox and not self.is_admin:
            raise NotPermitted("INBOX cannot be deleted")
        needed = "" if self.is_admin else "x"
        record, _ = await self._find(visible, needed, "delete this mailbox")
        if owner_of(name) is not None and parent_of(name) == USER_PREFIX:
            return await self.service.delete_user(owner_of(name) or "")
        deleted = await self.backend.delete_mailboxes([record.name])
        return [self.view.to_visible(r.name) for r in deleted]

    async def rename(
        self, old_visible: str, new_visible: str, *, partition: str | None = None
    ) -> list[tuple[str, str]]:
        """RFC 3501 §6.3.5; renaming INBOX moves its messages to the new mailbox and leaves
        INBOX (and INBOX's inferiors) where they are.

        With a ``partition`` (administrators only, cyradm's ``renamemailbox``, chapter
        12.5.9) the mailbox's files move there, after the rename if the names differ;
        ``RENAME a a PARTITION`` only moves them, as in Cyrus."""
        if partition is not None and not self.is_admin:
            raise NotPermitted("only an administrator chooses a partition")
        old = self.view.to_internal(old_visible)
        new = self.view.to_internal(new_visible)
        if partition is not None:
            await self.service.check_partition(partition)
            if new == old:
                await self._find(old_visible, "", "move this mailbox")
                await self.backend.move_mailbox(old, partition)
                return [(old_visible, new_visible)]
            pairs = await self.rename(old_visible, new_visible)
            await self.backend.move_mailbox(new, partition)
            return pairs
        needed = "" if self.is_admin else "x"
        record, _ = await self._find(old_visible, needed, "rename this mailbox")
        parent = await self.service.closest_existing(new)
        if not self.is_admin and (
            parent is None or "k" not in self.service.rights(self.user, parent)
        ):  # checked first: without k, whether the new name is taken is none of the user's business
            raise NotPermitted(f"you may not create {new_visible}")
        if await self.backend.get_mailbox(new) is not None:
            raise MailboxExists(f"mailbox {new_visible} already exists")
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

    async def reconstruct(
        self, visible: str, *, recursive: bool = False
    ) -> list[ReconstructReport]:
        """Cyrus's ``RECONSTRUCT mailbox [RECURSIVE]`` (chapter 12.5.5): administrators
        only."""
        if not self.is_admin:
            raise NotPermitted("only an administrator reconstructs mailboxes")
        name = self.view.to_internal(visible)
        return await self.service.reconstruct(name, recursive=recursive)

    # -- SELECT, EXAMINE, STATUS --

    async def select(self, visible: str, *, read_only: bool = False) -> OpenMailbox:
        """RFC 3501 §6.3.1/§6.3.2: the snapshot; \\Recent is claimed unless read-only."""
        record, rights = await self._find(visible, "r", "read this mailbox")
        viewer = self._viewer(record)
        writable = bool(rights & set("wsitex"))
        read_only = read_only or not writable
        keeps_seen = "s" in rights
        try:
            snapshot = await self.backend.snapshot(record.id, viewer=viewer)
            if not read_only and keeps_seen:  # what this session shows as \Recent, no other will
                await self.backend.claim_recent(record.id, self.user, snapshot.status.uidnext - 1)
        except StoreUnavailable:
            await self._unless_deleted(record)
            raise
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

    async def _unless_deleted(self, record: MailboxRecord) -> None:
        """After an I/O error on *record*'s mailbox: if another session deleted the mailbox
        meanwhile (its folder went away under us), it does not exist (NO [NONEXISTENT])."""
        current = await self.backend.get_mailbox(record.name)
        if current is None or current.id != record.id:
            raise MailboxNotFound(f"no mailbox {record.name} (deleted meanwhile)")

    async def status(self, visible: str) -> MailboxStatus:
        record, _ = await self._find(visible, "r", "read this mailbox")
        return await self.backend.status(record.id, viewer=self._viewer(record))

    # -- messages --

    async def append(self, visible: str, messages: Sequence[NewMessage]) -> AppendResult:
        """RFC 3501 §6.3.11 / RFC 3502 MULTIAPPEND: all the messages or none."""
        record, rights = await self._find(visible, "i", "append to this mailbox")
        # RFC 4314 §4: flags the user may not set are left off (\\Seen s, \\Deleted t, others w)
        messages = [_permitted(m, rights) for m in self.service.checked(messages)]
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

    async def fetch_flags(
        self, mailbox: OpenMailbox, uids: UidSet, *, modseqs: bool = False
    ) -> FlagColumns:
        return await self.backend.fetch_flags(
            mailbox.mailbox_id, uids, viewer=mailbox.viewer, modseqs=modseqs
        )

    async def search_headers(
        self, mailbox: OpenMailbox, uids: UidSet, field: str, needle: bytes
    ) -> tuple[UidSet, UidSet]:
        """SEARCH HEADER from the cached header sections: (matches, UIDs the cached headers
        cannot answer for, which the caller searches itself: see `Backend.search_headers`)."""
        return await self.backend.search_headers(mailbox.mailbox_id, uids, field, needle)

    async def store_cache(
        self,
        mailbox: OpenMailbox,
        uid: int,
        *,
        envelope: bytes | None = None,
        bodystructure: bytes | None = None,
        header: bytes | None = None,
    ) -> None:
        """Keep the ENVELOPE, BODYSTRUCTURE or header section the engine computed for a
        message that had none cached, so the next FETCH or SEARCH needs no parse."""
        await self.backend.store_cache(
            mailbox.mailbox_id, uid, envelope=envelope, bodystructure=bodystructure, header=header
        )

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
        """RFC 3501 §6.4.7 COPY, RFC 6851 MOVE; the result carries RFC 4315 COPYUID data.
        The copies keep only the flags the user may set in the target (RFC 4314 §4 COPY)."""
        target, rights = await self._find(target_visible, "i", "copy messages into that mailbox")
        if move:
            if mailbox.read_only:
                raise NotPermitted("the mailbox is read-only")
            self._require(mailbox.rights, "te", "move messages out of this mailbox")
        metas = await self.backend.fetch(mailbox.mailbox_id, uids, viewer=mailbox.viewer)
        await self.service.quota.check(
            self.backend,
            target,
            sum(m.size for m in metas),
            delivery=False,
            leaving=mailbox.record if move else None,
        )
        result = await self.backend.copy(mailbox.mailbox_id, uids, target.id, move=move)
        await self._copied_flags(mailbox, metas, target, rights, result)
        return result

    async def _copied_flags(
        self,
        source: OpenMailbox,
        metas: Sequence[MessageMeta],
        target: MailboxRecord,
        rights: frozenset[str],
        result: CopyResult,
    ) -> None:
        """The backend copies the flags as they are; take off those the user may not set in
        the target, and make \\Seen the user's own: the shared flag copied is the source
        owner's, and in a mailbox of someone else's the user's seen state is private."""
        viewer = self._viewer(target)
        refused = {f for m in metas for f in m.flags if _right_for_flag(f) not in rights}
        refused.discard("\\Recent")
        exact_seen = not (source.viewer.private_seen or viewer.private_seen)
        if "s" not in rights or not exact_seen:
            refused.add("\\Seen")
        copies = dict(zip(result.source_uids, result.target_uids, strict=True))
        if refused and copies:
            change = FlagChange(FlagMode.REMOVE, frozenset(refused))
            await self.backend.store_flags(
                target.id, UidSet.of(copies.values()), change, viewer=Viewer("")
            )
        seen = [copies[m.uid] for m in metas if "\\Seen" in m.flags and m.uid in copies]
        if "s" in rights and not exact_seen and seen:
            change = FlagChange(FlagMode.ADD, frozenset({"\\Seen"}))
            await self.backend.store_flags(target.id, UidSet.of(seen), change, viewer=viewer)

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


_RIGHTS_SETS: dict[frozenset[str], frozenset[str]] = {}


def _interned(rights: frozenset[str]) -> frozenset[str]:
    """One shared object per distinct rights set: every open mailbox keeps its rights, and
    10,000 idle sessions would otherwise hold 10,000 copies of the same few sets."""
    if len(_RIGHTS_SETS) >= 256:
        _RIGHTS_SETS.clear()
    return _RIGHTS_SETS.setdefault(rights, rights)


def _right_for_flag(flag: str) -> str:
    return {"\\Seen": "s", "\\Deleted": "t"}.get(flag, "w")


def _permitted(message: NewMessage, rights: frozenset[str]) -> NewMessage:
    refused = {f for f in message.flags if _right_for_flag(f) not in rights}
    return _without(message, *refused) if refused else message


def _without(message: NewMessage, *flags: str) -> NewMessage:
    return NewMessage(
        message.content,
        message.internal_date,
        message.flags - set(flags),
        message.envelope,
        message.bodystructure,
        message.header,
    )
