"""Rewriting the addresses inside a message's address header fields, and nothing else.

This module owns the RFC 5322 §3.4 syntax of address lists (``From:``, ``Sender:``,
``Reply-To:``, ``To:``, ``Cc:``, ``Bcc:`` and their ``Resent-`` forms): it finds the
addr-spec of each mailbox -- in a ``name-addr`` (``Joe <joe>``), bare (``joe``), inside a
group (``team: a, b;``) -- and hands it to a caller's function.  Only an addr-spec that the
function changes is replaced; display names (quoted strings, RFC 2047 encoded words),
comments, groups, folding and every other byte of the header section stay as they were.

Native gateway addresses that are not RFC 5322 syntax are recognised too, so they can be
rewritten into their pseudodomains: ``VAXA::SMITH`` (DECnet, whose ``::`` is not a group
name), ``SMITH@ns:.site.node`` (DECnet/OSI) and ``host!user`` (UUCP, an ordinary atom).

The module is pure: bytes in, bytes out, no I/O; :class:`HeaderSectionFilter` applies a
rewrite to a message that arrives in pieces (an SMTP DATA stream).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "MAX_HEADER_SECTION",
    "AddressRewrite",
    "HeaderSectionFilter",
    "addr_specs",
    "addresses_in",
    "rewrite_address_list",
    "rewrite_header_section",
]

AddressRewrite = Callable[[str], str]

#: A header section longer than this is passed on unchanged (a limit on buffered input).
MAX_HEADER_SECTION = 256 * 1024

_SPECIALS = '()<>[]:;@\\,."'


@dataclass(frozen=True)
class _Token:
    kind: str  # "atom", "quoted", "comment", "literal", "space", or the special character
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    """RFC 5322 §3.2 lexical tokens of a field body (folding white space is "space")."""
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            j = i
            while j < n and text[j] in " \t\r\n":
                j += 1
            out.append(_Token("space", i, j))
            i = j
        elif ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(_Token("quoted", i, min(j + 1, n)))
            i = min(j + 1, n)
        elif ch == "(":
            depth, j = 1, i + 1
            while j < n and depth:
                if text[j] == "\\":
                    j += 1
                elif text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                j += 1
            out.append(_Token("comment", i, min(j, n)))
            i = min(j, n)
        elif ch == "[":
            j = text.find("]", i)
            j = n if j < 0 else j + 1
            out.append(_Token("literal", i, j))
            i = j
        elif ch in _SPECIALS:
            out.append(_Token(ch, i, i + 1))
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SPECIALS and text[j] not in " \t\r\n":
                j += 1
            out.append(_Token("atom", i, j))
            i = j
    return out


def _significant(tokens: list[_Token]) -> list[_Token]:
    return [t for t in tokens if t.kind not in ("space", "comment")]


def _elements(tokens: list[_Token]) -> list[list[_Token]]:
    """The mailboxes of an address list, each as its tokens (group names and ';' dropped)."""
    elements: list[list[_Token]] = []
    current: list[_Token] = []
    angle = 0
    in_group = False
    for index, token in enumerate(tokens):
        kind = token.kind
        if kind == "<":
            angle += 1
        elif kind == ">":
            angle = max(0, angle - 1)
        if angle == 0 and kind == ",":
            elements.append(current)
            current = []
            continue
        if angle == 0 and kind == ":" and not in_group and _starts_group(tokens, index, current):
            current = []  # the group's display name
            in_group = True
            continue
        if angle == 0 and kind == ";" and in_group:
            elements.append(current)
            current = []
            in_group = False
            continue
        current.append(token)
    elements.append(current)
    return [e for e in elements if _significant(e)]


def _starts_group(tokens: list[_Token], index: int, before: list[_Token]) -> bool:
    """A ':' that opens a group -- not one of DECnet's ``::`` nor in a DECnet/OSI name."""
    neighbours = (tokens[index - 1] if index else None, tokens[index + 1 : index + 2])
    if neighbours[0] is not None and neighbours[0].kind == ":":
        return False
    if neighbours[1] and neighbours[1][0].kind == ":":
        return False
    return not any(t.kind in ("@", "<") for t in before)


def _addr_spec_span(text: str, element: list[_Token]) -> tuple[int, int] | None:
    """Where the addr-spec of one mailbox is in ``text`` (first to last token), if it has one."""
    significant = _significant(element)
    opening = next((i for i, t in enumerate(significant) if t.kind == "<"), None)
    if opening is not None:
        inner: list[_Token] = []
        for token in significant[opening + 1 :]:
            if token.kind == ">":
                break
            inner.append(token)
        if inner and inner[0].kind == "@":  # RFC 5322 §4.4 obs-route "@a,@b:" before it
            colon = max((i for i, t in enumerate(inner) if t.kind == ":"), default=-1)
            inner = inner[colon + 1 :]
        if not inner:
            return None
        return inner[0].start, inner[-1].end
    # A bare addr-spec: words joined by '.', '@', ':' only; "Joe Smith" is no address.
    words = ("atom", "quoted", "literal")
    for first, second in itertools.pairwise(significant):
        if first.kind in words and second.kind in words:
            return None
    if any(t.kind in ("<", ">", ";", "(") for t in significant):
        return None
    return significant[0].start, significant[-1].end


def _spec_text(text: str, start: int, end: int) -> str:
    """The addr-spec between ``start`` and ``end`` without its folding white space and
    comments (RFC 5322 §3.4.1 allows CFWS around the dots and the '@')."""
    spec = text[start:end]
    return "".join(
        spec[t.start : t.end] for t in _tokens(spec) if t.kind not in ("space", "comment")
    )


