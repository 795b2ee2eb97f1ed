"""Modified UTF-7 mailbox-name encoding (RFC 3501 §5.1.3).

Printable US-ASCII other than "&" stands for itself, "&" is written "&-", and every
other run of characters is UTF-16BE in modified base64 (``,`` for ``/``, no padding)
between "&" and "-".  Decoding is strict: it refuses what no conforming encoder writes
(a needless shift, an unterminated shift, bad padding bits, a lone surrogate), so one
name has exactly one encoded form.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from posthouse.protocols.imap.errors import CommandError

_B64_CHARS: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def _direct(char: str) -> bool:
    return 0x20 <= ord(char) <= 0x7E


def encode(name: str) -> str:
    """The modified UTF-7 form of a Unicode mailbox name."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "surrogatepass")
            text = base64.b64encode(raw).rstrip(b"=").replace(b"/", b",").decode("ascii")
            out.append(f"&{text}-")
            pending.clear()

    for char in name:
        if _direct(char):
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def _error(name: str, why: str) -> CommandError:
    return CommandError(f"Mailbox name {name!r} is not valid modified UTF-7: {why}")


def decode(name: str) -> str:
    """The Unicode mailbox name a modified UTF-7 name stands for; `CommandError` (BAD) if
    ``name`` is not exactly what `encode` would write."""
    out: list[str] = []
    pos = 0
    while pos < len(name):
        char = name[pos]
        if not _direct(char):
            raise _error(name, "8-bit or control character")
        if char != "&":
            out.append(char)
            pos += 1
            continue
        end = name.find("-", pos + 1)
        if end < 0:
            raise _error(name, "unterminated '&' shift")
        chunk = name[pos + 1 : end]
        pos = end + 1
        if not chunk:
            out.append("&")
            continue
        out.append(_decode_chunk(name, chunk))
        if pos < len(name) and name[pos] == "&" and name[pos + 1 : pos + 2] != "-":
            raise _error(name, "two adjacent shifts")
    return "".join(out)


def _decode_chunk(name: str, chunk: str) -> str:
    raw_chunk = chunk.encode("ascii")
    if not set(raw_chunk) <= _B64_CHARS or len(chunk) % 4 == 1:
        raise _error(name, "bad base64 in a shift")
    padded = raw_chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _error(name, "bad base64 in a shift") from exc
    if len(raw) % 2 or base64.b64encode(raw).rstrip(b"=") != padded.rstrip(b"="):
        raise _error(name, "a shift's bits do not end on a character")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise _error(name, "a lone surrogate in a shift") from exc
    if any(_direct(char) for char in text):
        raise _error(name, "printable ASCII inside a shift")
    return text


def to_wire(name: str, *, utf8: bool) -> str:
    """A mailbox name as a response carries it: UTF-8 once the client enabled
    UTF8=ACCEPT (RFC 6855 §3), modified UTF-7 otherwise."""
    return name if utf8 else encode(name)


def from_wire(name: str, *, utf8: bool) -> str:
    """The Unicode name a client's mailbox argument stands for (see `to_wire`)."""
    return name if utf8 else decode(name)
