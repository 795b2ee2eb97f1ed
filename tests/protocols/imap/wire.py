"""Test helper: an independent reader of IMAP response values, to check what we write."""

from __future__ import annotations

import re

_NUMBER = re.compile(rb"[0-9]+")
_ATOM = re.compile(rb"[^ ()\"{}\r\n\[\]]+(\[[^\]]*\](<[0-9]+>)?)?")
_LITERAL = re.compile(rb"(~?)\{([0-9]+)\}\r\n")


class WireError(ValueError):
    pass


def read_value(data: bytes, pos: int = 0) -> tuple[object, int]:
    """One value at ``pos``: None (NIL), int, bytes (quoted or literal), str (an atom),
    or a list; returns it and the position after it."""
    if data.startswith(b"(", pos):
        items: list[object] = []
        pos += 1
        while not data.startswith(b")", pos):
            if items:
                if not data.startswith(b" ", pos) and not data.startswith(b"(", pos):
                    raise WireError(f"expected SP at {pos}: {data[pos : pos + 20]!r}")
                pos += data.startswith(b" ", pos)
            item, pos = read_value(data, pos)
            items.append(item)
        return items, pos + 1
    if data.startswith(b'"', pos):
        out = bytearray()
        pos += 1
        while True:
            if pos >= len(data):
                raise WireError("unterminated quoted string")
            octet = data[pos]
            if octet in (0x0D, 0x0A):
                raise WireError("CR or LF in a quoted string")
            if octet == 0x5C:
                if data[pos + 1] not in (0x22, 0x5C):
                    raise WireError("bad escape")
                out.append(data[pos + 1])
                pos += 2
                continue
            if octet == 0x22:
                return bytes(out), pos + 1
            out.append(octet)
            pos += 1
    literal = _LITERAL.match(data, pos)
    if literal:
        size = int(literal.group(2))
        start = literal.end()
        if start + size > len(data):
            raise WireError("short literal")
        body = data[start : start + size]
        if not literal.group(1) and b"\x00" in body:
            raise WireError("NUL in a literal")
        return body, start + size
    number = _NUMBER.match(data, pos)
    if number and not _ATOM.match(data, pos).group(0)[number.end() - pos :]:  # type: ignore[union-attr]
        return int(number.group(0)), number.end()
    if data.startswith(b"NIL", pos) and not _ATOM.match(data, pos + 3):
        return None, pos + 3
    atom = _ATOM.match(data, pos)
    if atom is None:
        raise WireError(f"no value at {pos}: {data[pos : pos + 20]!r}")
    return atom.group(0).decode("utf-8"), atom.end()


def read_whole(data: bytes) -> object:
    value, end = read_value(data)
    if end != len(data):
        raise WireError(f"trailing octets after the value: {data[end : end + 20]!r}")
    return value
