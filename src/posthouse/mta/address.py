"""Pure helpers for envelope addresses: splitting, case rules and unquoting.

This module owns the few string rules every other part of the MTA relies on:
how an address is split into local part and domain, and how local parts are
normalised for case-insensitive lookups (aliases and user names).  It does no
I/O and knows nothing about aliases or delivery.
"""

from __future__ import annotations

__all__ = [
    "is_rfc5321_local",
    "join_address",
    "normalize_local",
    "quote_local",
    "split_address",
    "strip_angle_brackets",
    "unquote_local",
]


def split_address(addr: str) -> tuple[str, str]:
    """Split *addr* at its last ``@`` into ``(local, domain)``.

    The local part is returned as given; the domain is lower-cased and loses a
    trailing dot.  An address without ``@`` has an empty domain.

    >>> split_address("User@Example.COM")
    ('User', 'example.com')
    >>> split_address("postmaster")
    ('postmaster', '')
    """
    local, at, domain = addr.rpartition("@")
    if not at:
        return addr, ""
    return local, domain.rstrip(".").lower()


def normalize_local(local: str) -> str:
    """Return the lookup form of a local part: aliases and user names are case-insensitive."""
    return local.lower()


DETAIL_DELIMITER = "+"  # user+detail: the detail names a folder of user's mailbox (12.5.7)


def split_detail(local: str) -> tuple[str, str | None]:
    """``("user", "detail")`` for ``user+detail`` (the first ``+``), else ``(local, None)``;
    the detail keeps its case (IMAP folder names are case-sensitive)."""
    user, plus, detail = local.partition(DETAIL_DELIMITER)
    if not plus or not user or not detail:
        return local, None
    return user, detail


def strip_angle_brackets(addr: str) -> str:
    """Remove one pair of surrounding ``<...>`` (as found in SMTP paths), plus whitespace."""
    addr = addr.strip()
    if len(addr) >= 2 and addr.startswith("<") and addr.endswith(">"):
        return addr[1:-1].strip()
    return addr


def unquote_local(local: str) -> str:
    """Undo RFC 5321 quoting of a whole local part: ``"a b"`` -> ``a b``, ``\\x`` -> ``x``.

    A local part that is not entirely one quoted string is returned unchanged.
    """
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        out: list[str] = []
        chars = iter(local[1:-1])
        for ch in chars:
            if ch == "\\":
                out.append(next(chars, ""))
            else:
                out.append(ch)
        return "".join(out)
    return local


# RFC 5321 §4.1.2 atext (RFC 6531 §3.3 adds every non-ASCII character).
_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)


def _is_dot_string(local: str) -> bool:
    return all(
        atom and all(c in _ATEXT or ord(c) > 0x7F for c in atom) for atom in local.split(".")
    )


def quote_local(local: str) -> str:
    """The RFC 5321 form of the (unquoted) local part *local*: as is when it is a
    Dot-string, else a Quoted-string with ``\\`` before ``"`` and ``\\`` (§4.1.2).

    The inverse of :func:`unquote_local` for every string: ``unquote_local(quote_local(x))
    == x``.  A local part that starts with ``|``, ``/`` or ``\\`` is always quoted, so no
    reader of the result can take it for a program, a file or a mailbox escape.

    >>> quote_local("alice"), quote_local("a b"), quote_local('|cmd "x"')
    ('alice', '"a b"', '"|cmd \\\\"x\\\\""')
    """
    if local and _is_dot_string(local) and local[0] not in "|/\\":
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_rfc5321_local(local: str) -> bool:
    """Whether *local* is a local part as RFC 5321 §4.1.2 writes it: a Dot-string, or a
    Quoted-string of printable characters (``\\`` pairs included; non-ASCII allowed by
    RFC 6531).

    >>> is_rfc5321_local('"a b"'), is_rfc5321_local("a b"), is_rfc5321_local('"a"b"')
    (True, False, False)
    """
    if _is_dot_string(local):
        return True
    if len(local) < 2 or local[0] != '"' or local[-1] != '"':
        return False
    chars = iter(local[1:-1])
    for ch in chars:
        if ch == "\\":
            ch = next(chars, "")
            if not ch:
                return False
        elif ch == '"':
            return False
        if ord(ch) < 32 or ord(ch) == 127:
            return False
    return True


def join_address(local: str, domain: str) -> str:
    """The RFC 5321 mailbox for an unquoted *local* part at *domain*."""
    return f"{quote_local(local)}@{domain}"
