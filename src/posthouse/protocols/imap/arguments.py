"""The typed arguments of each IMAP command, as the command grammar (commands.py) yields them.

One frozen dataclass per argument shape; `Arguments` is their union.  Mailbox names are
the wire text as UTF-8 (INBOX in any case already "INBOX"); whether it is modified
UTF-7 to decode (mutf7.py) depends on UTF8=ACCEPT and is the engine's decision.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from posthouse.protocols.imap import fetchatt, search, seqset


@dataclass(frozen=True)
class NoArguments:
    """CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK, CLOSE, EXPUNGE, UNSELECT, IDLE, NAMESPACE."""


@dataclass(frozen=True)
class Login:
    user: str
    password: str

    def __repr__(self) -> str:
        return f"Login(user={self.user!r}, password=<hidden>)"


@dataclass(frozen=True)
class Authenticate:
    """RFC 3501 §6.2.2; ``initial``: RFC 4959 initial response ("" for "="), else None."""

    mechanism: str
    initial: str | None = None


@dataclass(frozen=True)
class Enable:
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class Id:
    """RFC 2971: field/value pairs, or None for NIL."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True)
class AclArguments:
    """RFC 4314 §3: SETACL (mailbox, identifier, rights), DELETEACL and LISTRIGHTS (mailbox,
    identifier), GETACL and MYRIGHTS (mailbox); what a command does not take is None."""

    mailbox: str
    identifier: str | None = None
    rights: str | None = None


@dataclass(frozen=True)
class MailboxName:
    """DELETE, SUBSCRIBE, UNSUBSCRIBE: one mailbox (INBOX in any case becomes "INBOX")."""

    mailbox: str


@dataclass(frozen=True)
class Qresync:
    """RFC 7162 §3.2.5 QRESYNC select parameter."""

    uidvalidity: int
    modseq: int
    known_uids: seqset.SequenceSet | None = None
    seq_match: tuple[seqset.SequenceSet, seqset.SequenceSet] | None = None


@dataclass(frozen=True)
class Select:
    """SELECT / EXAMINE with RFC 4466 select-params (CONDSTORE, QRESYNC)."""

    mailbox: str
    condstore: bool = False
    qresync: Qresync | None = None


@dataclass(frozen=True)
class Create:
    mailbox: str
    special_use: tuple[str, ...] = ()  # RFC 6154 §3 USE (...)


@dataclass(frozen=True)
class Rename:
    source: str
    target: str


@dataclass(frozen=True)
class ListMailboxes:
    """LIST (RFC 3501, RFC 5258 extended, RFC 5819 STATUS) and LSUB."""

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()
    extended: bool = False  # selection options, several patterns or RETURN were given


@dataclass(frozen=True)
class Status:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class AppendMessage:
    flags: tuple[str, ...]
    date: dt.datetime | None
    data: bytes
    binary: bool = False  # sent as literal8 (RFC 3516 §4.4, RFC 6855 UTF8)

    def __repr__(self) -> str:
        return f"AppendMessage(flags={self.flags!r}, date={self.date!r}, octets={len(self.data)})"


@dataclass(frozen=True)
class Append:
    """APPEND, with several messages for RFC 3502 MULTIAPPEND."""

    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True)
class Fetch:
    numbers: seqset.SequenceSet
    request: fetchatt.FetchRequest


StoreMode = Literal["replace", "add", "remove"]


@dataclass(frozen=True)
class Store:
    numbers: seqset.SequenceSet
    mode: StoreMode
    silent: bool
    flags: tuple[str, ...]
    unchanged_since: int | None = None  # RFC 7162 §3.1.3


@dataclass(frozen=True)
class Transfer:
    """COPY and MOVE (RFC 6851)."""

    numbers: seqset.SequenceSet
    mailbox: str


@dataclass(frozen=True)
class Expunge:
    """EXPUNGE, or UID EXPUNGE with its UID set (RFC 4315 §2.1)."""

    numbers: seqset.SequenceSet | None = None


@dataclass(frozen=True)
class SortCriterion:
    key: str
    reverse: bool = False


@dataclass(frozen=True)
class Sort:
    criteria: tuple[SortCriterion, ...]
    search: search.SearchRequest


@dataclass(frozen=True)
class Thread:
    algorithm: str
    search: search.SearchRequest


@dataclass(frozen=True)
class Compress:
    mechanism: str


@dataclass(frozen=True)
class QuotaRoot:
    """RFC 9208 §4.2 GETQUOTA: a quota root name (a mailbox name here)."""

    root: str


@dataclass(frozen=True)
class SetQuota:
    """RFC 9208 §4.1.3 SETQUOTA: the root and (resource name, limit) pairs; () removes it."""

    root: str
    limits: tuple[tuple[str, int], ...]


Arguments = (
    NoArguments
    | Login
    | Authenticate
    | Enable
    | Id
    | MailboxName
    | AclArguments
    | Select
    | Create
    | Rename
    | ListMailboxes
    | Status
    | Append
    | search.SearchRequest
    | Fetch
    | Store
    | Transfer
    | Expunge
    | Sort
    | Thread
    | Compress
    | QuotaRoot
    | SetQuota
)
