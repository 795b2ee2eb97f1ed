"""SEARCH: the key language parsed into a tree and evaluated against a `MessageView`.

Keys are RFC 3501 §6.4.4 (every key, parenthesised groups, sequence sets), RFC 5182
``$``, RFC 7162 §3.1.5 MODSEQ, RFC 5032 OLDER/YOUNGER; the command's RFC 4731 RETURN
options and CHARSET (UTF-8 and US-ASCII; anything else is NO [BADCHARSET]).  String
keys match as case-insensitive substrings of decoded text (RFC 3501 §6.4.4).  Nesting
(parentheses, NOT, OR) is limited by the cursor's depth limit, so evaluation recursion
is bounded too.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from posthouse.protocols.imap import seqset
from posthouse.protocols.imap.cursor import SEQUENCE_CHARS, Cursor
from posthouse.protocols.imap.errors import CommandError
from posthouse.protocols.imap.view import MessageView

CHARSETS: Final = ("UTF-8", "US-ASCII")
BADCHARSET_CODE: Final = "BADCHARSET (UTF-8 US-ASCII)"
RETURN_OPTIONS: Final = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})  # RFC 4731, RFC 5182

Relation = Literal["before", "on", "since"]


@dataclass(frozen=True)
class All:
    pass


@dataclass(frozen=True)
class Flag:
    """Messages with the flag or keyword (compared case-insensitively)."""

    flag: str


@dataclass(frozen=True)
class Date:
    """Internal date (BEFORE/ON/SINCE) or sent date (SENT*), time and zone disregarded."""

    sent: bool
    relation: Relation
    day: dt.date


@dataclass(frozen=True)
class Size:
    larger: bool
    octets: int


@dataclass(frozen=True)
class Header:
    """HEADER name value, and FROM/TO/CC/BCC/SUBJECT; an empty value matches presence."""

    name: str
    value: str


@dataclass(frozen=True)
class Body:
    value: str


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Numbers:
    """A sequence set (``uid`` False) or UID set."""

    numbers: seqset.SequenceSet
    uid: bool


@dataclass(frozen=True)
class ModSeq:
    """RFC 7162 §3.1.5: messages with a mod-sequence at least ``value``."""

    value: int


@dataclass(frozen=True)
class Age:
    """RFC 5032: OLDER / YOUNGER than ``seconds`` by internal date."""

    older: bool
    seconds: int


@dataclass(frozen=True)
class Not:
    key: Key


@dataclass(frozen=True)
class Or:
    left: Key
    right: Key


@dataclass(frozen=True)
class And:
    keys: tuple[Key, ...]


Key = All | Flag | Date | Size | Header | Body | Text | Numbers | ModSeq | Age | Not | Or | And


@dataclass(frozen=True)
class SearchRequest:
    """A parsed SEARCH: charset, the key tree and the RFC 4731 RETURN options (None:
    a plain RFC 3501 SEARCH; an empty RETURN () means ALL, RFC 4731 §3.1)."""

    key: Key
    charset: str = "UTF-8"
    returns: frozenset[str] | None = None


_FLAG_KEYS: Final = {
    "ANSWERED": "\\Answered",
    "DELETED": "\\Deleted",
    "DRAFT": "\\Draft",
    "FLAGGED": "\\Flagged",
    "RECENT": "\\Recent",
    "SEEN": "\\Seen",
}
_UNFLAG_KEYS: Final = {f"UN{name}": flag for name, flag in _FLAG_KEYS.items() if name != "RECENT"}
_ADDRESS_KEYS: Final = frozenset({"BCC", "CC", "FROM", "SUBJECT", "TO"})
_DATE_KEYS: Final[dict[str, tuple[bool, Relation]]] = {
    "BEFORE": (False, "before"),
    "ON": (False, "on"),
    "SINCE": (False, "since"),
    "SENTBEFORE": (True, "before"),
    "SENTON": (True, "on"),
    "SENTSINCE": (True, "since"),
}


def parse_return_options(cursor: Cursor) -> frozenset[str] | None:
    """RFC 4731 §3.1 ``RETURN (...)`` after SEARCH (None when absent)."""
    if not cursor.keyword(b"RETURN"):
        return None
    cursor.sp()
    cursor.open_list()
    options: set[str] = set()
    while cursor.peek() != 0x29:
        if options:
            cursor.sp()
        option = cursor.atom("a RETURN option").upper()
        if option not in RETURN_OPTIONS:
            raise CommandError(f"Syntax error: unknown SEARCH RETURN option {option!r}")
        options.add(option)
    cursor.close_list()
    cursor.sp()
    return frozenset(options or {"ALL"})


def parse_charset(cursor: Cursor) -> str:
    """``CHARSET name SP`` if present; the default charset otherwise.

    RFC 3501 §6.4.4: an unsupported charset is NO [BADCHARSET (...)].
    """
    if not cursor.keyword(b"CHARSET"):
        return "UTF-8"
    cursor.sp()
    name = cursor.astring_text("a charset name").upper()
    if name not in CHARSETS:
        raise CommandError(
            f"Charset {name} is not supported for searching", status="NO", code=BADCHARSET_CODE
        )
    cursor.sp()
    return name


def parse_search(cursor: Cursor, *, esearch: bool = True) -> SearchRequest:
    """``[RETURN (...)] [CHARSET x] key *(SP key)`` to the end of the command."""
    returns = parse_return_options(cursor) if esearch else None
    charset = parse_charset(cursor)
    key = parse_keys(cursor, charset)
    cursor.end()
    return SearchRequest(key, charset, returns)


def parse_keys(cursor: Cursor, charset: str) -> Key:
    """One or more keys separated by SP, up to the end of the command or a ")"."""
    keys = [parse_key(cursor, charset)]
    while cursor.take(b" "):
        keys.append(parse_key(cursor, charset))
    return keys[0] if len(keys) == 1 else And(tuple(keys))


def parse_key(cursor: Cursor, charset: str) -> Key:
    """One RFC 3501 §9 search-key (nesting counted against the depth limit)."""
    cursor.enter()
    key = _key(cursor, charset)
    cursor.leave()
    return key


def _key(cursor: Cursor, charset: str) -> Key:
    octet = cursor.peek()
    if octet == 0x28:
        cursor.open_list()
        group = parse_keys(cursor, charset)
        cursor.close_list()
        return group
    if octet is not None and octet in SEQUENCE_CHARS:
        text = cursor.chars(SEQUENCE_CHARS, "a sequence set").decode("ascii")
        return Numbers(seqset.parse(text), uid=False)
    name = cursor.atom("a search key").upper()
    if name in _FLAG_KEYS:
        return Flag(_FLAG_KEYS[name])
    if name in _UNFLAG_KEYS:
        return Not(Flag(_UNFLAG_KEYS[name]))
    if name in _DATE_KEYS:
        sent, relation = _DATE_KEYS[name]
        cursor.sp()
        return Date(sent, relation, cursor.date())
    if name in _ADDRESS_KEYS:
        cursor.sp()
        return Header(name, _search_string(cursor, charset))
    return _other_key(name, cursor, charset)


def _other_key(name: str, cursor: Cursor, charset: str) -> Key:
    match name:
        case "ALL":
            return All()
        case "NEW":  # RFC 3501 §6.4.4: RECENT UNSEEN
            return And((Flag("\\Recent"), Not(Flag("\\Seen"))))
        case "OLD":
            return Not(Flag("\\Recent"))
        case "KEYWORD" | "UNKEYWORD":
            cursor.sp()
            keyword = Flag(cursor.atom("a keyword"))
            return keyword if name == "KEYWORD" else Not(keyword)
        case "LARGER" | "SMALLER":
            cursor.sp()
            return Size(name == "LARGER", cursor.number(limit=2**63 - 1))  # RFC 9051 number64
        case "BODY":
            cursor.sp()
            return Body(_search_string(cursor, charset))
        case "TEXT":
            cursor.sp()
            return Text(_search_string(cursor, charset))
        case "HEADER":
            cursor.sp()
            field_name = cursor.astring_text("a header name")
            cursor.sp()
            return Header(field_name.upper(), _search_string(cursor, charset))
        case "UID":
            cursor.sp()
            text = cursor.chars(SEQUENCE_CHARS, "a UID set").decode("ascii")
            return Numbers(seqset.parse(text), uid=True)
        case "NOT":
            cursor.sp()
            return Not(parse_key(cursor, charset))
        case "OR":
            cursor.sp()
            left = parse_key(cursor, charset)
            cursor.sp()
            return Or(left, parse_key(cursor, charset))
        case "MODSEQ":
            return _modseq(cursor)
        case "OLDER" | "YOUNGER":
            cursor.sp()
            return Age(name == "OLDER", cursor.number(nonzero=True))
    raise CommandError(f"Syntax error: unknown search key {name!r}")


def _modseq(cursor: Cursor) -> ModSeq:
    """RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer."""
    cursor.sp()
    if cursor.peek() == 0x22:
        cursor.quoted()  # entry name: only the message-wide modseq is kept
        cursor.sp()
        kind = cursor.atom("priv, shared or all").lower()
        if kind not in ("priv", "shared", "all"):
            raise CommandError("Syntax error: MODSEQ entry type must be priv, shared or all")
        cursor.sp()
    return ModSeq(cursor.number(limit=2**63 - 1))


def _search_string(cursor: Cursor, charset: str) -> str:
    raw = cursor.astring()
    try:
        return raw.decode("ascii" if charset == "US-ASCII" else "utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"Syntax error: search string is not valid {charset}") from exc


# ------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class SearchContext:
    """What keys need beyond the message: the mailbox's largest sequence number and UID
    (for "*"), the saved result's UIDs (RFC 5182 "$") and the present time (RFC 5032)."""

    largest_seq: int
    largest_uid: int
    saved_uids: frozenset[int] = frozenset()
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def matches(key: Key, message: MessageView, context: SearchContext) -> bool:
    """True if ``message`` satisfies ``key``."""
    match key:
        case All():
            return True
        case Flag(flag):
            flags = message.flags
            if flag in flags:
                return True
            wanted = flag.upper()
            return any(have.upper() == wanted for have in flags)
        case Not(inner):
            return not matches(inner, message, context)
        case Or(left, right):
            return matches(left, message, context) or matches(right, message, context)
        case And(keys):
            return all(matches(inner, message, context) for inner in keys)
        case Numbers(numbers, uid):
            if numbers.saved:
                return message.uid in context.saved_uids
            if uid:
                return numbers.contains(message.uid, context.largest_uid)
            return numbers.contains(message.seq, context.largest_seq)
        case Size(larger, octets):
            return message.size > octets if larger else message.size < octets
        case ModSeq(value):
            return message.modseq >= value
        case Date(sent, relation, day):
            return _compare_day(
                _sent_day(message) if sent else message.internal_date.date(), relation, day
            )
        case Age(older, seconds):
            age = (context.now - message.internal_date).total_seconds()
            return age >= seconds if older else age <= seconds
        case Header(name, value):
            values = message.header_values(name)
            return any(_contains(text, value) for text in values) if value else bool(values)
        case Body(value):
            return _contains(message.body_text(), value)
        case Text(value):
            return _contains(message.header_text(), value) or _contains(message.body_text(), value)
    raise TypeError(f"not a search key: {key!r}")


