"""Parsing of SMTP command lines: verb/argument split, paths, ESMTP parameters.

Grammar references are RFC 5321 §4.1.2 (paths, Mail-parameters) and §4.1.3
(address literals), extended for UTF-8 by RFC 6531 §3.3.  Parsing is
syntax-only: whether a parameter is supported is the engine's business.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

# RFC 5321 §4.5.3.1.1-3: size limits in octets.
MAX_LOCAL_PART: Final = 64
MAX_DOMAIN: Final = 255
MAX_PATH: Final = 256

_VERB = re.compile(r"[A-Za-z]{1,16}")
_SPACES = re.compile(r"[ \t]+")
# Control characters other than HT never belong in a command line.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ATEXT: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_GENERAL_TAG = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]")


class CommandSyntaxError(ValueError):
    """The argument does not have the shape the command requires."""


class AddressSyntaxError(ValueError):
    """The path inside the angle brackets is not a valid mailbox."""


class PathTooLongError(AddressSyntaxError):
    """RFC 5321 §4.5.3.1.3: the path exceeds 256 octets."""


@dataclass(frozen=True)
class Command:
    """A command line split into upper-cased verb and raw argument."""

    verb: str
    arg: str


@dataclass(frozen=True)
class PathArgument:
    """A parsed ``FROM:<path> params`` / ``TO:<path> params`` argument."""

    address: str
    params: dict[str, str | None]


def has_control_chars(text: str) -> bool:
    """True if ``text`` contains a control character other than HT."""
    return _CONTROL.search(text) is not None


def split_command(text: str) -> Command | None:
    """Split a decoded command line; None if the verb is not a plausible verb."""
    parts = _SPACES.split(text.strip(" \t"), maxsplit=1)
    if not _VERB.fullmatch(parts[0]):
        return None
    return Command(parts[0].upper(), parts[1] if len(parts) > 1 else "")


def parse_path_argument(
    arg: str,
    keyword: str,
    *,
    null_allowed: bool,
    postmaster_allowed: bool,
    local_part_allowed: bool = False,
) -> PathArgument:
    """Parse ``FROM:<path> [params]`` (keyword "FROM") or ``TO:<path> [params]``.

    Lenient where harmless: spaces after the colon and a missing pair of
    angle brackets around a simple address are tolerated.
    """
    prefix = keyword + ":"
    if arg[: len(prefix)].upper() != prefix:
        raise CommandSyntaxError(f"expected {prefix}")
    rest = arg[len(prefix) :].lstrip(" \t")
    if rest.startswith("<"):
        close = _closing_bracket(rest)
        if close < 0:
            raise CommandSyntaxError("unterminated path")
        path, tail = rest[: close + 1], rest[close + 1 :]
        if tail and tail[0] not in " \t":
            raise CommandSyntaxError("junk after path")
    else:
        pieces = _SPACES.split(rest, maxsplit=1)
        path = f"<{pieces[0]}>"
        tail = pieces[1] if len(pieces) > 1 else ""
        if path == "<>":
            raise CommandSyntaxError("missing path")
    address = parse_path(
        path,
        null_allowed=null_allowed,
        postmaster_allowed=postmaster_allowed,
        local_part_allowed=local_part_allowed,
    )
    return PathArgument(address, parse_params(tail))


def _closing_bracket(text: str) -> int:
    """Index of the '>' closing the path that starts ``text``; -1 if none."""
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index
    return -1


def parse_path(
    path: str, *, null_allowed: bool, postmaster_allowed: bool, local_part_allowed: bool = False
) -> str:
    """Validate ``<[A-d-l:]mailbox>`` and return the mailbox ('' for ``<>``).

    ``local_part_allowed``: a bare local part (``<user>``) is a path too, returned as it is;
    LMTP recipients only (see :func:`~posthouse.protocols.smtp.commands.check_rcpt`)."""
    # RFC 5321 §4.5.3.1.3: the limit includes the angle brackets.
    if len(path.encode("utf-8")) > MAX_PATH:
        raise PathTooLongError("path too long")
    if not (path.startswith("<") and path.endswith(">")):
        raise AddressSyntaxError("path must be enclosed in <>")
    inner = path[1:-1]
    if not inner:
        if null_allowed:
            return ""
        raise AddressSyntaxError("null path not allowed here")
    if inner.startswith("@"):
        # RFC 5321 §4.1.2 / Appendix C: source routes MUST be accepted and ignored.
        colon = inner.find(":")
        if colon < 0:
            raise AddressSyntaxError("bad source route")
        for hop in inner[:colon].split(","):
            if not hop.startswith("@") or not is_domain(hop[1:]):
                raise AddressSyntaxError("bad source route")
        inner = inner[colon + 1 :]
    # RFC 5321 §4.5.1: <Postmaster> without a domain is a valid recipient.
    if postmaster_allowed and inner.lower() == "postmaster":
        return inner
    if local_part_allowed and "@" not in inner and is_local_part(inner):
        return inner
    if not is_mailbox(inner):
        raise AddressSyntaxError("bad mailbox")
    return inner


def is_local_part(text: str) -> bool:
    """RFC 5321 §4.1.2 Local-part = Dot-string / Quoted-string, within §4.5.3.1.1's limit."""
    if len(text.encode("utf-8")) > MAX_LOCAL_PART:
        return False
    return _is_dot_string(text) or _is_quoted_string(text)


