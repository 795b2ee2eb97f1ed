"""The MIME structure of a message, with exact byte offsets into the original octets.

`parse` finds every part's header and body as offsets into the message as stored, so
FETCH sections are slices of the original (never regenerated: RFC 3501 §6.4.5 asks for
the octets as they are).  Header fields are read with the `email` package's parser
(policy compat32, which keeps raw values: non-ASCII octets come back unchanged through
``surrogateescape``); parameters are split here so that names and values stay exactly
as written (RFC 2231 forms included), as BODYSTRUCTURE wants them (RFC 3501 §7.4.2).
Multipart bodies are split on their boundary delimiter lines (RFC 2046 §5.1.1);
message/rfc822 and message/global bodies are parsed as the messages they encapsulate,
nested at most `MAX_DEPTH` deep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser
from typing import Final

MAX_DEPTH: Final = 50  # nesting of multiparts and encapsulated messages
MAX_PARTS: Final = 10_000  # parts in one message; beyond, the rest is one opaque part
_BLANK_LINE: Final = re.compile(rb"\n(\r?\n)")
_FOLD: Final = re.compile(r"\r?\n(?=[ \t])")
_PARSER: Final = BytesHeaderParser(policy=policy.compat32)
_TOKEN_SPECIALS: Final = frozenset('()<>@,;:\\"/[]?= \t')
ENCAPSULATING: Final = frozenset({"RFC822", "GLOBAL"})  # message/... subtypes (RFC 6532)


@dataclass
class Part:
    """One body part (or the message itself): offsets and its Content-* fields.

    ``start``..``body_start`` is the header including the blank line that ends it,
    ``body_start``..``end`` the body.  ``children`` are the parts of a multipart,
    ``message`` the encapsulated message of a message/rfc822 part.
    """

    start: int
    body_start: int
    end: int
    fields: list[tuple[str, bytes]]
    maintype: str = "TEXT"
    subtype: str = "PLAIN"
    params: list[tuple[bytes, bytes]] = field(default_factory=list)
    children: list[Part] = field(default_factory=list)
    message: Part | None = None

    def value(self, name: str) -> bytes | None:
        """The first value of header field ``name``, unfolded; None if absent."""
        wanted = name.lower()
        for key, value in self.fields:
            if key.lower() == wanted:
                return value
        return None

    def values(self, name: str) -> list[bytes]:
        wanted = name.lower()
        return [value for key, value in self.fields if key.lower() == wanted]

    @property
    def is_multipart(self) -> bool:
        return self.maintype == "MULTIPART" and bool(self.children)

    def param(self, name: bytes) -> bytes | None:
        wanted = name.lower()
        for key, value in self.params:
            if key.lower() == wanted:
                return value
        return None


class _Budget:
    def __init__(self) -> None:
        self.parts = 0


def parse(data: bytes) -> Part:
    """The structure of the message ``data`` (any octets: never raises)."""
    return _parse_part(data, 0, len(data), default=("TEXT", "PLAIN"), depth=0, budget=_Budget())


def outline(data: bytes) -> Part:
    """Only where the message's header ends: enough for the sections of the message as a
    whole (`sections.top_level_only`), without reading a header field."""
    return Part(0, header_end(data, 0, len(data)), len(data), [])


def header_end(data: bytes, start: int, end: int) -> int:
    """Where the body starts: after the blank line that ends the header at ``start``."""
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2
    if data.startswith(b"\n", start) and start + 1 <= end:
        return start + 1
    match = _BLANK_LINE.search(data, start, end)
    return end if match is None else match.end()


def parse_fields(raw: bytes) -> list[tuple[str, bytes]]:
    """Header fields (name, unfolded raw value) with the email package's parser."""
    message = _PARSER.parsebytes(raw)
    fields: list[tuple[str, bytes]] = []
    for name, value in message.raw_items():
        text = value if isinstance(value, str) else str(value)
        fields.append((name, _FOLD.sub("", text).encode("ascii", "surrogateescape")))
    return fields