def search(key: Key, messages: Iterable[MessageView], context: SearchContext) -> list[MessageView]:
    """The messages that satisfy ``key``, in the given order."""
    return [message for message in messages if matches(key, message, context)]


def return_results(
    numbers: Sequence[int], returns: frozenset[str]
) -> list[tuple[str, int | Sequence[int]]]:
    """The RFC 4731 §3.1 result items for the matching ``numbers`` (ascending), for
    `response.esearch`: MIN and MAX only when something matched, COUNT always, ALL
    when asked (SAVE is the engine's: it keeps the UIDs, RFC 5182)."""
    results: list[tuple[str, int | Sequence[int]]] = []
    if "MIN" in returns and numbers:
        results.append(("MIN", numbers[0]))
    if "MAX" in returns and numbers:
        results.append(("MAX", numbers[-1]))
    if "ALL" in returns:
        results.append(("ALL", numbers))
    if "COUNT" in returns:
        results.append(("COUNT", len(numbers)))
    return results


def _contains(text: str, value: str) -> bool:
    return value.casefold() in text.casefold()


def _compare_day(have: dt.date, relation: Relation, day: dt.date) -> bool:
    if relation == "before":
        return have < day
    if relation == "on":
        return have == day
    return have >= day


def sent_date(message: MessageView) -> dt.datetime | None:
    """The Date: header as a datetime (its own zone kept), None if absent or unreadable."""
    for value in message.header_values("Date"):
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            continue
        if parsed is not None:
            return parsed
    return None


def _sent_day(message: MessageView) -> dt.date:
    """The sent date's day; the internal date's where the Date: header is unusable
    (the fallback RFC 5256 §2.2 defines for the sent date)."""
    sent = sent_date(message)
    return (sent or message.internal_date).date()
