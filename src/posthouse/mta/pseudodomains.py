"""Gateway pseudodomains: DECnet, DECnet/OSI, UUCP, MTS and X.25 addresses in Internet form.

A server that gateways between mail protocols (chapter 12, section 12.1.6, and the Mail
Protocol Worksheet of section 12.2.3.2) encapsulates each foreign address inside a
*pseudodomain*, so that the rest of the MTA only ever sees ``local@domain`` addresses and
routes them like any other domain.  This module is pure: it maps address strings in both
directions and classifies domains; it does no I/O and knows nothing about delivery.

The mappings
============

In the table, ``PD`` is the pseudodomain name (or one of its aliases) and ``top`` the
pseudodomain's ``top_domain``; when ``top_domain`` is empty the suffix is just ``PD``.

=============  ===========================  ==========================================
protocol       native form                  Internet form
=============  ===========================  ==========================================
decnet         ``node::user``               ``user@node.PD.top``  (12.1.6)
decnet-osi     ``user@ns:.site.node``       ``user@node.site.ns.PD.top``  (12.1.6)
uucp           ``host!user``                ``user@host.PD.top``  (RFC 976; PD is "UUCP")
mts            ``host/user``                ``user@host.PD.top``  (posthouse convention)
x25            ``dte/user``                 ``user@dte.PD.top``  (posthouse convention)
=============  ===========================  ==========================================

Rules taken from the chapter (12.1.6):

* DECnet Phase IV: "nodename::username" is mapped to
  "username@nodename.pseudodomain.top.domain".
* DECnet/OSI: "username@namespace:.site.nodename" is mapped to
  "username@nodename.site.namespace.pseudodomain.top.domain".  The native form in
  ``NativeAddress.native`` is exactly that chapter syntax; the DECnet-VMS spelling
  ``namespace:.site.nodename::username`` is accepted on input as well.  The directory path
  may have any number of components (``ns:.a.b.node`` -> ``node.b.a.ns.PD.top``): the
  components are simply reversed, which is the chapter's rule generalised.
* "The pseudodomain can be an arbitrary string, but it must be used consistently" and "if
  you use both DECnet Phase IV and DECnet/OSI ... the pseudodomain names should be
  different": ``AddressMapper`` refuses two pseudodomains that share a name or alias.

Rules taken from RFC 976 and the BSD mailaddr(7) compatibility rules:

* ``host!user`` becomes ``user@host.UUCP``; a multi-hop path ``a!b!user`` becomes
  ``b!user@a.UUCP``: the leftmost host is the next hop and the rest of the path is the
  local part handed to it.
* ``host.domain!user`` (a first hop containing a dot) is an Internet domain and becomes
  ``user@host.domain`` -- no pseudodomain is added.  This is applied even when no UUCP
  pseudodomain is configured.
* In a hybrid address ``a!b@c`` the ``@`` takes precedence: it is ``(a!b)@c``, an Internet
  address, and is returned unchanged.  More generally every address containing ``@`` is
  already in Internet form (except the DECnet/OSI ``user@ns:.site.node`` form, recognised
  by the ``:`` in its domain).

posthouse conventions (the chapter lists MTS and X.25 as gateway protocols with
pseudodomains but gives no address syntax):

* MTS: native ``host/user`` where ``host`` is a host label that starts with a letter;
  Internet ``user@host.MTS.top``.
* X.25: native ``dte/user`` where ``dte`` is the X.121 DTE address, 1 to 15 decimal digits;
  Internet ``user@dte.X25.top``.  The all-digits first hop is what tells X.25 from MTS.

How an address is recognised (``AddressMapper.to_internet``):

1. an empty address (the null sender) or one with no separator at all is returned as is;
2. an address with ``@`` is Internet form and returned as is, unless its domain contains
   ``:`` (DECnet/OSI native form);
3. otherwise the *leftmost* separator among ``::``, ``!`` and ``/`` picks the protocol
   (``::`` DECnet, or DECnet/OSI when the hop contains ``:.``; ``!`` UUCP; ``/`` MTS or
   X.25), and everything after it, separators included, is the user handed to that hop.
   So ``node::host!user`` goes to DECnet node ``node`` with user ``host!user``.

A native form for a protocol that has no configured pseudodomain is returned unchanged
(there is no gateway for it, so it is not ours to rewrite).  A native form for a configured
protocol that is malformed (empty node, ``::user``, ``!!``, ``node::``, a DECnet node name
that is not a host label ...) raises ``AddressError``.

Node and host names keep the case they were written in; the pseudodomain suffix is always
written in its canonical spelling (``name`` and ``top_domain`` as configured) on output and
matched case-insensitively on input.  A local part that is not a dot-atom (for instance
``b::user`` after a multi-hop DECnet path) is written as an RFC 5322 quoted string.

Loop protection: ``to_internet(to_native(x).native) == x`` for every address ``x`` written
with the canonical suffix, and addresses already in a pseudodomain are never nested again
(``user@node.DNET.big.com`` goes through ``to_internet`` unchanged; ``a.UUCP!user`` becomes
``user@a.UUCP``, not ``user@a.UUCP.UUCP``).  ``to_native`` refuses (``AddressError``) a
user part that could not survive that round trip, such as one containing ``@``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from posthouse.mta.address import unquote_local

__all__ = [
    "DEFAULT_NAMES",
    "RELAY_PROTOCOLS",
    "AddressError",
    "AddressMapper",
    "NativeAddress",
    "Protocol",
    "Pseudodomain",
    "Routing",
    "quote_local",
]

Protocol = Literal["decnet", "decnet-osi", "uucp", "mts", "x25"]
Routing = Literal["direct", "relay", "internet"]

PROTOCOLS: tuple[str, ...] = get_args(Protocol)
#: How a gateway's relay host is reached (the worksheet's "Relay's protocol"): posthouse
#: speaks SMTP only, so a relay that needs another protocol is refused, never ignored.
RELAY_PROTOCOLS: tuple[str, ...] = ("smtp", "esmtp")
ROUTINGS: tuple[str, ...] = get_args(Routing)

#: The pseudodomain name used when a ``Pseudodomain`` is given no ``name``.
DEFAULT_NAMES: dict[str, str] = {
    "decnet": "DNET",
    "decnet-osi": "DNA",
    "uucp": "UUCP",
    "mts": "MTS",
    "x25": "X25",
}

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\Z")
_MTS_HOST = re.compile(r"[A-Za-z](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\Z")
_DTE = re.compile(r"[0-9]{1,15}\Z")
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")
_BAD_USER_CHARS = re.compile(r'[\x00-\x20\x7f@"\\]')

_SEPARATORS: dict[str, str] = {
    "decnet": "::",
    "decnet-osi": "::",
    "uucp": "!",
    "mts": "/",
    "x25": "/",
}


class AddressError(ValueError):
    """A native or pseudodomain address that cannot be mapped."""


def _is_label(text: str) -> bool:
    return bool(_LABEL.match(text))


def _is_domain(text: str) -> bool:
    return bool(text) and all(_is_label(label) for label in text.split("."))


def quote_local(local: str) -> str:
    """Return *local* as an RFC 5322 local part: as is when a dot-atom, else a quoted string.

    >>> quote_local("b!user")
    'b!user'
    >>> quote_local("b::user")
    '"b::user"'
    """
    if local and all(_ATEXT.match(atom) for atom in local.split(".")):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check_user(user: str, sep: str, address: str) -> None:
    """Refuse a user part that is empty, unsafe, or has an empty hop of its own protocol."""
    if not user:
        raise AddressError(f"{address!r}: empty user name")
    if _BAD_USER_CHARS.search(user):
        raise AddressError(
            f"{address!r}: user {user!r} contains '@', a quote, a backslash, "
            "white space or a control character"
        )
    if any(not part for part in user.split(sep)):
        raise AddressError(f"{address!r}: empty hop or user in {user!r} (stray {sep!r})")


@dataclass(frozen=True)
class Pseudodomain:
    """One gateway protocol from the Mail Protocol Worksheet (12.2.3.2).

    ``name`` is the pseudodomain ("an arbitrary string that specifies the pseudodomain");
    empty means the protocol's default from ``DEFAULT_NAMES`` (the chapter lets the
    administrator choose it for DECnet, DECnet/OSI and MTS only; UUCP is "UUCP").
    ``aliases`` are "synonyms for your pseudodomain", accepted on input and never produced.
    ``top_domain`` is appended after the name: ``user@node.DNET.big.com``; leave it empty
    for ``user@host.UUCP``.  When it is set, the unqualified form (``user@node.DNET``, as
    local users type it) is accepted on input too.

    ``routing`` is the worksheet's Routing box: ``internet`` (forward over the Internet,
    DNS picks the gateway: "do not specify a relay hostname for the Internet"), ``direct``
    (the protocol is installed here; ``transport`` is the command line the pipe agent runs,
    kept as data) or ``relay`` (forward to ``relay_host`` speaking ``relay_protocol``).
    """

    protocol: Protocol
    name: str = ""
    aliases: tuple[str, ...] = ()
    top_domain: str = ""
    routing: Routing = "internet"
    relay_host: str = ""
    relay_protocol: str = ""
    transport: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown gateway protocol {self.protocol!r}")
        if not self.name:
            object.__setattr__(self, "name", DEFAULT_NAMES[self.protocol])
        top = self.top_domain.rstrip(".").lower()
        object.__setattr__(self, "top_domain", top)
        object.__setattr__(self, "aliases", tuple(self.aliases))
        for name in (self.name, *self.aliases):
            if not _is_domain(name):
                raise ValueError(f"pseudodomain name {name!r} is not a domain name")
        if top and not _is_domain(top):
            raise ValueError(f"top domain {self.top_domain!r} is not a domain name")
        if self.routing not in ROUTINGS:
            raise ValueError(f"unknown routing {self.routing!r}")
        if self.routing == "relay" and not self.relay_host:
            raise ValueError(f"{self.protocol}: routing 'relay' needs a relay_host")
        if self.routing != "relay" and self.relay_host:
            raise ValueError(
                f"{self.protocol}: relay_host is only used with routing 'relay' "
                "(for 'internet', DNS selects the gateway)"
            )

    @property
    def suffix(self) -> str:
        """The canonical pseudodomain suffix written on output, e.g. ``DNET.big.com``."""
        return f"{self.name}.{self.top_domain}" if self.top_domain else self.name

    @property
    def domains(self) -> tuple[str, ...]:
        """Every suffix accepted on input, lower-cased, canonical first."""
        out: list[str] = []
        for name in (self.name, *self.aliases):
            forms = [f"{name}.{self.top_domain}", name] if self.top_domain else [name]
            for form in forms:
                low = form.lower()
                if low not in out:
                    out.append(low)
        return tuple(out)


@dataclass(frozen=True)
class NativeAddress:
    """An Internet-form pseudodomain address translated for its gateway.

    ``native`` is the whole native address (``node::user``, ``user@ns:.site.node``,
    ``host!user``, ``host/user``, ``dte/user``); ``next_hop`` the node, host or DTE the
    gateway hands the message to (``ns:.site.node`` for DECnet/OSI); ``user`` the user part
    given to that hop, which for a multi-hop path is the rest of the path (``b!user`` for
    ``a!b!user``).
    """

    protocol: Protocol
    pseudodomain: Pseudodomain
    native: str
    next_hop: str
    user: str


class AddressMapper:
    """Maps addresses between native gateway forms and their pseudodomains.

    At most one pseudodomain per protocol, and no two pseudodomains may share a name or
    alias (12.2.3.2: "The pseudodomain name must be unique for each protocol").
    """

    def __init__(self, pseudodomains: Sequence[Pseudodomain]) -> None:
        self._by_protocol: dict[str, Pseudodomain] = {}
        self._by_suffix: dict[str, Pseudodomain] = {}
        for pd in pseudodomains:
            if pd.protocol in self._by_protocol:
                raise ValueError(f"more than one pseudodomain for protocol {pd.protocol!r}")
            self._by_protocol[pd.protocol] = pd
            for suffix in pd.domains:
                other = self._by_suffix.get(suffix)
                if other is not None:
                    raise ValueError(
                        f"pseudodomain {suffix!r} is used by both {other.protocol!r} "
                        f"and {pd.protocol!r}"
                    )
                self._by_suffix[suffix] = pd
        # Longest suffix first, so a nested pseudodomain wins over an enclosing one.
        self._suffixes = sorted(self._by_suffix, key=len, reverse=True)

    @property
    def pseudodomains(self) -> tuple[Pseudodomain, ...]:
        return tuple(self._by_protocol.values())

    def for_protocol(self, protocol: str) -> Pseudodomain | None:
        """The pseudodomain configured for *protocol*, if any."""
        return self._by_protocol.get(protocol)

    def _match(self, domain: str) -> tuple[Pseudodomain, list[str]] | None:
        """The pseudodomain *domain* lies strictly inside, and the labels before its suffix."""
        domain = domain.rstrip(".")
        low = domain.lower()
        for suffix in self._suffixes:
            if low.endswith("." + suffix):
                prefix = domain[: len(domain) - len(suffix) - 1]
                return self._by_suffix[suffix], prefix.split(".")
        return None

    def classify(self, domain: str) -> Pseudodomain | None:
        """The pseudodomain *domain* is in (``node.DNET.big.com`` -> DECnet), else ``None``.

        Only names strictly inside a pseudodomain match: ``DNET.big.com`` itself is an
        ordinary host name.  Matching is case-insensitive and ignores a trailing dot.
        """
        found = self._match(domain)
        return found[0] if found else None

    def canonical(self, address: str) -> str:
        """*address* with a pseudodomain alias (or the unqualified ``node.DNET`` form)
        replaced by the pseudodomain's own name, so the next gateway need not know the
        aliases (12.2.3.2); any other address unchanged.

        >>> m = AddressMapper([Pseudodomain("decnet", "DNET", ("DECNET",), "big.com")])
        >>> m.canonical("smith@VAXA.decnet"), m.canonical("joe@example.org")
        ('smith@VAXA.DNET.big.com', 'joe@example.org')
        """
        local, at, domain = address.rpartition("@")
        if not at:
            return address
        found = self._match(domain)
        if found is None:
            return address
        pd, labels = found
        canonical = f"{local}@{'.'.join(labels)}.{pd.suffix}"
        return address if canonical.lower() == address.rstrip(".").lower() else canonical

    # -- Internet -> native -------------------------------------------------------------

    def to_native(self, address: str) -> NativeAddress | None:
        """Translate an Internet address in a pseudodomain to its native form.

        Returns ``None`` when the address is not in any pseudodomain; raises
        ``AddressError`` when it is, but cannot be expressed natively (wrong number of
        labels before the pseudodomain, a bad node name, an unsafe user part).
        """
        local, at, domain = address.rpartition("@")
        if not at:
            return None
        found = self._match(domain)
        if found is None:
            return None
        pd, labels = found
        user = unquote_local(local)
        proto = pd.protocol
        _check_user(user, _SEPARATORS[proto], address)
        if proto == "decnet-osi":
            if len(labels) < 2 or not all(_is_label(x) for x in labels):
                raise AddressError(
                    f"{address!r}: DECnet/OSI needs node[.site...].namespace before {pd.suffix!r}"
                )
            *path, namespace = labels
            hop = f"{namespace}:.{'.'.join(reversed(path))}"
            return NativeAddress(proto, pd, f"{user}@{hop}", hop, user)
        if len(labels) != 1:
            raise AddressError(
                f"{address!r}: exactly one {_HOP_WORD[proto]} name is allowed before "
                f"{pd.suffix!r}, got {'.'.join(labels)!r}"
            )
        hop = labels[0]
        _check_hop(proto, hop, address)
        return NativeAddress(proto, pd, f"{hop}{_SEPARATORS[proto]}{user}", hop, user)

    # -- native -> Internet -------------------------------------------------------------

    def to_internet(self, address: str) -> str:
        """Translate a native gateway address to Internet form; leave others unchanged.

        >>> m = AddressMapper([Pseudodomain("decnet", "DNET", top_domain="big.com"),
        ...                    Pseudodomain("uucp")])
        >>> m.to_internet("NODE::joe")
        'joe@NODE.DNET.big.com'
        >>> m.to_internet("a!b!joe")
        'b!joe@a.UUCP'
        >>> m.to_internet("joe@NODE.DNET.big.com")
        'joe@NODE.DNET.big.com'
        """
        if not address:
            return address
        if "@" in address:
            local, _, domain = address.rpartition("@")
            if ":" not in domain or domain.startswith("["):
                return address  # Internet form (a!b@c is (a!b)@c); [IPv6:...] literals too
            pd = self._by_protocol.get("decnet-osi")
            if pd is None:
                return address
            return self._osi_to_internet(pd, unquote_local(local), domain, address)
        found = _leftmost_separator(address)
        if found is None:
            return address
        pos, sep = found
        hop, user = address[:pos], address[pos + len(sep) :]
        if sep == "!" and "." in hop:
            # host.domain!user -> user@host.domain (mailaddr(7)); never a pseudodomain.
            if not _is_domain(hop):
                raise AddressError(f"{address!r}: {hop!r} is not a host or domain name")
            _check_user(user, sep, address)
            return f"{quote_local(user)}@{hop}"
        proto: Protocol
        if sep == "::":
            proto = "decnet-osi" if ":" in hop else "decnet"
        elif sep == "!":
            proto = "uucp"
        else:
            proto = "x25" if hop.isdigit() else "mts"
        pd = self._by_protocol.get(proto)
        if pd is None:
            return address  # no gateway for this protocol: not ours to rewrite
        if proto == "decnet-osi":
            return self._osi_to_internet(pd, user, hop, address)
        _check_hop(proto, hop, address)
        _check_user(user, sep, address)
        return f"{quote_local(user)}@{hop}.{pd.suffix}"

    @staticmethod
    def _osi_to_internet(pd: Pseudodomain, user: str, hop: str, address: str) -> str:
        namespace, colon, path = hop.partition(":")
        if not colon or not path.startswith(".") or not _is_label(namespace):
            raise AddressError(
                f"{address!r}: DECnet/OSI name {hop!r} is not namespace:.site.nodename"
            )
        parts = path[1:].split(".")
        if not all(_is_label(p) for p in parts):
            raise AddressError(f"{address!r}: bad component in DECnet/OSI name {hop!r}")
        _check_user(user, "::", address)
        return f"{quote_local(user)}@{'.'.join(reversed(parts))}.{namespace}.{pd.suffix}"


_HOP_WORD: dict[str, str] = {
    "decnet": "node",
    "decnet-osi": "node",
    "uucp": "host",
    "mts": "host",
    "x25": "DTE address",
}


def _check_hop(proto: str, hop: str, address: str) -> None:
    if not hop:
        raise AddressError(f"{address!r}: empty {_HOP_WORD[proto]} name")
    if proto == "x25":
        if not _DTE.match(hop):
            raise AddressError(f"{address!r}: X.25 DTE address {hop!r} is not 1-15 digits")
    elif proto == "mts":
        if not _MTS_HOST.match(hop):
            raise AddressError(
                f"{address!r}: MTS host {hop!r} must be a host label starting with a letter"
            )
    elif not _is_label(hop):
        raise AddressError(f"{address!r}: {hop!r} is not a valid {_HOP_WORD[proto]} name")


def _leftmost_separator(address: str) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for sep in ("::", "!", "/"):
        pos = address.find(sep)
        if pos >= 0 and (best is None or pos < best[0]):
            best = (pos, sep)
    return best
