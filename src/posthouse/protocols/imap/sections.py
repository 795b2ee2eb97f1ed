"""FETCH sections (RFC 3501 §6.4.5) and BINARY (RFC 3516): slices of the original octets.

`section_bytes` resolves a part path against the parsed structure and cuts HEADER,
HEADER.FIELDS (.NOT), TEXT, MIME or the whole part out of the message as stored;
`binary_bytes` undoes the part's content transfer encoding (base64, quoted-printable;
an unknown encoding is NO [UNKNOWN-CTE], RFC 3516 §4.1); `partial` applies
``<origin.count>``.  A part that does not exist gives None (sent as NIL).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from typing import Final

from posthouse.protocols.imap.errors import CommandError
from posthouse.protocols.imap.fetchatt import FetchItem, Section
from posthouse.protocols.imap.message import Part

_FIELD_NAME: Final = re.compile(rb"([^:\s]+)[ \t]*:")
IDENTITY_ENCODINGS: Final = frozenset({b"", b"7BIT", b"8BIT", b"BINARY"})


def find_part(message: Part, path: Sequence[int]) -> Part | None:
    """The part a section-part path names (RFC 3501 §6.4.5), or None.

    Part 1 of a message that is not multipart is its body; the numbers after a
    message/rfc822 part count the parts of the encapsulated message.
    """
    node = message
    for depth, number in enumerate(path):
        if depth and node.message is not None:
            node = node.message
        if node.is_multipart:
            if number > len(node.children):
                return None
            node = node.children[number - 1]
        elif number != 1:
            return None
    return node


def section_bytes(data: bytes, message: Part, section: Section) -> bytes | None:
    """The octets of ``BODY[section]`` (without partial), None if there is no such part."""
    node = find_part(message, section.part)
    if node is None:
        return None
    if section.text is None:
        if not section.part:
            return data[message.start : message.end]
        return data[node.body_start : node.end]
    if section.text == "MIME":
        return data[node.start : node.body_start]
    target = node if not section.part else node.message
    if target is None:
        return None  # HEADER/TEXT only exist for the message and message/rfc822 parts
    if section.text == "TEXT":
        return data[target.body_start : target.end]
    header = data[target.start : target.body_start]
    if section.text == "HEADER":
        return header
    return header_fields(header, section.fields, exclude=section.text == "HEADER.FIELDS.NOT")


def header_fields(header: bytes, names: Sequence[str], *, exclude: bool) -> bytes:
    """The fields of ``header`` named in ``names`` (or all others), in their order, and
    the blank line that ends a header (RFC 3501 §6.4.5 HEADER.FIELDS)."""
    wanted = {name.upper().encode("ascii", "replace") for name in names}
    out = bytearray()
    keep = False
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] not in (b" ", b"\t"):
            match = _FIELD_NAME.match(line)
            name = match.group(1).upper() if match else b""
            keep = (name in wanted) != exclude and (bool(match) or exclude)
        if keep:
            out += line if line.endswith(b"\n") else line + b"\r\n"
    out += b"\r\n"
    return bytes(out)


_TOP_LEVEL_TEXTS: Final = frozenset({None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"})


def top_level_only(item: FetchItem) -> bool:
    """Whether the item's octets are cut by the message's own header end alone (RFC822,
    RFC822.HEADER, RFC822.TEXT, BODY[], BODY[HEADER...], BODY[TEXT]): `message.outline`
    serves it, no parse of the structure is needed."""
    if item.name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
        return True
    section = item.section
    return (
        item.name == "BODY"
        and section is not None
        and not section.part
        and section.text in _TOP_LEVEL_TEXTS
    )


def item_octets(data: bytes, message: Part, item: FetchItem) -> bytes | None:
    """The content a FETCH item returns, its partial range applied: BODY[section],
    BINARY[part], RFC822, RFC822.HEADER, RFC822.TEXT (RFC 3501 §6.4.5, RFC 3516 §4.2).
    None means the part does not exist (NIL); BINARY may raise NO [UNKNOWN-CTE]."""
    octets: bytes | None
    match item.name:
        case "RFC822":
            octets = data[message.start : message.end]
        case "RFC822.HEADER":
            octets = data[message.start : message.body_start]
        case "RFC822.TEXT":
            octets = data[message.body_start : message.end]
        case "BODY" if item.section is not None:
            octets = section_bytes(data, message, item.section)
        case "BINARY" if item.section is not None:
            octets = binary_bytes(data, message, item.section.part)
        case _:
            raise ValueError(f"{item.name} has no content octets")
    if octets is not None and item.partial is not None:
        octets = partial(octets, *item.partial)
    return octets


def binary_size(data: bytes, message: Part, path: Sequence[int]) -> int | None:
    """BINARY.SIZE[path] (RFC 3516 §4.2): the size of the decoded content."""
    octets = binary_bytes(data, message, path)
    return None if octets is None else len(octets)


def partial(octets: bytes, origin: int, count: int) -> bytes:
    """RFC 3501 §6.4.5 ``<origin.count>``: empty when origin is past the end."""
    return octets[origin : origin + count]


def binary_bytes(data: bytes, message: Part, path: Sequence[int]) -> bytes | None:
    """``BINARY[path]``: the part's content with its transfer encoding undone.

    BINARY[] is the whole message, decoded if it is a single part.  A multipart has no
    single content to decode: NO [UNKNOWN-CTE]'s sibling, a plain NO (RFC 3516 §4.2).
    """
    node = find_part(message, path)
    if node is None:
        return None
    if node.is_multipart:
        if not path:
            return data[message.start : message.end]
        raise CommandError("A multipart has no content of its own to decode", status="NO")
    body = decode_transfer_encoding(node, data[node.body_start : node.end])
    if not path:
        return data[message.start : message.body_start] + body
    return body


def decode_transfer_encoding(part: Part, body: bytes) -> bytes:
    """RFC 2045 §6 content transfer decoding; NO [UNKNOWN-CTE] for an unknown encoding."""
    encoding = (part.value("Content-Transfer-Encoding") or b"").strip().upper()
    if encoding in IDENTITY_ENCODINGS:
        return body
    if encoding == b"BASE64":
        cleaned = bytes(octet for octet in body if octet not in b" \t\r\n")
        try:
            return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))
        except binascii.Error as exc:
            raise CommandError(
                f"The part's base64 content cannot be decoded ({exc})",
                status="NO",
                code="UNKNOWN-CTE",
            ) from exc
    if encoding == b"QUOTED-PRINTABLE":
        return binascii.a2b_qp(body.replace(b"=\r\n", b"=\n"))
    raise CommandError(
        f"Unknown content transfer encoding {encoding.decode('ascii', 'replace')!r}",
        status="NO",
        code="UNKNOWN-CTE",
    )
