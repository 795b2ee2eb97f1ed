"""FETCH attributes: RFC 3501 §6.4.5 / §9 fetch-att, RFC 3516 BINARY, RFC 7162 MODSEQ.

`parse_fetch_items` reads the attribute list (or macro) of a FETCH command into
`FetchItem` values; `FetchItem.response_name` gives the name the FETCH response uses
for it (RFC 3501 §7.4.2: BODY.PEEK is answered as BODY, a partial by its origin only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from posthouse.protocols.imap.cursor import Cursor
from posthouse.protocols.imap.errors import CommandError

# RFC 3501 §6.4.5: the macros and what they stand for.
MACROS: Final[dict[str, tuple[str, ...]]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SIMPLE: Final = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",  # RFC 7162 §3.1.4.1
    }
)
# Attributes that set \Seen when fetched (RFC 3501 §6.4.5).
SETS_SEEN: Final = frozenset({"RFC822", "RFC822.TEXT"})
TEXT_SPECS: Final = ("HEADER.FIELDS.NOT", "HEADER.FIELDS", "HEADER", "TEXT", "MIME")
_NAME_CHARS: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")


@dataclass(frozen=True)
class Section:
    """RFC 3501 §9 section-spec: a part path and what of it.

    ``text`` is None (the whole part), "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
    "TEXT" or "MIME"; ``fields`` the header names of the two HEADER.FIELDS forms as
    the client wrote them (the response echoes them; matching ignores case).
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        pieces = [".".join(str(n) for n in self.part)] if self.part else []
        if self.text is not None:
            pieces.append(self.text)
        spec = ".".join(pieces)
        if self.fields:
            spec += " (" + " ".join(_field_name(name) for name in self.fields) + ")"
        return spec


def _field_name(name: str) -> str:
    """A header name as an astring in a response (quoted if it is not a plain atom)."""
    if name and all(ord(c) < 0x80 and (c.isalnum() or c in "-_.") for c in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class FetchItem:
    """One fetch-att.  ``name`` is upper-case: a `SIMPLE` name, "BODY" with a section
    (``section`` not None), "BINARY" or "BINARY.SIZE" (RFC 3516 §4.2)."""

    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None  # (origin, count)

    @property
    def sets_seen(self) -> bool:
        """True if fetching it sets \\Seen (RFC 3501 §6.4.5, RFC 3516 §4.2)."""
        if self.name in SETS_SEEN:
            return True
        return self.name in ("BODY", "BINARY") and self.section is not None and not self.peek

    def response_name(self) -> str:
        """The name of this item in the FETCH response (RFC 3501 §7.4.2)."""
        if self.section is None:
            return self.name
        name = f"{self.name}[{self.section}]"
        if self.partial is not None:
            name += f"<{self.partial[0]}>"
        return name


@dataclass(frozen=True)
class FetchRequest:
    """What a FETCH asks for: items in order and the RFC 7162 modifiers."""

    items: tuple[FetchItem, ...]
    changed_since: int | None = None  # RFC 7162 §3.1.4.1 CHANGEDSINCE
    vanished: bool = False  # RFC 7162 §3.2.6 VANISHED (UID FETCH only)


def parse_fetch_items(cursor: Cursor) -> tuple[FetchItem, ...]:
    """The attributes of a FETCH: a macro, one fetch-att or a parenthesised list."""
    if cursor.peek() == 0x28:
        cursor.open_list()
        items = [parse_fetch_item(cursor)]
        while cursor.take(b" "):
            items.append(parse_fetch_item(cursor))
        cursor.close_list()
        return tuple(items)
    for macro, names in MACROS.items():
        if cursor.keyword(macro.encode()):
            cursor.counted()
            return tuple(FetchItem(name) for name in names)
    return (parse_fetch_item(cursor),)


def parse_fetch_item(cursor: Cursor) -> FetchItem:
    name = cursor.chars(_NAME_CHARS, "a fetch attribute").decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK") and cursor.peek() == 0x5B:
        section = _section(cursor)
        return FetchItem("BODY", section, name == "BODY.PEEK", _partial(cursor))
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        part = _binary_section(cursor)
        if name == "BINARY.SIZE":
            return FetchItem(name, Section(part))
        return FetchItem("BINARY", Section(part), name == "BINARY.PEEK", _partial(cursor))
    if name in SIMPLE:
        return FetchItem(name)
    raise CommandError(f"Syntax error: unknown fetch attribute {name!r}")


def _digit_next(cursor: Cursor) -> bool:
    octet = cursor.peek()
    return octet is not None and 0x30 <= octet <= 0x39


def _section(cursor: Cursor) -> Section:
    """RFC 3501 §9 section = "[" [section-spec] "]"."""
    cursor.expect(b"[")
    part: list[int] = []
    text_required = False
    while _digit_next(cursor):
        part.append(cursor.number(nonzero=True))
        if not cursor.take(b"."):
            break
        text_required = not _digit_next(cursor)
    text: str | None = None
    fields: tuple[str, ...] = ()
    if text_required or (not part and cursor.peek() != 0x5D):
        for spec in TEXT_SPECS:
            if cursor.take(spec.encode()):
                text = spec
                break
        else:
            raise cursor.error("expected HEADER, HEADER.FIELDS, TEXT or MIME in a section")
        if text == "MIME" and not part:
            raise CommandError("Syntax error: MIME needs a part number (RFC 3501 §6.4.5)")
        if text.startswith("HEADER.FIELDS"):
            cursor.sp()
            fields = _header_list(cursor)
    cursor.expect(b"]", "']' closing the section")
    return Section(tuple(part), text, fields)


def _header_list(cursor: Cursor) -> tuple[str, ...]:
    """RFC 3501 §9 header-list = "(" header-fld-name *(SP header-fld-name) ")"."""
    cursor.open_list()
    names = [cursor.astring_text("a header name")]
    while cursor.take(b" "):
        names.append(cursor.astring_text("a header name"))
    cursor.close_list()
    for name in names:
        if not name or any(not 0x21 <= ord(c) <= 0x7E or c == ":" for c in name):
            raise CommandError(f"Syntax error: {name!r} is not a header field name")
    return tuple(names)


def _binary_section(cursor: Cursor) -> tuple[int, ...]:
    """RFC 3516 §4.3 section-binary = "[" [section-part] "]"."""
    cursor.expect(b"[", "'[' after BINARY")
    part: list[int] = []
    if cursor.peek() != 0x5D:
        part.append(cursor.number(nonzero=True))
        while cursor.take(b"."):
            part.append(cursor.number(nonzero=True))
    cursor.expect(b"]", "']' closing the section")
    return tuple(part)


def _partial(cursor: Cursor) -> tuple[int, int] | None:
    """RFC 3501 §9 partial = "<" number "." nz-number ">"."""
    if not cursor.take(b"<"):
        return None
    origin = cursor.number()
    cursor.expect(b".", "'.' in a partial range")
    count = cursor.number(nonzero=True)
    cursor.expect(b">", "'>' closing a partial range")
    return origin, count
