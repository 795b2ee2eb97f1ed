"""The narrow interface every IMAP store backend implements, and the values it trades in.

A backend stores; it enforces no policy.  Names, rights and quotas are checked once, above
it, by :class:`posthouse.store.service.MailStore`.  Two backends are planned: the file system
one (:mod:`posthouse.store.fs`, message files plus SQLite indexes) and later PostgreSQL
(``../shared/SCALE-OUT.md``).  The semantics are chosen so both can give them:

* **Mailboxes** are addressed by name in the mailboxes list and by ``MailboxRecord.id``
  (stable across renames) for everything about their messages.  A deleted mailbox's id raises
  :class:`~posthouse.store.errors.MailboxNotFound`.
* **UIDs and MODSEQs are allocated inside the transaction that makes the messages visible**
  (``UPDATE mailbox SET last_uid = last_uid + n ... RETURNING`` in PostgreSQL; the mailbox
  index's write lock here), so they become visible in ascending order and are never reused.
  A call returns only after that transaction is durable (RFC 3501 §6.3.11: the OK of APPEND).
* **Per-user seen state**: message operations take a :class:`Viewer`.  When its
  ``private_seen`` is set, that user's own seen set (kept per mailbox, as UID ranges) stands
  in for the shared ``\\Seen`` flag, as Cyrus keeps seen state for shared mailboxes; the
  owner uses the flag.  \\Recent is per user too (Cyrus's "recent UID" mark).
* **CONDSTORE/QRESYNC** (RFC 7162): every change gets a MODSEQ above the mailbox's previous
  HIGHESTMODSEQ; expunges leave tombstones so :meth:`changes_since` can report VANISHED.
  A change of a user's private seen set raises the MODSEQ that user sees on every message of
  the mailbox (a superset of what changed, which RFC 7162 allows).
* **Change notification after commit**: :meth:`change_token` is a cheap counter that changes
  whenever a transaction on the mailbox commits, in any process (or on any node);
  :meth:`wait_for_change` waits until it differs from a token.  It only says "look again":
  the waiter then asks :meth:`changes_since`.
* **Bodies** are bytes the caller hands over with CRLF line ends; :meth:`open_message` streams
  them back.  ENVELOPE, BODYSTRUCTURE and the header section are cached as opaque blobs the
  caller computed (the store does not parse mail).
* **Quota usage** of a root is the bytes of the messages in the mailboxes it limits (each
  copy counted, index files never), each mailbox's kept with its messages and summed when
  asked; the root of a mailbox is the nearest root at or above its name
  (:mod:`posthouse.store.quota_roots`); limits are enforced by the service.

All methods are coroutines except :meth:`change_token` (a memory read) and
:meth:`open_message` (returns a blocking file object, for a thread).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, NamedTuple, Protocol

from posthouse.store.uidset import UidSet

__all__ = [
    "SYSTEM_FLAGS",
    "AppendResult",
    "Changes",
    "CopyResult",
    "ExpungeResult",
    "FlagChange",
    "FlagColumns",
    "FlagMode",
    "MailStoreBackend",
    "MailboxRecord",
    "MailboxSnapshot",
    "MailboxStatus",
    "MessageMeta",
    "NewMailbox",
    "NewMessage",
    "QuotaUsage",
    "StoreResult",
    "Viewer",
]

#: RFC 3501 §2.3.2 system flags a message keeps (``\\Recent`` is per session, not stored).
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


@dataclass(frozen=True)
class Viewer:
    """Who looks at a mailbox, and whether \\Seen is that user's private seen set."""

    user: str
    private_seen: bool = False


@dataclass(frozen=True)
class NewMailbox:
    """What :meth:`MailStoreBackend.create_mailbox` needs; the backend adds id and uidvalidity."""

    name: str
    partition: str
    acl: str
    special_use: str = ""  # RFC 6154 attributes, space-separated, e.g. "\\Sent"


@dataclass(frozen=True)
class MailboxRecord:
    """One entry of the mailboxes list (chapter 12.5.5)."""

    id: str
    name: str
    partition: str
    acl: str
    uidvalidity: int
    created_at: float
    special_use: str = ""


