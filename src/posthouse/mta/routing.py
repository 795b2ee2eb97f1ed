"""Next-hop routing: where does mail for a recipient domain go?

A pure function of the domain and the chapter's worksheets (12.1, 12.2.3): the host's *role*
(standalone, client, server), the *mail server* of a client, the organisation's *top domain*,
the *forwarding* mode and the *relay host*, plus an optional table of static routes (sendmail's
mailertable) that overrides all of them.  :func:`route` returns ``None`` when the mail is
delivered on this host, otherwise a :class:`NextHop` for the SMTP client agent.

The decision, in order:

1. **Delivered here?**  A domain in ``host_names`` (this host's own names: its hostname and the
   worksheet's host aliases) is delivered here, except with ``forwarding="local"``.  A domain
   in ``local_domains`` is delivered here on a standalone system or a server, except with
   ``forwarding="local"``.  A *client* delivers only mail for its own ``host_names`` itself:
   mail for the shared local domain (domain-based addressing, 12.1.2, e.g. ``joe@nyc.big.com``)
   belongs to the domain's mail server, so it goes there.  Matching is exact (a subdomain of
   a local domain is not local unless listed).
2. **Static routes.**  ``static_routes`` maps a domain (exact), ``.parent`` (every subdomain
   of ``parent``; the nearest listed parent wins) or ``*`` (anything else) to a host
   specification.  They apply to every domain not delivered here, so ``*`` never captures
   local mail.  Static routes are taken literally: no MX lookup (``use_mx=False``).
3. **Role and forwarding** (12.2.3):

   ``client``
       Everything not delivered here goes to the ``mail_server`` (whatever ``forwarding``
       says: the worksheet's forwarding applies to SMTP servers and standalone hosts).
   ``forwarding="none"``
       Direct delivery to the domain's MX hosts.
   ``forwarding="internet"``
       Mail for domains outside ``top_domain`` (the top domain itself, its subdomains and the
       local domains are "inside") goes to ``relay_host``; inside mail is delivered directly.
       An empty ``top_domain`` (a standalone system need not have one) makes the local
       domains the only inside.
   ``forwarding="nonlocal"``
       Mail for domains outside the local domains (a local domain and its subdomains are
       inside) goes to ``relay_host``; inside mail is delivered directly.
   ``forwarding="local"``
       All mail, including mail for local domains and for this host's own names, goes to
       ``relay_host`` (sendmail's mail hub).  The relay must not route it back here.

Host specifications (``mail_server``, ``relay_host``, static routes) are ``host``,
``host:port``, ``[host]``, ``[host]:port``, ``[1.2.3.4]:port`` or ``[IPv6:...]``/``[::1]:port``.
A bracketed host or an IP address is used literally; a plain ``mail_server``/``relay_host``
name is looked up as a mail domain (MX), which is what the chapter recommends for a client's
mail server ("the name of your domain ... your mail service cannot be interrupted by a single
mail server that becomes unavailable").  A recipient domain that is an address literal
(``[192.0.2.1]``, ``[IPv6:2001:db8::1]``) is delivered to that address when delivered directly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["standalone", "client", "server"]
Forwarding = Literal["none", "internet", "nonlocal", "local"]

SMTP_PORT = 25


@dataclass(frozen=True)
class NextHop:
    """Where to send: a mail domain to look up (``use_mx``) or a host to connect to."""

    host: str
    port: int = SMTP_PORT
    use_mx: bool = True
    reason: str = ""
    configured: bool = True  # named by the configuration (not found by DNS for the domain)

    @property
    def key(self) -> tuple[str, int, bool]:
        """Identity of the destination (for connection limits and batching)."""
        return (self.host.lower(), self.port, self.use_mx)


def normalize_domain(domain: str) -> str:
    """Lower case, without a trailing dot; address literals keep their brackets."""
    return domain.strip().rstrip(".").lower()


def parse_host_spec(spec: str) -> tuple[str, int, bool]:
    """``"host[:port]"`` / ``"[host]:port"`` -> ``(host, port, use_mx)``.

    Brackets or an IP address mean "this host, no MX lookup".  Raises ValueError.
    """
    text = spec.strip()
    if not text:
        raise ValueError("empty host specification")
    port = SMTP_PORT
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"unbalanced brackets in {spec!r}")
        host = text[1:close]
        rest = text[close + 1 :]
        if host[:5].lower() == "ipv6:":
            host = host[5:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"garbage after ']' in {spec!r}")
            port = _parse_port(rest[1:], spec)
        use_mx = False
    else:
        if text.count(":") > 1:
            # A bare IPv6 address, which cannot carry a port.
            host = text
        elif ":" in text:
            host, _, port_text = text.partition(":")
            port = _parse_port(port_text, spec)
        else:
            host = text
        use_mx = not _is_ip(host)
    host = host.rstrip(".")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"bad host in {spec!r}")
    return host.lower(), port, use_mx


def _parse_port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in {spec!r}")
    return int(text)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _within(domain: str, parent: str) -> bool:
    """``domain`` is ``parent`` or one of its subdomains."""
    return domain == parent or domain.endswith("." + parent)


@dataclass(frozen=True)
class RoutingSettings:
    """The worksheet answers that decide routing (see the module docstring).

    ``host_names`` (an addition to the original brief) are this host's own names; the caller
    fills it from the hostname and ``host_aliases``.  Construction validates that each mode
    has the host it needs (ValueError otherwise).
    """

    role: Role = "standalone"
    mail_server: str = ""
    top_domain: str = ""
    local_domains: frozenset[str] = frozenset()
    forwarding: Forwarding = "none"
    relay_host: str = ""
    static_routes: Mapping[str, str] = field(default_factory=dict)
    host_names: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.role == "client" and not self.mail_server:
            raise ValueError("role=client needs mail_server")
        if self.role != "client" and self.forwarding != "none" and not self.relay_host:
            raise ValueError(f"forwarding={self.forwarding} needs relay_host")
        if self.role == "client":
            parse_host_spec(self.mail_server)
        elif self.forwarding != "none":
            parse_host_spec(self.relay_host)
        for target in self.static_routes.values():
            parse_host_spec(target)


def _hop(spec: str, reason: str, *, literal: bool = False) -> NextHop:
    host, port, use_mx = parse_host_spec(spec)
    return NextHop(host=host, port=port, use_mx=use_mx and not literal, reason=reason)


def _delivered_here(domain: str, settings: RoutingSettings) -> bool:
    if settings.forwarding == "local" and settings.role != "client":
        return False
    if domain in {normalize_domain(name) for name in settings.host_names}:
        return True
    if settings.role == "client":
        return False
    return domain in {normalize_domain(name) for name in settings.local_domains}


def _static_route(domain: str, routes: Mapping[str, str]) -> NextHop | None:
    table = {normalize_domain(key) if key != "*" else key: value for key, value in routes.items()}
    if domain in table:
        return _hop(table[domain], f"static route ({domain})", literal=True)
    labels = domain.split(".")
    for i in range(1, len(labels)):
        suffix = "." + ".".join(labels[i:])
        if suffix in table:
            return _hop(table[suffix], f"static route ({suffix})", literal=True)
    if "*" in table:
        return _hop(table["*"], "static route (*)", literal=True)
    return None


def _direct(domain: str) -> NextHop:
    if domain.startswith("[") and domain.endswith("]"):
        host, _, _ = parse_host_spec(domain)
        return NextHop(host=host, use_mx=False, reason="address literal", configured=False)
    return NextHop(host=domain, use_mx=True, reason="MX", configured=False)


def route(domain: str, settings: RoutingSettings) -> NextHop | None:
    """The next hop for mail to ``domain``; None when it is delivered on this host."""
    domain = normalize_domain(domain)
    if _delivered_here(domain, settings):
        return None
    static = _static_route(domain, settings.static_routes)
    if static is not None:
        return static
    if settings.role == "client":
        return _hop(settings.mail_server, "mail server (role=client)")
    relay = f"relay (forwarding={settings.forwarding})"
    local = [normalize_domain(d) for d in settings.local_domains]
    match settings.forwarding:
        case "none":
            return _direct(domain)
        case "local":
            return _hop(settings.relay_host, relay)
        case "nonlocal":
            inside = local
        case "internet":
            top = normalize_domain(settings.top_domain)
            inside = [*local, top] if top else local
    if any(_within(domain, parent) for parent in inside):
        return _direct(domain)
    return _hop(settings.relay_host, relay)
