"""BODYSTRUCTURE and BODY (RFC 3501 §7.4.2) from a parsed message (message.py).

BODYSTRUCTURE carries the extension data (MD5, disposition, language, location; for a
multipart its parameters, disposition, language, location); BODY is the same without
it.  Type, subtype, encoding and parameter names are upper-cased as Cyrus sends them;
parameter values and other fields are the raw header text.  Sizes and line counts are
of the body octets as stored.  `bodystructure_bytes` / `body_bytes` give what the store
caches.
"""

from __future__ import annotations

from posthouse.protocols.imap.envelope import envelope_value
from posthouse.protocols.imap.message import Part, count_lines, parse_params
from posthouse.protocols.imap.response import Raw, encode_value


def structure_value(data: bytes, part: Part, *, extensions: bool) -> list[object]:
    """The BODYSTRUCTURE (``extensions``) or BODY of ``part`` as a response value."""
    if part.is_multipart:
        # RFC 3501 §9 body-type-mpart = 1*body SP media-subtype: no SP between the parts.
        children = b"".join(
            encode_value(structure_value(data, child, extensions=extensions))
            for child in part.children
        )
        value: list[object] = [Raw(children), part.subtype]
        if extensions:
            value += [
                _params(part) or None,
                _disposition(part),
                _language(part),
                part.value("Content-Location"),
            ]
        return value
    body = data[part.body_start : part.end]
    params = _params(part)
    if part.maintype == "TEXT" and part.param(b"charset") is None:
        params = [b"CHARSET", b"us-ascii", *params]
    encoding = part.value("Content-Transfer-Encoding")
    value = [
        part.maintype,
        part.subtype,
        params or None,
        part.value("Content-ID"),
        part.value("Content-Description"),
        encoding.strip().upper() if encoding and encoding.strip() else b"7BIT",
        len(body),
    ]
    if part.message is not None:
        value += [
            envelope_value(part.message),
            structure_value(data, part.message, extensions=extensions),
            count_lines(body),
        ]
    elif part.maintype == "TEXT":
        value.append(count_lines(body))
    if extensions:
        value += [
            part.value("Content-MD5"),
            _disposition(part),
            _language(part),
            part.value("Content-Location"),
        ]
    return value


def bodystructure_bytes(data: bytes, message: Part) -> bytes:
    """FETCH BODYSTRUCTURE, serialised (RFC 3501 §7.4.2)."""
    return encode_value(structure_value(data, message, extensions=True))


def body_bytes(data: bytes, message: Part) -> bytes:
    """FETCH BODY (the non-extensible form), serialised."""
    return encode_value(structure_value(data, message, extensions=False))


def _params(part: Part) -> list[bytes]:
    flat: list[bytes] = []
    for name, value in part.params:
        flat += [name.upper(), value]
    return flat


def _disposition(part: Part) -> list[object] | None:
    """body-fld-dsp: ("ATTACHMENT" (params)) or NIL."""
    raw = part.value("Content-Disposition")
    if raw is None:
        return None
    kind, _, rest = raw.partition(b";")
    kind = kind.strip()
    if not kind:
        return None
    flat: list[bytes] = []
    for name, value in parse_params(rest):
        flat += [name.upper(), value]
    return [kind.upper(), flat or None]


def _language(part: Part) -> object:
    """body-fld-lang: NIL, one string, or a list of language tags."""
    raw = part.value("Content-Language")
    if raw is None:
        return None
    tags = [tag.strip() for tag in raw.split(b",") if tag.strip()]
    if not tags:
        return None
    return tags[0] if len(tags) == 1 else tags