@dataclass(frozen=True)
class MailboxStatus:
    """The counters of one mailbox (RFC 3501 §6.3.10 STATUS, RFC 7162 HIGHESTMODSEQ).

    ``unseen`` and ``recent`` are for the :class:`Viewer` asked about.
    """

    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    unseen: int
    recent: int
    size: int
    deleted: int = 0  # messages with \\Deleted (RFC 9051 §6.3.11 STATUS DELETED)


@dataclass(frozen=True)
class MailboxSnapshot:
    """What SELECT/EXAMINE needs: the status plus every UID in order and the keywords in use.

    ``first_unseen`` is a UID (0: none); ``recent_after``: messages with a larger UID are
    \\Recent for the user (Cyrus's per-user recent UID).
    """

    status: MailboxStatus
    uids: Sequence[int]
    keywords: tuple[str, ...]
    first_unseen: int
    recent_after: int


@dataclass(frozen=True)
class NewMessage:
    """A message to append: RFC 5322 bytes with CRLF line ends and its metadata."""

    content: bytes
    internal_date: datetime
    flags: frozenset[str] = frozenset()
    envelope: bytes | None = None
    bodystructure: bytes | None = None
    header: bytes | None = None


class MessageMeta(NamedTuple):
    """One message's metadata.  The cached blobs are None unless asked for (or not cached).

    The internal date is kept as its two parts (seconds since the epoch and the zone's offset
    in minutes), which is cheap for 100,000 rows; :attr:`internal_date` builds the datetime.
    """

    uid: int
    modseq: int
    flags: frozenset[str]
    internal_time: int
    zone_minutes: int
    size: int
    envelope: bytes | None = None
    bodystructure: bytes | None = None
    header: bytes | None = None

    @property
    def internal_date(self) -> datetime:
        return datetime.fromtimestamp(
            self.internal_time, timezone(timedelta(minutes=self.zone_minutes))
        )


class FlagColumns(NamedTuple):
    """The UIDs, flags and (when asked for) MODSEQs of messages as lists in UID order: what
    ``FETCH 1:* (UID FLAGS)`` needs of 100,000 messages, without a tuple per message."""

    uids: list[int]
    flags: list[frozenset[str]]
    modseqs: list[int] | None


class FlagMode(enum.Enum):
    """RFC 3501 §6.4.6: FLAGS, +FLAGS, -FLAGS."""

    REPLACE = "replace"
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class FlagChange:
    mode: FlagMode
    flags: frozenset[str]


@dataclass(frozen=True)
class StoreResult:
    """``changed``: the messages whose flags changed, as they are now.  ``failed``: UIDs
    left alone because their MODSEQ exceeded UNCHANGEDSINCE (RFC 7162 §3.1.3 MODIFIED).
    ``modseqs``: the mailbox's HIGHESTMODSEQ just before and after the change when it was
    one commit (else None): a session that had seen the first has now seen the second."""

    changed: tuple[MessageMeta, ...]
    failed: UidSet = field(default_factory=UidSet)
    modseqs: tuple[int, int] | None = None


@dataclass(frozen=True)
class AppendResult:
    """RFC 4315 APPENDUID data: the mailbox's UIDVALIDITY and the UIDs given, in order."""

    uidvalidity: int
    uids: tuple[int, ...]
    modseq: int


@dataclass(frozen=True)
class CopyResult:
    """RFC 4315 COPYUID data: source UIDs and the new UIDs, pairwise in the same order."""

    uidvalidity: int
    source_uids: tuple[int, ...]
    target_uids: tuple[int, ...]


@dataclass(frozen=True)
class ExpungeResult:
    """The UIDs expunged, the HIGHESTMODSEQ after, and ``modseqs`` as in
    :class:`StoreResult`."""

    uids: UidSet
    modseq: int
    modseqs: tuple[int, int] | None = None


