"""Decoded text of a message for SEARCH (RFC 3501 §6.4.4 matches decoded text).

Header values are unfolded and their RFC 2047 encoded words decoded; raw 8-bit header
text is read as UTF-8 (RFC 6532) or, failing that, Latin-1.  Body text is every text
part's content with its transfer encoding (base64, quoted-printable) and charset
undone, encapsulated messages' headers and texts included.  An unknown charset is read
as UTF-8 with replacement rather than skipped, so a search still finds the ASCII in it.
"""

from __future__ import annotations

import codecs
from email.errors import HeaderParseError
from email.header import decode_header
from typing import Final

from posthouse.protocols.imap.errors import CommandError
from posthouse.protocols.imap.message import Part
from posthouse.protocols.imap.sections import decode_transfer_encoding

MAX_TEXT: Final = 16 * 1024 * 1024  # decoded characters searched per message


def _charset_decode(raw: bytes, charset: str | None) -> str:
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            charset = None
    if charset:
        return raw.decode(charset, "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def decode_words(raw: bytes) -> str:
    """An unfolded header value with RFC 2047 encoded words decoded."""
    text = _charset_decode(raw, None)
    if "=?" not in text:
        return text
    try:
        pieces = decode_header(text)
    except (ValueError, LookupError, AssertionError, HeaderParseError):
        return text  # a malformed encoded word is searched as it is written
    return "".join(
        piece if isinstance(piece, str) else _charset_decode(piece, charset)
        for piece, charset in pieces
    )


def header_values(part: Part, name: str) -> list[str]:
    """Every value of field ``name`` in ``part``'s header, decoded."""
    return [decode_words(value) for value in part.values(name)]


def header_text(part: Part) -> str:
    """The whole header, one decoded "Name: value" per line."""
    return "\n".join(f"{name}: {decode_words(value)}" for name, value in part.fields)


def body_text(data: bytes, message: Part) -> str:
    """The decoded text of every text part of ``message`` (and of what it encapsulates)."""
    out: list[str] = []
    size = 0
    stack = [message]
    while stack and size < MAX_TEXT:
        part = stack.pop()
        if part.is_multipart:
            stack.extend(reversed(part.children))
        elif part.message is not None:
            out.append(header_text(part.message))
            stack.append(part.message)
        elif part.maintype == "TEXT":
            try:
                raw = decode_transfer_encoding(part, data[part.body_start : part.end])
            except CommandError:
                raw = data[part.body_start : part.end]
            charset = part.param(b"charset")
            text = _charset_decode(raw, charset.decode("ascii", "replace") if charset else None)
            out.append(text)
            size += len(text)
    return "\n".join(out)[:MAX_TEXT]
