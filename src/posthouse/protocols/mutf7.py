"""Modified UTF-7, the IMAP encoding of mailbox names (RFC 3501 §5.1.3).

Printable US-ASCII other than ``&`` stands for itself; ``&`` is ``&-``; any other run of
characters is ``&`` + modified base64 (``,`` instead of ``/``, no padding) of its UTF-16BE
form + ``-``.  :func:`decode` is strict: it refuses what no conforming encoder produces (a
shifted run of printable ASCII, ``&`` runs that could be shorter, bad padding bits, lone
surrogates, raw 8-bit or control characters), so every name has exactly one wire form.

It lives in ``protocols/`` (which imports nothing else of posthouse) so the IMAP engine can use
it; the store keeps names in Unicode and does not need it.
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["MUTF7Error", "decode", "encode"]


class MUTF7Error(ValueError):
    """Not valid modified UTF-7."""


def _is_direct(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def encode(name: str) -> str:
    """The modified UTF-7 form of ``name``."""
    out: list[str] = []
    shifted: list[str] = []

    def flush() -> None:
        if shifted:
            raw = "".join(shifted).encode("utf-16-be", "surrogatepass")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            shifted.clear()

    for ch in name:
        if _is_direct(ch):
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            shifted.append(ch)
    flush()
    return "".join(out)


def decode(wire: str) -> str:
    """The Unicode name that ``wire`` (modified UTF-7) encodes; :class:`MUTF7Error` if invalid."""
    out: list[str] = []
    i = 0
    while i < len(wire):
        ch = wire[i]
        if not _is_direct(ch):
            raise MUTF7Error(f"character {ch!r} must be encoded in modified UTF-7")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = wire.find("-", i + 1)
        if end < 0:
            raise MUTF7Error("'&' without the closing '-'")
        chunk = wire[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        out.append(_decode_chunk(chunk))
    result = "".join(out)
    if encode(result) != wire:  # the one canonical form (e.g. no "&AGE-" for "a")
        raise MUTF7Error(f"{wire!r} is not the canonical modified UTF-7 form")
    return result


def _decode_chunk(chunk: str) -> str:
    if "/" in chunk or "=" in chunk:
        raise MUTF7Error("modified base64 uses ',' and no padding")
    b64 = chunk.replace(",", "/")
    padded = b64 + "=" * (-len(b64) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise MUTF7Error(f"bad modified base64 {chunk!r}") from None
    if len(raw) % 2:
        raise MUTF7Error("modified base64 run is not whole UTF-16 units")
    try:
        return raw.decode("utf-16-be")
    except UnicodeDecodeError:
        raise MUTF7Error("modified base64 run is not valid UTF-16") from None