@dataclass(frozen=True)
class Changes:
    """What changed after a MODSEQ (RFC 7162 CHANGEDSINCE and QRESYNC VANISHED)."""

    highestmodseq: int
    changed: tuple[MessageMeta, ...]
    vanished: UidSet


@dataclass(frozen=True)
class QuotaUsage:
    """A quota root (RFC 9208 STORAGE): ``limit_kb`` None when no limit is set."""

    root: str
    limit_kb: int | None
    used_bytes: int


@dataclass
class ReconstructReport:
    """What ``reconstruct`` found and did in one mailbox (chapter 12.5.5)."""

    name: str
    messages: int  # in the rebuilt index
    kept: int  # of them, with what the old index held (flags, dates, MODSEQs)
    appeared: tuple[int, ...]  # UIDs of message files the old index did not list
    dropped: tuple[int, ...]  # UIDs the old index listed without a message file
    renumbered: tuple[tuple[int, int], ...]  # (file UID, new UID): UIDs seen before
    uidvalidity: int | None = None  # the new UIDVALIDITY, when the old state was lost
    temporary_removed: tuple[str, ...] = ()  # temporary files of writers no longer running
    strays: tuple[str, ...] = ()  # files that are none of the store's, left alone
    damaged_index: str | None = None  # the name the unreadable index was set aside under
    changed: bool = False