def _parse_part(
    data: bytes, start: int, end: int, *, default: tuple[str, str], depth: int, budget: _Budget
) -> Part:
    budget.parts += 1
    body_start = header_end(data, start, end)
    part = Part(start, body_start, end, parse_fields(data[start:body_start]))
    content_type = part.value("Content-Type")
    part.maintype, part.subtype = default
    if content_type is not None:
        parsed = _content_type(content_type)
        if parsed is not None:
            part.maintype, part.subtype, part.params = parsed
    if depth >= MAX_DEPTH or budget.parts >= MAX_PARTS:
        return part
    if part.maintype == "MULTIPART":
        boundary = part.param(b"boundary")
        child_default = ("MESSAGE", "RFC822") if part.subtype == "DIGEST" else ("TEXT", "PLAIN")
        spans = _split(data, body_start, end, boundary) if boundary else []
        if not spans:  # no delimiter at all: the body is one text part without a header
            part.children = [Part(body_start, body_start, end, [])]
            return part
        part.children = [
            _parse_part(data, low, high, default=child_default, depth=depth + 1, budget=budget)
            for low, high in spans
        ]
    elif part.maintype == "MESSAGE" and part.subtype in ENCAPSULATING:
        part.message = _parse_part(
            data, body_start, end, default=("TEXT", "PLAIN"), depth=depth + 1, budget=budget
        )
    return part


def _split(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The body parts of a multipart body between ``start`` and ``end`` (RFC 2046 §5.1.1).

    A delimiter is "--boundary" at the start of a line, optionally "--" (the close
    delimiter), then only white space to the line end; the line break before it
    belongs to the delimiter, not to the part before.
    """
    delimiter = b"--" + boundary
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    pos = start
    while pos < end:
        found = data.find(delimiter, pos, end)
        if found < 0:
            break
        pos = found + len(delimiter)
        if found != start and data[found - 1] != 0x0A:
            continue
        line_end = data.find(b"\n", pos, end)
        line_end = end if line_end < 0 else line_end + 1
        rest = data[pos:line_end]
        closing = rest.startswith(b"--")
        if rest[2 if closing else 0 :].strip(b" \t\r\n"):
            continue  # "--boundary" followed by other text is content, not a delimiter
        if part_start is not None:
            before = found
            if before > part_start and data[before - 1] == 0x0A:
                before -= 1
                if before > part_start and data[before - 1] == 0x0D:
                    before -= 1
            spans.append((part_start, max(part_start, before)))
        if closing:
            return spans
        part_start = line_end
        pos = line_end
    if part_start is not None:
        spans.append((part_start, end))
    return spans


def _content_type(value: bytes) -> tuple[str, str, list[tuple[bytes, bytes]]] | None:
    """``type/subtype; params`` (RFC 2045 §5.1); None if the type is malformed."""
    head, _, rest = value.partition(b";")
    kind, slash, sub = head.decode("ascii", "replace").strip().partition("/")
    kind, sub = kind.strip(), sub.strip()
    if not slash or not _is_token(kind) or not _is_token(sub):
        return None
    return kind.upper(), sub.upper(), parse_params(rest)


def _is_token(text: str) -> bool:
    return bool(text) and all(0x20 < ord(c) < 0x7F and c not in _TOKEN_SPECIALS for c in text)


def parse_params(text: bytes) -> list[tuple[bytes, bytes]]:
    """``; name=value`` parameters, names and values as written (quotes removed from
    quoted values, their backslash escapes undone); comments skipped."""
    params: list[tuple[bytes, bytes]] = []
    pos = 0
    length = len(text)
    while pos < length:
        pos = _skip_space(text, pos)
        if pos < length and text[pos] == 0x3B:  # ";"
            pos += 1
            continue
        eq = text.find(b"=", pos)
        semi = text.find(b";", pos)
        if eq < 0 or (0 <= semi < eq):
            pos = length if semi < 0 else semi + 1
            continue
        name = text[pos:eq].strip()
        pos = _skip_space(text, eq + 1)
        if pos < length and text[pos] == 0x22:
            value, pos = _quoted(text, pos)
        else:
            stop = text.find(b";", pos)
            stop = length if stop < 0 else stop
            value = text[pos:stop].strip()
            pos = stop
        if name:
            params.append((name, value))
    return params


def _skip_space(text: bytes, pos: int) -> int:
    while pos < len(text):
        if text[pos] in b" \t\r\n":
            pos += 1
        elif text[pos] == 0x28:  # "(" comment
            depth = 0
            while pos < len(text):
                if text[pos] == 0x5C:
                    pos += 1
                elif text[pos] == 0x28:
                    depth += 1
                elif text[pos] == 0x29:
                    depth -= 1
                    if depth == 0:
                        break
                pos += 1
            pos += 1
        else:
            break
    return pos


def _quoted(text: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    pos += 1
    while pos < len(text):
        octet = text[pos]
        if octet == 0x5C and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
            continue
        if octet == 0x22:
            return bytes(out), pos + 1
        out.append(octet)
        pos += 1
    return bytes(out), pos


def count_lines(body: bytes) -> int:
    """RFC 3501 §7.4.2 body-fld-lines: lines of the body; a last unterminated line counts."""
    lines = body.count(b"\n")
    if body and not body.endswith(b"\n"):
        lines += 1
    return lines
