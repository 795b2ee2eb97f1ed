"""The command grammar: RFC 3501 §9 commands and the table of their argument parsers.

`read_tag` and `parse_after_tag` turn one framed command (see cursor.py) into a
`Command`: the tag, the upper-case name, whether it came with the UID prefix, and an
argument value whose type (arguments.py) depends on the command.  Covered: every
RFC 3501 command, and the command syntax of RFC 2971 ID, RFC 3502 MULTIAPPEND,
RFC 3691 UNSELECT, RFC 4315 UID EXPUNGE, RFC 4466 extended SELECT/CREATE/STORE/FETCH/
LIST parameters, RFC 4731 ESEARCH RETURN, RFC 4959 SASL-IR, RFC 4978 COMPRESS,
RFC 5161 ENABLE, RFC 5256 SORT/THREAD, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS,
RFC 6154 SPECIAL-USE, RFC 6851 MOVE, RFC 6855 UTF8 APPEND, RFC 7162 CONDSTORE/QRESYNC,
RFC 2177 IDLE, RFC 2342 NAMESPACE, RFC 4314 ACL, RFC 9208 QUOTA.

A command the table does not know is a `CommandError` (BAD) like any syntax error; the
caller answers it for that tag only.  Which commands are legal in which state is the
engine's state table, not the grammar's business.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from posthouse.protocols.imap import fetchatt, search, seqset
from posthouse.protocols.imap.arguments import (
    AclArguments,
    Append,
    AppendMessage,
    Arguments,
    Authenticate,
    Compress,
    Create,
    Enable,
    Expunge,
    Fetch,
    Id,
    ListMailboxes,
    Login,
    MailboxName,
    NoArguments,
    Qresync,
    QuotaRoot,
    Rename,
    Select,
    SetQuota,
    Sort,
    SortCriterion,
    Status,
    Store,
    StoreMode,
    Thread,
    Transfer,
)
from posthouse.protocols.imap.cursor import (
    ATOM_CHARS,
    LIST_CHARS,
    SEQUENCE_CHARS,
    TAG_CHARS,
    Cursor,
)
from posthouse.protocols.imap.errors import CommandError

SYSTEM_FLAGS: Final = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
_SYSTEM_BY_UPPER: Final = {flag.upper(): flag for flag in SYSTEM_FLAGS}
STATUS_ITEMS: Final = frozenset(
    {
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "HIGHESTMODSEQ",  # RFC 7162 §3.1.6
        "SIZE",  # RFC 8438
        "APPENDLIMIT",  # RFC 7889 §3
        "DELETED",  # RFC 9051 §6.3.11
    }
)
SORT_KEYS: Final = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
THREAD_ALGORITHMS: Final = frozenset({"ORDEREDSUBJECT", "REFERENCES"})
# RFC 2971 §3.3: at most 30 pairs, names up to 30 octets, values up to 1024 octets.
ID_MAX_PAIRS: Final = 30
ID_MAX_NAME: Final = 30
ID_MAX_VALUE: Final = 1024
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
MODSEQ_MAX: Final = 2**63 - 1  # RFC 7162 §7 mod-sequence-value
QUOTA_MAX_RESOURCES: Final = 16  # RFC 9208 names 6 resources; more is no client's need


@dataclass(frozen=True)
class Command:
    """One parsed command."""

    tag: str
    name: str
    arguments: Arguments = field(default_factory=NoArguments)
    uid: bool = False


# ------------------------------------------------------------------ shared pieces


def mailbox(cursor: Cursor) -> str:
    """RFC 3501 §9 mailbox = "INBOX" / astring; INBOX is case-insensitive (§5.1)."""
    name = cursor.astring_text("a mailbox name")
    return "INBOX" if name.upper() == "INBOX" else name


def list_mailbox(cursor: Cursor) -> str:
    """RFC 3501 §9 list-mailbox = 1*list-char / string."""
    if cursor.peek() in (0x22, 0x7B):
        return cursor.utf8(cursor.string(), "a mailbox pattern")
    return cursor.chars(LIST_CHARS, "a mailbox pattern").decode("ascii")


def flag(cursor: Cursor) -> str:
    """RFC 3501 §9 flag: a system flag (canonical case), ``\\ext`` or a keyword atom."""
    if cursor.take(b"\\"):
        name = "\\" + cursor.atom("a flag name")
        return _SYSTEM_BY_UPPER.get(name.upper(), name)
    return cursor.atom("a flag")


def flag_list(cursor: Cursor) -> tuple[str, ...]:
    """RFC 3501 §9 flag-list = "(" [flag *(SP flag)] ")"."""
    cursor.open_list()
    flags: list[str] = []
    while cursor.peek() != 0x29:
        if flags:
            cursor.sp()
        flags.append(flag(cursor))
    cursor.close_list()
    return tuple(flags)


def sequence_set(cursor: Cursor) -> seqset.SequenceSet:
    return seqset.parse(cursor.chars(SEQUENCE_CHARS, "a sequence set").decode("ascii"))


def _atom_list(cursor: Cursor, what: str) -> list[str]:
    cursor.open_list()
    items: list[str] = []
    while cursor.peek() != 0x29:
        if items:
            cursor.sp()
        items.append(cursor.atom(what).upper())
    cursor.close_list()
    return items


# ------------------------------------------------------------------ per command


def _no_arguments(cursor: Cursor) -> Arguments:
    return NoArguments()


def _login(cursor: Cursor) -> Arguments:
    cursor.sp()
    user = cursor.astring_text("the user name")
    cursor.sp()
    return Login(user, cursor.astring_text("the password"))


def _authenticate(cursor: Cursor) -> Arguments:
    cursor.sp()
    mechanism = cursor.atom("a SASL mechanism").upper()
    initial: str | None = None
    if cursor.take(b" "):  # RFC 4959 §3: initial-response = base64 / "="
        initial = cursor.chars(ATOM_CHARS, "an initial response").decode("ascii")
        if initial == "=":
            initial = ""
        elif not _BASE64.fullmatch(initial) or len(initial) % 4:
            raise CommandError("Syntax error: the initial response is not base64")
    return Authenticate(mechanism, initial)


def _enable(cursor: Cursor) -> Arguments:
    """RFC 5161 §3.1: ENABLE 1*(SP capability)."""
    cursor.sp()
    names = [cursor.atom("a capability name").upper()]
    while cursor.take(b" "):
        names.append(cursor.atom("a capability name").upper())
    return Enable(tuple(names))


def _id(cursor: Cursor) -> Arguments:
    cursor.sp()
    if cursor.keyword(b"NIL"):
        cursor.counted()
        return Id(None)
    cursor.open_list()
    pairs: list[tuple[str, str | None]] = []
    while cursor.peek() != 0x29:
        if pairs:
            cursor.sp()
        name = cursor.utf8(cursor.string(), "an ID field name")
        cursor.sp()
        raw = cursor.nstring()
        value = None if raw is None else cursor.utf8(raw, "an ID value")
        if len(name.encode()) > ID_MAX_NAME or (
            value is not None and len(raw or b"") > ID_MAX_VALUE
        ):
            raise CommandError("ID field names are limited to 30 octets, values to 1024 (RFC 2971)")
        pairs.append((name, value))
        if len(pairs) > ID_MAX_PAIRS:
            raise CommandError("ID takes at most 30 field/value pairs (RFC 2971 §3.3)")
    cursor.close_list()
    return Id(tuple(pairs))


def _one_mailbox(cursor: Cursor) -> Arguments:
    cursor.sp()
    return MailboxName(mailbox(cursor))


def _select(cursor: Cursor) -> Arguments:
    cursor.sp()
    name = mailbox(cursor)
    condstore = False
    qresync: Qresync | None = None
    if cursor.take(b" "):  # RFC 4466 §2.1 select-params
        cursor.open_list()
        first = True
        while first or cursor.take(b" "):  # RFC 4466 §2: at least one
            first = False
            param = cursor.atom("a SELECT parameter").upper()
            if param == "CONDSTORE":
                condstore = True
            elif param == "QRESYNC":
                cursor.sp()
                qresync = _qresync(cursor)
            else:
                raise CommandError(f"Syntax error: unknown SELECT parameter {param!r}")
        cursor.close_list()
    return Select(name, condstore, qresync)


def _qresync(cursor: Cursor) -> Qresync:
    """RFC 7162 §7: "(" uidvalidity SP mod-sequence-value [SP known-uids]
    [SP seq-match-data] ")"."""
    cursor.open_list()
    uidvalidity = cursor.number(nonzero=True)
    cursor.sp()
    modseq = cursor.number(limit=MODSEQ_MAX, nonzero=True)
    known: seqset.SequenceSet | None = None
    match: tuple[seqset.SequenceSet, seqset.SequenceSet] | None = None
    if cursor.take(b" "):
        if cursor.peek() != 0x28:
            known = sequence_set(cursor)
            if known.saved or any(end is None for pair in known.ranges for end in pair):
                raise CommandError("Syntax error: known-uids must not use * or $")
            if cursor.take(b" ") and cursor.peek() != 0x28:
                raise cursor.error("expected (known-sequence-set known-uid-set)")
        if cursor.peek() == 0x28:
            cursor.open_list()
            sequences = sequence_set(cursor)
            cursor.sp()
            uids = sequence_set(cursor)
            cursor.close_list()
            match = (sequences, uids)
    cursor.close_list()
    return Qresync(uidvalidity, modseq, known, match)


def _create(cursor: Cursor) -> Arguments:
    cursor.sp()
    name = mailbox(cursor)
    uses: list[str] = []
    if cursor.take(b" "):  # RFC 4466 §2.2 create-params; RFC 6154 §3 USE
        cursor.open_list()
        cursor.expect(b"USE ", "USE (special-use attributes)")
        cursor.open_list()
        while cursor.peek() != 0x29:
            if uses:
                cursor.sp()
            cursor.expect(b"\\", "a special-use attribute like \\Sent")
            uses.append("\\" + cursor.atom("a special-use attribute"))
        cursor.close_list()
        cursor.close_list()
    return Create(name, tuple(uses))


def _rename(cursor: Cursor) -> Arguments:
    cursor.sp()
    source = mailbox(cursor)
    cursor.sp()
    return Rename(source, mailbox(cursor))


def _list(cursor: Cursor) -> Arguments:
    """RFC 5258 §6: LIST [SP list-select-opts] SP mailbox SP mbox-or-pat
    [SP list-return-opts]."""
    cursor.sp()
    selection: frozenset[str] = frozenset()
    extended = False
    if cursor.peek() == 0x28:
        selection = frozenset(_atom_list(cursor, "a LIST selection option"))
        extended = True
        cursor.sp()
    reference = cursor.astring_text("a reference name")
    cursor.sp()
    if cursor.peek() == 0x28:
        cursor.open_list()
        patterns = [list_mailbox(cursor)]
        while cursor.take(b" "):
            patterns.append(list_mailbox(cursor))
        cursor.close_list()
        extended = True
    else:
        patterns = [list_mailbox(cursor)]
    returns: set[str] = set()
    status_items: tuple[str, ...] = ()
    if cursor.take(b" "):
        cursor.expect(b"RETURN ", "RETURN (options)")
        extended = True
        cursor.open_list()
        while cursor.peek() != 0x29:
            if returns:
                cursor.sp()
            option = cursor.atom("a LIST return option").upper()
            if option == "STATUS":  # RFC 5819 §4
                cursor.sp()
                status_items = _status_items(cursor)
            returns.add(option)
        cursor.close_list()
    return ListMailboxes(
        reference, tuple(patterns), selection, frozenset(returns), status_items, extended
    )


def _lsub(cursor: Cursor) -> Arguments:
    cursor.sp()
    reference = cursor.astring_text("a reference name")
    cursor.sp()
    return ListMailboxes(reference, (list_mailbox(cursor),))


def _status_items(cursor: Cursor) -> tuple[str, ...]:
    items = _atom_list(cursor, "a STATUS item")
    if not items:
        raise CommandError("Syntax error: STATUS needs at least one item")
    for item in items:
        if item not in STATUS_ITEMS:
            raise CommandError(f"Syntax error: unknown STATUS item {item!r}")
    return tuple(items)


def _status(cursor: Cursor) -> Arguments:
    cursor.sp()
    name = mailbox(cursor)
    cursor.sp()
    return Status(name, _status_items(cursor))


def _append(cursor: Cursor) -> Arguments:
    """RFC 3502 §6.3.11: APPEND mailbox 1*(append-opts SP append-data)."""
    cursor.sp()
    name = mailbox(cursor)
    messages: list[AppendMessage] = []
    while not messages or cursor.take(b" "):
        if not messages:
            cursor.sp()
        flags: tuple[str, ...] = ()
        date: dt.datetime | None = None
        if cursor.peek() == 0x28:
            flags = flag_list(cursor)
            cursor.sp()
        if cursor.peek() == 0x22:
            date = cursor.date_time()
            cursor.sp()
        messages.append(_append_data(cursor, flags, date))
    return Append(name, tuple(messages))


def _append_data(cursor: Cursor, flags: tuple[str, ...], date: dt.datetime | None) -> AppendMessage:
    if cursor.keyword(b"UTF8"):  # RFC 6855 §4: UTF8 SP "(" literal8 ")"
        cursor.sp()
        cursor.open_list()
        literal = cursor.literal()
        cursor.close_list()
        return AppendMessage(flags, date, literal.data, True)
    if cursor.peek() not in (0x7B, 0x7E):
        raise cursor.error("expected the message as a literal")
    literal = cursor.literal()
    return AppendMessage(flags, date, literal.data, literal.binary)


def _search(cursor: Cursor) -> Arguments:
    cursor.sp()
    return search.parse_search(cursor)


def _fetch(cursor: Cursor) -> Arguments:
    cursor.sp()
    numbers = sequence_set(cursor)
    cursor.sp()
    items = fetchatt.parse_fetch_items(cursor)
    changed_since: int | None = None
    vanished = False
    if cursor.take(b" "):  # RFC 4466 §2.4 fetch-modifiers
        cursor.open_list()
        first = True
        while first or cursor.take(b" "):  # RFC 4466 §2: at least one
            first = False
            modifier = cursor.atom("a FETCH modifier").upper()
            if modifier == "CHANGEDSINCE":
                cursor.sp()
                changed_since = cursor.number(limit=MODSEQ_MAX)
            elif modifier == "VANISHED":  # RFC 7162 §3.2.6
                vanished = True
            else:
                raise CommandError(f"Syntax error: unknown FETCH modifier {modifier!r}")
        cursor.close_list()
    return Fetch(numbers, fetchatt.FetchRequest(items, changed_since, vanished))


def _store(cursor: Cursor) -> Arguments:
    cursor.sp()
    numbers = sequence_set(cursor)
    cursor.sp()
    unchanged_since: int | None = None
    if cursor.peek() == 0x28:  # RFC 4466 §2.5 store-modifiers; RFC 7162 UNCHANGEDSINCE
        cursor.open_list()
        cursor.expect(b"UNCHANGEDSINCE ", "UNCHANGEDSINCE")
        unchanged_since = cursor.number(limit=MODSEQ_MAX)
        cursor.close_list()
        cursor.sp()
    mode: StoreMode = "add" if cursor.take(b"+") else "remove" if cursor.take(b"-") else "replace"
    cursor.expect(b"FLAGS", "FLAGS, +FLAGS or -FLAGS")
    silent = cursor.take(b".SILENT")
    cursor.sp()
    if cursor.peek() == 0x28:
        flags = flag_list(cursor)
    else:
        items = [flag(cursor)]
        while cursor.take(b" "):
            items.append(flag(cursor))
        flags = tuple(items)
    return Store(numbers, mode, silent, flags, unchanged_since)


def _transfer(cursor: Cursor) -> Arguments:
    cursor.sp()
    numbers = sequence_set(cursor)
    cursor.sp()
    return Transfer(numbers, mailbox(cursor))


def _expunge(cursor: Cursor) -> Arguments:
    return NoArguments()


def _uid_expunge(cursor: Cursor) -> Arguments:
    cursor.sp()
    return Expunge(sequence_set(cursor))


def _search_criteria(cursor: Cursor) -> search.SearchRequest:
    """RFC 5256 §3 search-criteria = charset 1*(SP search-key): the charset is required."""
    name = cursor.astring_text("a charset name").upper()
    if name not in search.CHARSETS:
        raise CommandError(
            f"Charset {name} is not supported for searching",
            status="NO",
            code=search.BADCHARSET_CODE,
        )
    cursor.sp()
    key = search.parse_keys(cursor, name)
    cursor.end()
    return search.SearchRequest(key, name)


def _sort(cursor: Cursor) -> Arguments:
    cursor.sp()
    cursor.open_list()
    criteria: list[SortCriterion] = []
    while cursor.peek() != 0x29:
        if criteria:
            cursor.sp()
        reverse = cursor.keyword(b"REVERSE")
        if reverse:
            cursor.sp()
        key = cursor.atom("a sort key").upper()
        if key not in SORT_KEYS:
            raise CommandError(f"Syntax error: unknown sort key {key!r}")
        criteria.append(SortCriterion(key, reverse))
    cursor.close_list()
    if not criteria:
        raise CommandError("Syntax error: SORT needs at least one sort key")
    cursor.sp()
    return Sort(tuple(criteria), _search_criteria(cursor))


def _thread(cursor: Cursor) -> Arguments:
    cursor.sp()
    algorithm = cursor.atom("a threading algorithm").upper()
    if algorithm not in THREAD_ALGORITHMS:
        raise CommandError(f"Syntax error: unknown threading algorithm {algorithm!r}")
    cursor.sp()
    return Thread(algorithm, _search_criteria(cursor))


def _acl(identifier: bool, rights: bool = False) -> Parser:
    """RFC 4314 §3: command SP mailbox [SP identifier [SP mod-rights]], all astrings."""

    def parse(cursor: Cursor) -> Arguments:
        cursor.sp()
        name = mailbox(cursor)
        who = what = None
        if identifier:
            cursor.sp()
            who = cursor.astring_text("an identifier")
        if rights:
            cursor.sp()
            what = cursor.astring_text("the rights")
        return AclArguments(name, who, what)

    return parse


def _compress(cursor: Cursor) -> Arguments:
    cursor.sp()
    return Compress(cursor.atom("a compression mechanism").upper())


def _getquota(cursor: Cursor) -> Arguments:
    """RFC 9208 §8: getquota = "GETQUOTA" SP quota-root-name (an astring)."""
    cursor.sp()
    return QuotaRoot(cursor.astring_text("a quota root name"))


def _setquota(cursor: Cursor) -> Arguments:
    """RFC 9208 §8: "SETQUOTA" SP quota-root-name SP setquota-list, where setquota-list =
    "(" [setquota-resource *(SP setquota-resource)] ")", resource-name SP number64."""
    cursor.sp()
    root = cursor.astring_text("a quota root name")
    cursor.sp()
    cursor.open_list()
    limits: list[tuple[str, int]] = []
    while cursor.peek() != 0x29:
        if limits:
            cursor.sp()
        name = cursor.atom("a resource name").upper()
        cursor.sp()
        limits.append((name, cursor.number(limit=MODSEQ_MAX)))
        if len(limits) > QUOTA_MAX_RESOURCES:
            raise CommandError(f"Syntax error: at most {QUOTA_MAX_RESOURCES} resources")
    cursor.close_list()
    return SetQuota(root, tuple(limits))


Parser = Callable[[Cursor], Arguments]

# Every command the grammar knows, with its argument parser.
COMMANDS: Final[dict[str, Parser]] = {
    "CAPABILITY": _no_arguments,
    "NOOP": _no_arguments,
    "LOGOUT": _no_arguments,
    "STARTTLS": _no_arguments,
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "ID": _id,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _create,
    "DELETE": _one_mailbox,
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox,
    "UNSUBSCRIBE": _one_mailbox,
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _no_arguments,
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _no_arguments,
    "CHECK": _no_arguments,
    "CLOSE": _no_arguments,
    "UNSELECT": _no_arguments,
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _transfer,
    "MOVE": _transfer,
    "SORT": _sort,
    "THREAD": _thread,
    "COMPRESS": _compress,
    "SETACL": _acl(identifier=True, rights=True),
    "DELETEACL": _acl(identifier=True),
    "GETACL": _acl(identifier=False),
    "LISTRIGHTS": _acl(identifier=True),
    "MYRIGHTS": _acl(identifier=False),
    "GETQUOTA": _getquota,  # RFC 9208 §4.2-§4.3
    "GETQUOTAROOT": _one_mailbox,
    "SETQUOTA": _setquota,
}
# Commands that take the UID prefix (RFC 3501 §6.4.8, RFC 4315, RFC 5256, RFC 6851).
UID_COMMANDS: Final[dict[str, Parser]] = {
    "COPY": _transfer,
    "MOVE": _transfer,
    "FETCH": _fetch,
    "SEARCH": _search,
    "STORE": _store,
    "EXPUNGE": _uid_expunge,
    "SORT": _sort,
    "THREAD": _thread,
}


def read_tag(cursor: Cursor) -> str:
    """RFC 3501 §9 tag = 1*<any ASTRING-CHAR except "+">."""
    return cursor.chars(TAG_CHARS, "a command tag").decode("ascii")


def parse_after_tag(cursor: Cursor, tag: str) -> Command:
    """The rest of a command after its tag; `CommandError` if it is not valid."""
    cursor.sp()
    name = cursor.atom("a command name").upper()
    uid = name == "UID"
    if uid:
        cursor.sp()
        name = cursor.atom("a command name after UID").upper()
        parser = UID_COMMANDS.get(name)
        if parser is None:
            raise CommandError(f"Unknown command UID {name} (UID takes {_uid_names()})")
    else:
        found = COMMANDS.get(name)
        if found is None:
            raise CommandError(f"Unknown command {name[:40]}")
        parser = found
    arguments = parser(cursor)
    cursor.end()
    return Command(tag, name, arguments, uid)


def _uid_names() -> str:
    return ", ".join(sorted(UID_COMMANDS))
