"""ENVELOPE (RFC 3501 §7.4.2): header fields and RFC 5322 address lists as IMAP values.

Strings are the raw, unfolded field values: encoded words (RFC 2047) stay as they are,
the client decodes them.  Address lists keep groups (RFC 5322 §3.4) in RFC 3501's form:
``(NIL NIL "group" NIL)`` opens, ``(NIL NIL NIL NIL)`` closes.  Absent fields are NIL;
Sender and Reply-To default to From.  `envelope_bytes` is what the store caches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from posthouse.protocols.imap.message import Part
from posthouse.protocols.imap.response import encode_value

_SPECIALS: Final = frozenset(b'()<>@,;:\\".[] \t\r\n')


@dataclass(frozen=True)
class Address:
    """One RFC 3501 §9 address: (name adl mailbox host); a group marker has host None."""

    name: bytes | None
    route: bytes | None
    mailbox: bytes | None
    host: bytes | None

    def value(self) -> list[object]:
        return [self.name, self.route, self.mailbox, self.host]


def group_start(name: bytes) -> Address:
    return Address(None, None, name, None)


GROUP_END: Final = Address(None, None, None, None)


def envelope_value(message: Part) -> list[object]:
    """The ENVELOPE of ``message`` as a response value."""
    sender_default = _addresses(message, "From")
    return [
        message.value("Date"),
        message.value("Subject"),
        sender_default,
        _addresses(message, "Sender") or sender_default,
        _addresses(message, "Reply-To") or sender_default,
        _addresses(message, "To"),
        _addresses(message, "Cc"),
        _addresses(message, "Bcc"),
        message.value("In-Reply-To"),
        message.value("Message-ID"),
    ]


def envelope_bytes(message: Part) -> bytes:
    """The ENVELOPE serialised, ready to cache and send (8-bit strings become literals)."""
    return encode_value(envelope_value(message))


def _addresses(message: Part, name: str) -> list[object] | None:
    raw = message.value(name)
    if raw is None:
        return None
    found = parse_address_list(raw)
    return [address.value() for address in found] or None


# ------------------------------------------------------------------ RFC 5322 §3.4


@dataclass(frozen=True)
class _Token:
    kind: str  # "atom", "quoted", "special", "domain-literal"
    text: bytes


def _tokens(raw: bytes) -> list[_Token]:
    """Atoms (dots kept inside), quoted strings, domain literals and specials; comments
    and white space are dropped."""
    tokens: list[_Token] = []
    pos, length = 0, len(raw)
    while pos < length:
        octet = raw[pos]
        if octet in b" \t\r\n":
            pos += 1
        elif octet == 0x28:  # comment, nested
            depth = 0
            while pos < length:
                if raw[pos] == 0x5C:
                    pos += 1
                elif raw[pos] == 0x28:
                    depth += 1
                elif raw[pos] == 0x29:
                    depth -= 1
                    if depth == 0:
                        break
                pos += 1
            pos += 1
        elif octet == 0x22:
            out = bytearray()
            pos += 1
            while pos < length and raw[pos] != 0x22:
                if raw[pos] == 0x5C and pos + 1 < length:
                    pos += 1
                out.append(raw[pos])
                pos += 1
            pos += 1
            tokens.append(_Token("quoted", bytes(out)))
        elif octet == 0x5B:
            close = raw.find(b"]", pos)
            close = length - 1 if close < 0 else close
            tokens.append(_Token("domain-literal", raw[pos : close + 1]))
            pos = close + 1
        elif octet in b"<>@,;:":
            tokens.append(_Token("special", bytes([octet])))
            pos += 1
        else:
            start = pos
            while pos < length and (raw[pos] not in _SPECIALS or raw[pos] == 0x2E):
                pos += 1
            if pos == start:  # a stray special like ")" or "]"
                pos += 1
                continue
            tokens.append(_Token("atom", raw[start:pos]))
    return tokens


def parse_address_list(raw: bytes) -> list[Address]:
    """RFC 5322 §3.4 address-list, leniently (obsolete forms, missing parts)."""
    tokens = _tokens(raw)
    result: list[Address] = []
    pos = 0
    in_group = False
    phrase: list[_Token] = []
    while pos < len(tokens):
        token = tokens[pos]
        if token.kind == "special" and token.text == b":" and not in_group:
            result.append(group_start(_phrase(phrase) or b""))
            phrase, in_group = [], True
            pos += 1
        elif token.kind == "special" and token.text == b";" and in_group:
            _flush_addr_spec(phrase, result)
            result.append(GROUP_END)
            phrase, in_group = [], False
            pos += 1
        elif token.kind == "special" and token.text == b",":
            _flush_addr_spec(phrase, result)
            phrase = []
            pos += 1
        elif token.kind == "special" and token.text == b"<":
            close = pos + 1
            while close < len(tokens) and not (
                tokens[close].kind == "special" and tokens[close].text == b">"
            ):
                close += 1
            result.append(_angle_addr(_phrase(phrase), tokens[pos + 1 : close]))
            phrase = []
            pos = close + 1
        else:
            phrase.append(token)
            pos += 1
    _flush_addr_spec(phrase, result)
    if in_group:
        result.append(GROUP_END)
    return result


def _phrase(tokens: list[_Token]) -> bytes | None:
    words = [token.text for token in tokens if token.kind != "special" or token.text == b"@"]
    return b" ".join(words) if words else None


def _flush_addr_spec(tokens: list[_Token], result: list[Address]) -> None:
    """A bare addr-spec (no angle brackets) collected in ``tokens``."""
    if tokens:
        mailbox, host = _addr_spec(tokens)
        if mailbox or host:
            result.append(Address(None, None, mailbox, host))


def _addr_spec(tokens: list[_Token]) -> tuple[bytes, bytes]:
    at = max(
        (i for i, t in enumerate(tokens) if t.kind == "special" and t.text == b"@"), default=-1
    )
    local_tokens = tokens if at < 0 else tokens[:at]
    local = b"".join(
        b'"' + t.text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        if t.kind == "quoted"
        else t.text
        for t in local_tokens
        if t.kind != "special"
    )
    host = b"" if at < 0 else b"".join(t.text for t in tokens[at + 1 :] if t.kind != "special")
    return local, host


def _angle_addr(name: bytes | None, inner: list[_Token]) -> Address:
    """``[name] <[route:]addr-spec>``; ``<>`` (RFC 5321 null path) has empty parts."""
    route: bytes | None = None
    colon = next((i for i, t in enumerate(inner) if t.kind == "special" and t.text == b":"), -1)
    if colon >= 0:
        route = b"".join(
            t.text if t.kind != "special" or t.text in (b"@", b",") else b"" for t in inner[:colon]
        )
        inner = inner[colon + 1 :]
    mailbox, host = _addr_spec(inner)
    return Address(name, route or None, mailbox, host)
