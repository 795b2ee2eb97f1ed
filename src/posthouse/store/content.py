"""Message content as the store keeps it: CRLF line ends, and header fields found in a
cached header section without parsing the whole message."""

from __future__ import annotations

import re

__all__ = ["header_contains", "plain_header", "to_crlf"]

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


def to_crlf(content: bytes) -> bytes:
    """Every line end as CRLF, as the store keeps messages (chapter 12.5.5)."""
    crlf = content.count(b"\r\n")
    if content.count(b"\n") == crlf and content.count(b"\r") == crlf:
        return content
    return _LINE_ENDS.sub(b"\r\n", content)


def plain_header(header: bytes) -> bool:
    """Whether the header section's decoded text is its octets: ASCII, no NUL, no RFC 2047
    encoded word, CRLF line ends only.  Only then does `header_contains` find exactly
    what a search of the decoded header finds (RFC 3501 §6.4.4)."""
    if not header.isascii() or b"=?" in header or b"\x00" in header:
        return False
    crlf = header.count(b"\r\n")
    return header.count(b"\r") == crlf and header.count(b"\n") == crlf


def header_contains(header: bytes, field: str, lowered_needle: bytes) -> bool:
    """Whether a header section has ``field`` whose unfolded value contains the (lower-case)
    needle, ASCII case-insensitively (RFC 3501 §6.4.4 HEADER; RFC 5322 §2.2.3 unfolding)."""
    name = field.encode("ascii", "replace").lower() + b":"
    value: bytes | None = None
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and value is not None:
            value += line
            continue
        if value is not None and lowered_needle in value.lower():
            return True
        value = line[len(name) :] if line[: len(name)].lower() == name else None
    return value is not None and lowered_needle in value.lower()
