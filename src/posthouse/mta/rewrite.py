"""Address rewriting: qualification, gateway native forms and domain-based addresses.

:class:`AddressRewriter` is the one policy every message's addresses go through, in the
envelope and in the address header fields (:mod:`posthouse.mta.address_fields` finds them):

1. a native gateway address (``VAXA::SMITH``, ``SMITH@ns:.site.node``, ``host!user``) is
   put in its pseudodomain (12.1.6), and a pseudodomain alias becomes the pseudodomain's
   own name (:meth:`AddressMapper.canonical`);
2. an unqualified address (``joe``, as ``sendmail -f joe`` and scripts write it) is
   qualified with this host's name -- sendmail's ``$j`` -- when it comes from this host or
   its trusted clients (mail from elsewhere keeps what its sender wrote, as Postfix's
   ``local_header_rewrite_clients``);
3. sender addresses (envelope sender as it leaves, ``From:``, ``Sender:``, ``Reply-To:``)
   are masqueraded (below); an unqualified recipient in ``To:``, ``Cc:`` or ``Bcc:`` is
   given the masquerade domain the same way, so replies go to the domain-based address.

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
the top domain, the masquerade domain (``settings.domain``, sendmail's ``MASQUERADE_AS``:
by default this host's own domain, ``nyc.big.com`` for ``host1.nyc.big.com``) and every
``local_domains`` entry that is equal to or inside the top domain.  For an address
``local@d`` (``d`` compared case-insensitively, trailing dot ignored):

1. unchanged when masquerading is disabled, for the null sender ``""``, for an address
   without ``@`` (a bare local user) and for a domain literal ``[...]``;
2. unchanged when ``d`` is not strictly inside the top domain ("addresses outside
   top_domain untouched"; the top domain itself is already domain-based), unless ``d`` is
   one of this host's own names (``settings.host_names``);
3. unchanged when ``d`` equals, or is inside, one of ``settings.exceptions`` (hosts or
   domains that are never rewritten, e.g. ``mail.big.com``);
4. unchanged when the local part (unquoted, case-insensitively) is in
   ``settings.users_exempt`` -- by default ``root``, whose mail should keep naming the
   machine it came from (the sendmail ``EXPOSED_USER`` tradition; a posthouse decision,
   the chapter does not say);
5. unchanged when ``d`` lies in a gateway pseudodomain (``mapper`` given): the node label
   of ``user@node.DNET.big.com`` is the address, not a host name;
6. unchanged when ``d`` is itself a mail domain (``joe@nyc.big.com``);
7. ``d`` one of this host's names: replaced by the masquerade domain;
8. otherwise ``d`` names a host, and is replaced by the longest mail domain that encloses
   it: with ``local_domains=("nyc.big.com",)`` or the masquerade domain ``nyc.big.com``,
   ``joe@host1.nyc.big.com`` becomes ``joe@nyc.big.com`` (the chapter's example) and
   ``joe@host2.big.com`` becomes ``joe@big.com``.  A server of the top domain that wants
   the chapter's per-subdomain addresses for other subdomains lists them as local domains.

The local part is never changed and the new domain is written in lower case.  Because the
result is always a mail domain (rule 6), rewriting is idempotent: a sender rewritten by a
subdomain server is left alone by the top-domain servers it passes through afterwards.

Gateway pseudodomains
=====================

The DECnet, DECnet/OSI, UUCP, MTS and X.25 address mappings live in
``posthouse.mta.pseudodomains`` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from posthouse.mta.address import normalize_local, unquote_local
from posthouse.mta.address_fields import AddressRewrite
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
    "RECIPIENT_FIELDS",
    "SENDER_FIELDS",
    "AddressError",
    "AddressMapper",
    "AddressRewriter",
    "MasqueradeSettings",
    "NativeAddress",
    "Pseudodomain",
    "masquerade_domain",
    "masquerade_sender",
    "own_domain",
    "quote_local",
]

#: The address fields that name the message's sender(s) (RFC 5322 §3.6.2, §3.6.6).
SENDER_FIELDS = ("from", "sender", "reply-to", "resent-from", "resent-sender")
#: The destination address fields (RFC 5322 §3.6.3, §3.6.6).
RECIPIENT_FIELDS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")


def _norm_domain(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def _within(domain: str, parent: str) -> bool:
    """True when *domain* equals *parent* or is a subdomain of it (both normalised)."""
    return domain == parent or domain.endswith("." + parent)


def own_domain(hostname: str, top_domain: str = "") -> str:
    """The domain a host's mail is addressed at (12.1.2): its name without the first label
    (``host1.nyc.big.com`` -> ``nyc.big.com``), when that is a domain of two labels or more
    and, with a top domain, inside it; else ``""``.

    >>> own_domain("host1.nyc.big.com", "big.com"), own_domain("mail", ""), own_domain("a.b", "")
    ('nyc.big.com', '', '')
    """
    parent = _norm_domain(hostname).partition(".")[2]
    top = _norm_domain(top_domain)
    if "." not in parent or (top and not _within(parent, top)):
        return ""
    return parent


def masquerade_domain(
    hostname: str, top_domain: str, local_domains: Collection[str], explicit: str = ""
) -> str:
    """The domain this host's addresses are given when masquerading (12.1.2), or ``""``
    when there is none: ``explicit`` (``mail.masquerade_as``) when set; else the longest
    local domain (inside the top domain, if there is one) that encloses the host name;
    else the host's own domain (:func:`own_domain`); else the top domain.

    >>> masquerade_domain("host1.nyc.big.com", "big.com", ())
    'nyc.big.com'
    >>> masquerade_domain("localhost", "", ())
    ''
    """
    if _norm_domain(explicit):
        return _norm_domain(explicit)
    host, top = _norm_domain(hostname), _norm_domain(top_domain)
    enclosing = [
        d
        for d in map(_norm_domain, local_domains)
        if host.endswith("." + d) and (not top or _within(d, top))
    ]
    if enclosing:
        return max(enclosing, key=len)
    return own_domain(host, top) or top


@dataclass(frozen=True)
class MasqueradeSettings:
    """How sender addresses are rewritten to domain-based form (12.1.2).

    ``top_domain`` is the worksheet's Top domain (e.g. ``big.com``); ``domain`` the
    masquerade domain this host's own names become (sendmail's ``MASQUERADE_AS``; empty:
    the top domain); ``host_names`` this host's names (hostname, host aliases, localhost);
    ``exceptions`` are hosts or domains (each matching itself and everything inside it)
    never rewritten; ``users_exempt`` are local parts never rewritten (default
    ``("root",)``).  Domains are normalised to lower case without a trailing dot.  An
    enabled setting needs a domain to masquerade as: ``top_domain`` or ``domain``; without
    a top domain, the masquerade domain is the scope of rule 2.
    """

    top_domain: str
    enabled: bool = True
    exceptions: tuple[str, ...] = ()
    users_exempt: tuple[str, ...] = ("root",)
    domain: str = ""
    host_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        top = _norm_domain(self.top_domain)
        domain = _norm_domain(self.domain) or top
        top = top or domain
        if self.enabled and not top:
            raise ValueError("masquerading needs a top domain or a domain to masquerade as")
        object.__setattr__(self, "top_domain", top)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(
            self, "exceptions", tuple(_norm_domain(e) for e in self.exceptions if e.strip())
        )
        object.__setattr__(
            self, "users_exempt", tuple(normalize_local(u) for u in self.users_exempt)
        )
        object.__setattr__(
            self, "host_names", tuple(_norm_domain(h) for h in self.host_names if h.strip())
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
    own = domain in settings.host_names
    if not domain or domain.startswith("["):
        return address
    if not own and not domain.endswith("." + top):
        return address
    if any(_within(domain, exc) for exc in settings.exceptions):
        return address
    if normalize_local(unquote_local(local)) in settings.users_exempt:
        return address
    if mapper is not None and mapper.classify(domain) is not None:
        return address
    mail_domains = {top, settings.domain}
    mail_domains.update(d for d in map(_norm_domain, local_domains) if _within(d, top))
    if domain in mail_domains:
        return address
    if own:
        return f"{local}@{settings.domain}"
    target = max((d for d in mail_domains if domain.endswith("." + d)), key=len)
    return f"{local}@{target}"


@dataclass(frozen=True)
class AddressRewriter:
    """The rewriting policy of one host (module docstring): ``hostname`` qualifies bare
    addresses; ``mapper`` knows the gateway pseudodomains; ``masquerade`` (None: off) and
    ``local_domains`` make addresses domain-based."""

    hostname: str
    mapper: AddressMapper
    masquerade: MasqueradeSettings | None = None
    local_domains: tuple[str, ...] = ()

    def internet(self, address: str) -> str:
        """A native gateway address in its pseudodomain, aliases made canonical; a native
        address that is malformed is left as it is (delivery reports it)."""
        try:
            return self.mapper.canonical(self.mapper.to_internet(address))
        except AddressError:
            return address

    def qualify(self, address: str) -> str:
        """``joe`` -> ``joe@HOSTNAME`` (sendmail's ``$j``); other addresses unchanged."""
        address = self.internet(address)
        if not address or "@" in address:
            return address
        return f"{address}@{self.hostname}"

    def masqueraded(self, address: str) -> str:
        """The domain-based form of a sender address (12.1.2); unchanged when off."""
        if self.masquerade is None:
            return address
        return masquerade_sender(
            address, self.masquerade, local_domains=self.local_domains, mapper=self.mapper
        )

    def outbound_sender(self, sender: str) -> str:
        """The envelope sender as it leaves this host: Internet form, masqueraded."""
        if not sender:
            return sender
        return self.masqueraded(self.internet(sender))

    def header_rewrites(self, *, qualify: bool) -> Mapping[str, AddressRewrite]:
        """What :func:`~posthouse.mta.address_fields.rewrite_header_section` does to each
        address field.  ``qualify``: the message comes from this host or a client it
        trusts, so bare names are this host's users (else they are left as written)."""

        def sender(address: str) -> str:
            return self.masqueraded(self.qualify(address) if qualify else self.internet(address))

        def recipient(address: str) -> str:
            if not qualify:
                return self.internet(address)
            qualified = self.qualify(address)
            return qualified if qualified == self.internet(address) else self.masqueraded(qualified)

        rewrites: dict[str, AddressRewrite] = {name: sender for name in SENDER_FIELDS}
        rewrites.update({name: recipient for name in RECIPIENT_FIELDS})
        return rewrites
