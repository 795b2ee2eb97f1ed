"""IMAP responses: values written exactly as RFC 3501 §4 and §7 require.

`encode_value` writes any response value: None is NIL, an int a number, a str or bytes
a string (quoted when it may be, else a literal: RFC 3501 §4.3; UTF-8 in quoted strings
only once UTF8=ACCEPT is enabled, RFC 6855 §3), `Atom` and `Raw` verbatim (Raw is for
pre-serialised ENVELOPE/BODYSTRUCTURE), `Literal` always as a literal (``~{n}`` for
binary content, RFC 3516 §4.3), lists and tuples parenthesised.

`Status` is a tagged or untagged status response with an optional `Code` (RFC 3501
§7.1, RFC 5530, RFC 4315, RFC 7162 ...), `Data` an untagged data response, and
`Continuation` a command continuation request (RFC 3501 §7.5).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from typing import Literal as TypingLiteral

from posthouse.protocols.imap import seqset

# Quoted strings longer than this are sent as literals (easier on clients' parsers).
MAX_QUOTED: Final = 1024
_QUOTED_SPECIALS: Final = frozenset(b'"\\')
_ATOM_FORBIDDEN: Final = frozenset(b"\r\n\x00")


@dataclass(frozen=True)
class Atom:
    """Text written verbatim: keywords, flags, ``BODY[...]`` names (no CR, LF or NUL)."""

    text: str

    def __post_init__(self) -> None:
        if not self.text or any(ord(c) in _ATOM_FORBIDDEN for c in self.text):
            raise ValueError(f"not a valid response atom: {self.text!r}")


@dataclass(frozen=True)
class Raw:
    """Octets already in wire form (a cached ENVELOPE or BODYSTRUCTURE)."""

    data: bytes


@dataclass(frozen=True)
class Literal:
    """A value always sent as a literal; ``binary`` makes it a literal8 (may hold NUL)."""

    data: bytes
    binary: bool = False


def encode_value(value: object, *, utf8: bool = False) -> bytes:
    """The wire form of one response value (see the module docstring)."""
    out = bytearray()
    _write(out, value, utf8)
    return bytes(out)


def _write(out: bytearray, value: object, utf8: bool) -> None:
    if value is None:
        out += b"NIL"
    elif isinstance(value, bool):
        raise TypeError("a bool is not an IMAP value")
    elif isinstance(value, int):
        if value < 0:
            raise ValueError("IMAP numbers are not negative")
        out += str(value).encode("ascii")
    elif isinstance(value, str):
        _write_string(out, value.encode("utf-8"), utf8)
    elif isinstance(value, bytes | bytearray | memoryview):
        _write_string(out, bytes(value), utf8)
    elif isinstance(value, Atom):
        out += value.text.encode("utf-8")
    elif isinstance(value, Raw):
        out += value.data
    elif isinstance(value, Literal):
        _write_literal(out, value.data, binary=value.binary)
    elif isinstance(value, list | tuple):
        out += b"("
        for index, item in enumerate(value):
            if index:
                out += b" "
            _write(out, item, utf8)
        out += b")"
    else:
        raise TypeError(f"not an IMAP response value: {value!r}")


def can_quote(data: bytes, *, utf8: bool = False) -> bool:
    """True if ``data`` may be a quoted string (RFC 3501 §9 quoted; RFC 6855 utf8-quoted)."""
    if len(data) > MAX_QUOTED or b"\r" in data or b"\n" in data or b"\x00" in data:
        return False
    if data.isascii():
        return True
    if not utf8:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _write_string(out: bytearray, data: bytes, utf8: bool) -> None:
    if can_quote(data, utf8=utf8):
        out += b'"'
        if _QUOTED_SPECIALS.isdisjoint(data):
            out += data
        else:
            out += data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        out += b'"'
    else:
        _write_literal(out, data, binary=False)


def _write_literal(out: bytearray, data: bytes, *, binary: bool) -> None:
    if not binary and b"\x00" in data:
        # RFC 3501 §4.3: a literal holds no NUL; keep the length, lose only the NUL.
        data = data.replace(b"\x00", b"\x80")
    out += b"~{" if binary else b"{"
    out += str(len(data)).encode("ascii")
    out += b"}\r\n"
    out += data


# ------------------------------------------------------------------ response codes


@dataclass(frozen=True)
class Code:
    """A response code: ``[NAME]`` or ``[NAME data]`` (data already in wire form)."""

    name: str
    data: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-." for c in self.name):
            raise ValueError(f"not a response code name: {self.name!r}")
        if self.data is not None and any(c in self.data for c in "\r\n]"):
            raise ValueError(f"invalid response code data: {self.data!r}")

    def __str__(self) -> str:
        return self.name if self.data is None else f"{self.name} {self.data}"


# RFC 3501 §7.1
ALERT: Final = Code("ALERT")
PARSE: Final = Code("PARSE")
READ_ONLY: Final = Code("READ-ONLY")
READ_WRITE: Final = Code("READ-WRITE")
TRYCREATE: Final = Code("TRYCREATE")
# RFC 5530 §3
UNAVAILABLE: Final = Code("UNAVAILABLE")
AUTHENTICATIONFAILED: Final = Code("AUTHENTICATIONFAILED")
AUTHORIZATIONFAILED: Final = Code("AUTHORIZATIONFAILED")
EXPIRED: Final = Code("EXPIRED")
PRIVACYREQUIRED: Final = Code("PRIVACYREQUIRED")
CONTACTADMIN: Final = Code("CONTACTADMIN")
NOPERM: Final = Code("NOPERM")
INUSE: Final = Code("INUSE")
EXPUNGEISSUED: Final = Code("EXPUNGEISSUED")
CORRUPTION: Final = Code("CORRUPTION")
SERVERBUG: Final = Code("SERVERBUG")
CLIENTBUG: Final = Code("CLIENTBUG")
CANNOT: Final = Code("CANNOT")
LIMIT: Final = Code("LIMIT")
OVERQUOTA: Final = Code("OVERQUOTA")
ALREADYEXISTS: Final = Code("ALREADYEXISTS")
NONEXISTENT: Final = Code("NONEXISTENT")
# RFC 4315 §3, RFC 7162 §3.1.2/§3.2.11, RFC 4469 / RFC 7889, RFC 3516 §4.5, RFC 4978 §3,
# and the rest as marked
UIDNOTSTICKY: Final = Code("UIDNOTSTICKY")
NOMODSEQ: Final = Code("NOMODSEQ")
CLOSED: Final = Code("CLOSED")
TOOBIG: Final = Code("TOOBIG")
UNKNOWN_CTE: Final = Code("UNKNOWN-CTE")
COMPRESSIONACTIVE: Final = Code("COMPRESSIONACTIVE")
NOTSAVED: Final = Code("NOTSAVED")  # RFC 5182 §2.2: SEARCH ... RETURN (SAVE) failed
USEATTR: Final = Code("USEATTR")  # RFC 6154 §6: CREATE (USE ...) refused
HASCHILDREN: Final = Code("HASCHILDREN")  # RFC 9051 §7.1: DELETE of a mailbox with children


def number_code(name: str, number: int) -> Code:
    """UIDNEXT, UIDVALIDITY, UNSEEN (RFC 3501 §7.1), HIGHESTMODSEQ (RFC 7162 §3.1.2.1),
    APPENDLIMIT (RFC 7889)."""
    if number < 0:
        raise ValueError("response code numbers are not negative")
    return Code(name, str(number))


def list_code(name: str, items: Iterable[str]) -> Code:
    """PERMANENTFLAGS (...), BADCHARSET (...) (RFC 3501 §7.1)."""
    return Code(name, "(" + " ".join(items) + ")")


def capability_code(capabilities: Iterable[str]) -> Code:
    return Code("CAPABILITY", " ".join(capabilities))


def appenduid(uidvalidity: int, uids: Sequence[int]) -> Code:
    """RFC 4315 §3 APPENDUID uidvalidity uid-set (several UIDs for MULTIAPPEND)."""
    return Code("APPENDUID", f"{uidvalidity} {seqset.format_ordered(uids)}")


def copyuid(uidvalidity: int, sources: Sequence[int], targets: Sequence[int]) -> Code:
    """RFC 4315 §3 COPYUID: source and destination UID sets paired by position."""
    if len(sources) != len(targets) or not sources:
        raise ValueError("COPYUID needs as many source as destination UIDs, at least one")
    return Code(
        "COPYUID",
        f"{uidvalidity} {seqset.format_ordered(sources)} {seqset.format_ordered(targets)}",
    )


def modified(numbers: Iterable[int]) -> Code:
    """RFC 7162 §3.1.3 MODIFIED sequence-set (numbers that failed UNCHANGEDSINCE)."""
    return Code("MODIFIED", seqset.format_numbers(numbers))


# ------------------------------------------------------------------ responses

StatusName = TypingLiteral["OK", "NO", "BAD", "BYE", "PREAUTH"]


def _human(text: str) -> str:
    if "\r" in text or "\n" in text:
        raise ValueError("response text must not contain CR or LF")
    return text


@dataclass(frozen=True)
class Status:
    """``tag OK [CODE] text`` or, with ``tag`` None, ``* OK [CODE] text`` (RFC 3501 §7.1)."""

    status: StatusName
    text: str
    tag: str | None = None
    code: Code | None = None

    def __post_init__(self) -> None:
        _human(self.text)
        if self.tag is not None and self.status in ("BYE", "PREAUTH"):
            raise ValueError(f"{self.status} is only sent untagged")

    def to_bytes(self) -> bytes:
        parts = [self.tag or "*", self.status]
        if self.code is not None:
            parts.append(f"[{self.code}]")
        parts.append(self.text or self.status.capitalize())
        return (" ".join(parts) + "\r\n").encode("utf-8")


@dataclass(frozen=True)
class Data:
    """An untagged data response: ``* `` and the values separated by SP."""

    values: tuple[object, ...]
    utf8: bool = False

    def to_bytes(self) -> bytes:
        out = bytearray(b"* ")
        for index, value in enumerate(self.values):
            if index:
                out += b" "
            _write(out, value, self.utf8)
        out += b"\r\n"
        return bytes(out)


def data(*values: object, utf8: bool = False) -> Data:
    """``data(3, Atom("EXISTS"))`` is ``* 3 EXISTS``."""
    return Data(values, utf8)


@dataclass(frozen=True)
class Continuation:
    """``+ text`` (RFC 3501 §7.5); for SASL the text is the base64 challenge."""

    text: str = "Ready for literal data"

    def to_bytes(self) -> bytes:
        return f"+ {_human(self.text)}\r\n".encode() if self.text else b"+ \r\n"


def fetch(number: int, items: Iterable[tuple[str, object]], *, utf8: bool = False) -> Data:
    """``* n FETCH (NAME value ...)`` (RFC 3501 §7.4.2)."""
    flat: list[object] = []
    for name, value in items:
        flat += [Atom(name), value]
    return Data((number, Atom("FETCH"), flat), utf8)


def binary_value(octets: bytes | None) -> object:
    """A BINARY[...] value: NIL, or a literal8 when it holds NUL (RFC 3516 §4.3)."""
    if octets is None:
        return None
    return Literal(octets, binary=b"\x00" in octets)


_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def date_time(when: dt.datetime) -> str:
    """RFC 3501 §9 date-time text for INTERNALDATE: " 7-Feb-1994 21:52:25 -0800"
    (the day space-padded, the zone of ``when``; a naive time is taken as UTC)."""
    offset = when.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return (
        f"{when.day:2d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{hours:02d}{mins:02d}"
    )


def flags_value(flags: Iterable[str]) -> list[Atom]:
    """A flag list as a value: ``(\\Seen $Label)``."""
    return [Atom(flag) for flag in flags]


def search_data(numbers: Iterable[int], *, modseq: int | None = None) -> Data:
    """``* SEARCH 2 84 882`` (RFC 3501 §7.2.5), with RFC 7162 §3.1.5 ``(MODSEQ n)``
    when the search used MODSEQ and found something."""
    values: list[object] = [Atom("SEARCH"), *numbers]
    if modseq is not None and len(values) > 1:
        values.append([Atom("MODSEQ"), modseq])
    return Data(tuple(values))


def vanished(uids: Iterable[int], *, earlier: bool) -> Data:
    """RFC 7162 §3.2.10 ``* VANISHED [(EARLIER)] uid-set`` (``uids`` must not be empty)."""
    uid_set = seqset.format_numbers(uids)
    if not uid_set:
        raise ValueError("VANISHED needs at least one UID")
    values: list[object] = [Atom("VANISHED")]
    if earlier:
        values.append([Atom("EARLIER")])
    values.append(Atom(uid_set))
    return Data(tuple(values))


def esearch(
    tag: str | None, *, uid: bool, results: Sequence[tuple[str, int | Sequence[int]]]
) -> Data:
    """RFC 4731 §3.1: ``* ESEARCH [(TAG "t")] [UID] name value ...``.

    ``results`` holds (MIN, n), (MAX, n), (COUNT, n) and (ALL, numbers); an ALL with
    no numbers is left out, as RFC 4731 §3.1 requires.
    """
    values: list[object] = [Atom("ESEARCH")]
    if tag is not None:
        values.append([Atom("TAG"), tag])
    if uid:
        values.append(Atom("UID"))
    for name, result in results:
        if isinstance(result, int):
            values += [Atom(name), result]
        elif result:
            values += [Atom(name), Atom(seqset.format_numbers(result))]
    return Data(tuple(values))