class MailStoreBackend(Protocol):
    """See the module docstring for the semantics every implementation keeps."""

    # -- the mailboxes list --

    async def create_mailbox(self, spec: NewMailbox) -> MailboxRecord:
        """Create an empty mailbox; :class:`MailboxExists` if the name is taken."""
        ...

    async def get_mailbox(self, name: str) -> MailboxRecord | None: ...

    async def list_mailboxes(self, prefix: str = "") -> list[MailboxRecord]:
        """The records whose names start with ``prefix``, sorted by name."""
        ...

    async def delete_mailboxes(self, names: Sequence[str]) -> list[MailboxRecord]:
        """Delete these mailboxes (those that exist) with their messages; returns them."""
        ...

    async def rename_mailbox(self, old: str, new: str) -> list[tuple[str, str]]:
        """Rename ``old`` and every inferior of it in one transaction; returns the pairs.

        :class:`MailboxExists` if any target name is taken, :class:`MailboxNotFound` if
        ``old`` does not exist.
        """
        ...

    def partitions(self) -> frozenset[str]:
        """The names of the configured partitions."""
        ...

    async def set_acl(self, name: str, acl: str, *, expected: str | None = None) -> MailboxRecord:
        """Set the ACL; with ``expected``, only if the ACL is still that text, else
        :class:`~posthouse.store.errors.AclChanged` (read-modify-write without lost updates)."""
        ...

    async def move_mailbox(self, name: str, partition: str) -> MailboxRecord:
        """Move mailbox ``name`` to ``partition`` (chapter 12.5.9), whole in one place or the
        other at every instant; :class:`MailboxNotFound`, or :class:`StoreError` for an
        unknown partition."""
        ...

    async def reconstruct(self, name: str) -> ReconstructReport:
        """Rebuild mailbox ``name``'s index from its message files, keeping what the old
        index holds where it survives (chapter 12.5.5); :class:`MailboxNotFound`."""
        ...

    # -- messages --

    async def status(self, mailbox_id: str, *, viewer: Viewer) -> MailboxStatus: ...

    async def snapshot(self, mailbox_id: str, *, viewer: Viewer) -> MailboxSnapshot: ...

    async def claim_recent(self, mailbox_id: str, user: str, up_to: int) -> int:
        """Record that ``user`` has been shown the UIDs up to ``up_to`` as \\Recent (a session
        claims what its snapshot showed); returns the old mark."""
        ...

    async def append(self, mailbox_id: str, messages: Sequence[NewMessage]) -> AppendResult:
        """Add the messages in one transaction (MULTIAPPEND is all or nothing)."""
        ...

    async def fetch(
        self,
        mailbox_id: str,
        uids: UidSet,
        *,
        viewer: Viewer,
        cached: bool = False,
    ) -> list[MessageMeta]:
        """Metadata of the messages in ``uids`` that exist, by UID."""
        ...

    async def fetch_flags(
        self, mailbox_id: str, uids: UidSet, *, viewer: Viewer, modseqs: bool = False
    ) -> FlagColumns:
        """`fetch` of the UIDs, flags and (if ``modseqs``) MODSEQs only, as columns."""
        ...

    async def search_headers(
        self, mailbox_id: str, uids: UidSet, field: str, needle: bytes
    ) -> tuple[UidSet, UidSet]:
        """RFC 3501 §6.4.4 ``HEADER field string`` over the cached header sections: the UIDs
        whose ``field`` contains ``needle`` (ASCII case-insensitive substring of the raw,
        unfolded value), and the UIDs the cached headers cannot answer for: no cached header,
        or one whose decoded text may differ from its octets (8-bit, RFC 2047 encoded words;
        `content.plain_header`).  The caller searches those itself."""
        ...

    async def read_message(self, mailbox_id: str, uid: int) -> bytes: ...

    async def store_cache(
        self,
        mailbox_id: str,
        uid: int,
        *,
        envelope: bytes | None = None,
        bodystructure: bytes | None = None,
        header: bytes | None = None,
    ) -> None:
        """Remember blobs computed after the append (a message delivered without them, or
        after ``reconstruct``); None leaves a blob as it is.  No MODSEQ changes: the blobs
        are derived from the message, which never changes."""
        ...

    def open_message(self, mailbox_id: str, uid: int) -> BinaryIO:
        """The message's bytes as a blocking file object (read it in a thread)."""
        ...

    async def store_flags(
        self,
        mailbox_id: str,
        uids: UidSet,
        change: FlagChange,
        *,
        viewer: Viewer,
        unchanged_since: int | None = None,
    ) -> StoreResult: ...

    async def expunge(self, mailbox_id: str, uids: UidSet | None = None) -> ExpungeResult:
        """Remove the messages flagged \\Deleted (only those in ``uids`` when given)."""
        ...

    async def copy(
        self, source_id: str, uids: UidSet, target_id: str, *, move: bool = False
    ) -> CopyResult:
        """Copy (or move: copy, then expunge from the source) keeping flags and dates."""
        ...

    async def changes_since(self, mailbox_id: str, modseq: int, *, viewer: Viewer) -> Changes: ...

    # -- per user --

    async def subscriptions(self, user: str) -> frozenset[str]: ...

    async def set_subscribed(self, user: str, name: str, subscribed: bool) -> None: ...

    async def forget_subscriptions(self, user: str) -> None:
        """Remove ``user``'s subscriptions record (the user is deleted)."""
        ...

    # -- quota roots --

    async def quota(self, root: str) -> QuotaUsage | None: ...

    async def quota_root_of(self, name: str) -> QuotaUsage | None:
        """The root that limits mailbox ``name``: the nearest root at or above it."""
        ...

    async def list_quotas(self, prefix: str = "") -> list[QuotaUsage]:
        """The roots whose names start with ``prefix``, sorted by name."""
        ...

    async def set_quota(self, root: str, limit_kb: int | None) -> QuotaUsage:
        """Create or change a quota root (a new root's mailboxes no longer count to the root
        above it)."""
        ...

    async def remove_quota(self, root: str) -> None:
        """Remove a root: its limit is lifted, its mailboxes count to the root above."""
        ...

    async def recompute_quotas(self, roots: Sequence[str] | None = None) -> list[QuotaUsage]:
        """Count the usage of ``roots`` (None: all) again from the mailboxes' messages, row by
        row, correcting what the mailboxes kept (``imapquota -f``); returns them as they are
        now."""
        ...

    # -- change notification --

    def change_token(self, mailbox_id: str) -> int: ...

    async def wait_for_change(self, mailbox_id: str, token: int, timeout: float) -> int:
        """Wait until the mailbox's change token differs from ``token`` (or ``timeout``
        seconds passed); returns the current token."""
        ...

    async def close(self) -> None: ...
