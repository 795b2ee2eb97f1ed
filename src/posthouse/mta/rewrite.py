"""Sender address rewriting: domain-based addresses (masquerading) and gateway pseudodomains.

Domain-based addresses (chapter 12, section 12.1.2)
===================================================

The chapter's rule: "Mail sent over the Internet is usually addressed in the following
format: username@hostname.domain. For example: joe@host1.nyc.big.com. Using domain-based
addresses, this address appears as follows: joe@nyc.big.com.  Mail is sent to the local
domain nyc.big.com instead of to the specific host within that domain host1.nyc.big.com;
the return address is also @nyc.big.com.  Then, the mail servers within the local domain
decide how to deliver the mail to the user's account."  And from the worksheet (12.2.3.1):
"Top domain ... the highest level domain in your organization ... if the server domain
name is nyc.big.com, the top domain is big.com."

``masquerade_sender`` turns that into the following exact rule.  The *mail domains* are
the top domain plus every ``local_domains`` entry that is equal to or inside the top
domain.  For an address ``local@d`` (``d`` compared case-insensitively, trailing dot
ignored):

1. unchanged when masquerading is disabled, for the null sender ``""``, for an address
   without ``@`` (a bare local user) and for a domain literal ``[...]``;
2. unchanged when ``d`` is not strictly inside the top domain ("addresses outside
   top_domain untouched"; the top domain itself is already domain-based);
3. unchanged when ``d`` equals, or is inside, one of ``settings.exceptions`` (hosts or
   domains that are never rewritten, e.g. ``mail.big.com``);
4. unchanged when the local part (unquoted, case-insensitively) is in
   ``settings.users_exempt`` -- by default ``root``, whose mail should keep naming the
   machine it came from (the sendmail ``EXPOSED_USER`` tradition; a posthouse decision,
   the chapter does not say);
5. unchanged when ``d`` lies in a gateway pseudodomain (``mapper`` given): the node label
   of ``user@node.DNET.big.com`` is the address, not a host name;
6. unchanged when ``d`` is itself a mail domain (``joe@nyc.big.com``);
7. otherwise ``d`` names a host, and is replaced by the longest mail domain that encloses
   it: with ``local_domains=("nyc.big.com",)``, ``joe@host1.nyc.big.com`` becomes
   ``joe@nyc.big.com`` (the chapter's example) and ``joe@host2.big.com`` becomes
   ``joe@big.com``.  Without ``local_domains`` every host in the enterprise is rewritten
   to the top domain (``joe@host1.nyc.big.com`` -> ``joe@big.com``), so servers that want
   the chapter's per-subdomain addresses pass their mail domains.

The local part is never changed and the new domain is written in lower case.  Because the
result is always a mail domain (rule 6), rewriting is idempotent: a sender rewritten by a
subdomain server is left alone by the top-domain servers it passes through afterwards.

Gateway pseudodomains
=====================

The DECnet, DECnet/OSI, UUCP, MTS and X.25 address mappings live in
``posthouse.mta.pseudodomains`` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from posthouse.mta.address import normalize_local, unquote_local
from posthouse.mta.pseudodomains import (
    DEFAULT_NAMES,
    AddressError,
    AddressMapper,
    NativeAddress,
    Pseudodomain,
    quote_local,
)

__all__ = [
    "DEFAULT_NAMES",
    "AddressError",
    "AddressMapper",
    "MasqueradeSettings",
    "NativeAddress",
    "Pseudodomain",
    "masquerade_sender",
    "quote_local",
]


def _norm_domain(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def _within(domain: str, parent: str) -> bool:
    """True when *domain* equals *parent* or is a subdomain of it (both normalised)."""
    return domain == parent or domain.endswith("." + parent)


@dataclass(frozen=True)
class MasqueradeSettings:
    """How sender addresses are rewritten to domain-based form (12.1.2).

    ``top_domain`` is the worksheet's Top domain (e.g. ``big.com``); ``exceptions`` are
    hosts or domains (each matching itself and everything inside it) never rewritten;
    ``users_exempt`` are local parts never rewritten (default ``("root",)``).  Domains are
    normalised to lower case without a trailing dot.  An enabled setting needs a top domain.
    """

    top_domain: str
    enabled: bool = True
    exceptions: tuple[str, ...] = ()
    users_exempt: tuple[str, ...] = ("root",)

    def __post_init__(self) -> None:
        top = _norm_domain(self.top_domain)
        if self.enabled and not top:
            raise ValueError("masquerading needs a top domain")
        object.__setattr__(self, "top_domain", top)
        object.__setattr__(
            self, "exceptions", tuple(_norm_domain(e) for e in self.exceptions if e.strip())
        )
        object.__setattr__(
            self, "users_exempt", tuple(normalize_local(u) for u in self.users_exempt)
        )


def masquerade_sender(
    address: str,
    settings: MasqueradeSettings,
    *,
    local_domains: Collection[str] = (),
    mapper: AddressMapper | None = None,
) -> str:
    """Rewrite a sender ``user@host.sub.top`` to its domain-based form (module docstring).

    >>> s = MasqueradeSettings("big.com")
    >>> masquerade_sender("joe@host1.nyc.big.com", s, local_domains=["nyc.big.com"])
    'joe@nyc.big.com'
    >>> masquerade_sender("joe@host1.nyc.big.com", s)
    'joe@big.com'
    >>> masquerade_sender("joe@example.org", s)
    'joe@example.org'
    """
    if not settings.enabled or not address:
        return address
    local, at, raw_domain = address.rpartition("@")
    if not at or not local:
        return address
    domain = _norm_domain(raw_domain)
    top = settings.top_domain
    if not domain or domain.startswith("[") or not domain.endswith("." + top):
        return address
    if any(_within(domain, exc) for exc in settings.exceptions):
        return address
    if normalize_local(unquote_local(local)) in settings.users_exempt:
        return address
    if mapper is not None and mapper.classify(domain) is not None:
        return address
    mail_domains = {top}
    mail_domains.update(d for d in map(_norm_domain, local_domains) if _within(d, top))
    if domain in mail_domains:
        return address
    target = max((d for d in mail_domains if domain.endswith("." + d)), key=len)
    return f"{local}@{target}"