def addr_specs(value: str) -> list[str]:
    """The addr-specs of an address-list field body, in order.

    >>> addr_specs('Joe <joe@a.example>, team: b@c, "D, E" <d>;, VAXA::SMITH')
    ['joe@a.example', 'b@c', 'd', 'VAXA::SMITH']
    """
    found = []
    for element in _elements(_tokens(value)):
        span = _addr_spec_span(value, element)
        if span is not None:
            found.append(_spec_text(value, *span))
    return found


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"  # RFC 5322 §3.2.3
_PLAIN_SPEC = rf"{_ATEXT}+(?:\.{_ATEXT}+)*(?:@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)?"
# The commonest field body, one mailbox in plain words (``<a@b>``, ``Joe Smith <a@b>``, ``a@b``):
# its addr-spec found without the tokenizer, exactly where the tokenizer finds it.
_ONE_PLAIN_MAILBOX = re.compile(
    rf"[ \t\r\n]*(?:(?:{_ATEXT}+[ \t]+)*<(?P<angle>{_PLAIN_SPEC})>|(?P<bare>{_PLAIN_SPEC}))"
    r"[ \t\r\n]*"
)


def rewrite_address_list(value: str, rewrite: AddressRewrite) -> str:
    """``value`` with each addr-spec replaced by ``rewrite(addr_spec)`` where that differs.

    >>> rewrite_address_list(' "Joe (x)" <joe> (home)', lambda a: a + "@h.example")
    ' "Joe (x)" <joe@h.example> (home)'
    """
    plain = _ONE_PLAIN_MAILBOX.fullmatch(value)
    if plain is not None:
        where = "angle" if plain.group("angle") is not None else "bare"
        old = plain.group(where)
        new = rewrite(old)
        return (
            value if new == old else value[: plain.start(where)] + new + value[plain.end(where) :]
        )
    return _rewrite_tokens(value, rewrite)


def _rewrite_tokens(value: str, rewrite: AddressRewrite) -> str:
    """:func:`rewrite_address_list` by the tokenizer, for any address list."""
    tokens = _tokens(value)
    replacements: list[tuple[int, int, str]] = []
    for element in _elements(tokens):
        span = _addr_spec_span(value, element)
        if span is None:
            continue
        old = _spec_text(value, *span)
        new = rewrite(old)
        if new != old:
            replacements.append((span[0], span[1], new))
    for start, end, new in reversed(replacements):
        value = value[:start] + new + value[end:]
    return value


_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")


def rewrite_header_section(header: bytes, rewrites: Mapping[str, AddressRewrite]) -> bytes:
    """A header section with the address fields named in ``rewrites`` (lower-case field
    names) rewritten; every other byte, line ends and folding included, is kept.

    Non-UTF-8 bytes pass through unchanged (surrogate escapes).
    """
    lines = header.split(b"\n")
    out: list[bytes] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        match = _FIELD_NAME.match(line)
        if match is None or match.group(1).decode("ascii").lower() not in rewrites:
            out.append(line)
            continue
        body = [line[match.end() :]]
        while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
            body.append(lines[index])
            index += 1
        rewrite = rewrites[match.group(1).decode("ascii").lower()]
        text = b"\n".join(body).decode("utf-8", "surrogateescape")
        new = rewrite_address_list(text, rewrite).encode("utf-8", "surrogateescape")
        out.append(line[: match.end()] + new)
    return b"\n".join(out)


def addresses_in(header: bytes, names: tuple[str, ...]) -> list[str]:
    """The addr-specs of the fields ``names`` (lower-case) of a header section, in order
    (``sendmail -t``'s recipients: native gateway forms included, group names left out)."""
    found: list[str] = []

    def collect(address: str) -> str:
        found.append(address)
        return address

    rewrite_header_section(header, dict.fromkeys(names, collect))
    return found


class HeaderSectionFilter:
    """Applies :func:`rewrite_header_section` to a message that arrives in pieces.

    ``feed`` returns what may be written on: nothing until the header section is complete
    (its empty line seen), then the rewritten section and everything after it as it comes.
    A header section larger than :data:`MAX_HEADER_SECTION` is passed on unchanged.
    ``finish`` returns whatever is still held (a message that is all header).
    """

    def __init__(self, rewrites: Mapping[str, AddressRewrite]) -> None:
        self._rewrites = rewrites
        self._held = bytearray()
        self._done = False

    def feed(self, data: bytes) -> bytes:
        if self._done:
            return data
        self._held += data
        end = _section_end(self._held)
        if end is None:
            if len(self._held) <= MAX_HEADER_SECTION:
                return b""
            return self._release(len(self._held), rewrite=False)
        return self._release(end, rewrite=True)

    def finish(self) -> bytes:
        if self._done:
            return b""
        return self._release(len(self._held), rewrite=True)

    def _release(self, end: int, *, rewrite: bool) -> bytes:
        self._done = True
        held, self._held = bytes(self._held), bytearray()
        head, rest = held[:end], held[end:]
        if rewrite:
            head = rewrite_header_section(head, self._rewrites)
        return head + rest


def _section_end(data: bytearray) -> int | None:
    """The offset of the empty line that ends the header section (RFC 5322 §2.1), if seen."""
    if data.startswith(b"\r\n") or data.startswith(b"\n"):
        return 0
    found = [p for p in (data.find(b"\n\r\n"), data.find(b"\n\n")) if p >= 0]
    return min(found) + 1 if found else None