def is_mailbox(text: str) -> bool:
    """RFC 5321 §4.1.2 Mailbox = Local-part "@" ( Domain / address-literal )."""
    at = text.rfind("@")
    if at <= 0:
        return False
    local, domain = text[:at], text[at + 1 :]
    if not is_local_part(local):
        return False
    if domain.startswith("["):
        return is_address_literal(domain)
    return is_domain(domain)


def _is_atext(char: str) -> bool:
    # RFC 6531 §3.3: atext is extended with UTF8-non-ascii.
    return char in _ATEXT or ord(char) > 0x7F


def _is_dot_string(text: str) -> bool:
    atoms = text.split(".")
    return all(atom and all(_is_atext(c) for c in atom) for atom in atoms)


def _is_quoted_string(text: str) -> bool:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return False
    body = text[1:-1]
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            # quoted-pairSMTP = %d92 %d32-126
            index += 1
            if index >= len(body) or not 32 <= ord(body[index]) <= 126:
                return False
        elif char == '"' or (ord(char) < 32 or ord(char) == 127):
            return False
        index += 1
    return True


def is_domain(text: str) -> bool:
    """RFC 5321 §4.1.2 Domain (with RFC 6531 U-labels allowed)."""
    if not text or len(text.encode("utf-8")) > MAX_DOMAIN:
        return False
    for label in text.split("."):
        if label.isascii():
            if len(label) > 63 or not _LDH_LABEL.fullmatch(label):
                return False
        elif (
            not label
            or label[0] == "-"
            or label[-1] == "-"
            or any(not (c.isalnum() or c == "-" or ord(c) > 0x7F) for c in label)
        ):
            return False
    return True


def is_address_literal(text: str) -> bool:
    """RFC 5321 §4.1.3 address-literal: ``[1.2.3.4]``, ``[IPv6:...]``, ``[tag:x]``."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    body = text[1:-1]
    if _IPV4.fullmatch(body):
        return all(int(part) <= 255 for part in body.split("."))
    tag, colon, content = body.partition(":")
    if not colon:
        return False
    if tag.upper() == "IPV6":
        try:
            ipaddress.IPv6Address(content)
        except ValueError:
            return False
        return True
    # General-address-literal: dcontent = %d33-90 / %d94-126
    return (
        bool(_GENERAL_TAG.fullmatch(tag))
        and bool(content)
        and all(33 <= ord(c) <= 126 and c not in "[\\]" for c in content)
    )


def parse_params(text: str) -> dict[str, str | None]:
    """RFC 5321 §4.1.2 Mail-parameters: ``KEY[=value]`` separated by spaces.

    Keys are upper-cased; duplicates are a syntax error.
    """
    params: dict[str, str | None] = {}
    text = text.strip(" \t")
    if not text:
        return params
    for item in _SPACES.split(text):
        key, eq, value = item.partition("=")
        if not _ESMTP_KEYWORD.fullmatch(key):
            raise CommandSyntaxError(f"bad parameter keyword {key!r}")
        # esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 allowed by RFC 6531 §3.3
        if eq and (not value or "=" in value):
            raise CommandSyntaxError(f"bad value for parameter {key}")
        key = key.upper()
        if key in params:
            raise CommandSyntaxError(f"duplicate parameter {key}")
        params[key] = value if eq else None
    return params
