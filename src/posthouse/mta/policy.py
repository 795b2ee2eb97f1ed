"""Who may send to whom: local domains and relay control.

Mail for a local domain (the configured domains, this host's name and its host
aliases) is accepted when the recipient is deliverable; mail for any other
domain is relayed only for authenticated clients and trusted networks.  With
the defaults nothing is an open relay: only this host's loopback is trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from posthouse.mta.errors import MailError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmapped_network(text: str) -> IPNetwork:
    """The network ``text`` names; an IPv4-mapped IPv6 network as the IPv4 network it maps."""
    network = ipaddress.ip_network(text, strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        first = network.network_address.ipv4_mapped
        assert first is not None
        return ipaddress.IPv4Network((first, network.prefixlen - 96))
    return network


class LocalDomains:
    """The set of domains this host receives mail for (case-insensitive)."""

    def __init__(self, domains: Iterable[str]) -> None:
        self._domains: frozenset[str] = frozenset()
        self.replace(domains)

    def replace(self, domains: Iterable[str]) -> None:
        """Swap in a new set (configuration reload)."""
        self._domains = frozenset(d.lower().rstrip(".") for d in domains if d)

    def __contains__(self, domain: object) -> bool:
        if not isinstance(domain, str):
            return False
        return domain == "" or domain.lower().rstrip(".") in self._domains


_JUDGED_CLIENTS = 4096  # client addresses whose trust is kept (all dropped when full)


class RecipientPolicy:
    """Decides at RCPT time whether a recipient is accepted."""

    def __init__(
        self,
        *,
        local_domains: LocalDomains,
        trusted_networks: Iterable[str],
        is_deliverable: Callable[[str], bool],
    ) -> None:
        self.local_domains = local_domains
        self.trusted: tuple[IPNetwork, ...] = ()
        self._judged: dict[str, bool] = {}  # client address -> trusted, for self.trusted
        self.set_trusted_networks(trusted_networks)
        self.is_deliverable = is_deliverable

    def set_trusted_networks(self, networks: Iterable[str]) -> None:
        """Replace the trusted networks (a bad one raises ValueError)."""
        self.trusted = tuple(_unmapped_network(n) for n in networks)
        self._judged = {}

    def is_trusted(self, client_address: str) -> bool:
        """Whether ``client_address`` may relay without authenticating.

        An IPv4 client seen as an IPv4-mapped IPv6 address (``::ffff:10.1.2.3``, as a
        dual-stack listener reports it) is judged by its IPv4 address.  Answers are kept
        until the networks change (a busy client is judged once, not per message).
        """
        judged = self._judged.get(client_address)
        if judged is None:
            judged = self._judge(client_address)
            if len(self._judged) >= _JUDGED_CLIENTS:
                self._judged.clear()
            self._judged[client_address] = judged
        return judged

    def _judge(self, client_address: str) -> bool:
        if not client_address:
            return True  # a local process on a unix socket
        try:
            ip = ipaddress.ip_address(client_address)
        except ValueError:
            return False
        forms: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (ip,)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            forms = (ip, ip.ipv4_mapped)
        return any(form in network for form in forms for network in self.trusted)

    def check_recipient(self, address: str, *, authenticated: bool, client_address: str) -> None:
        """Raise MailError when ``address`` must be refused."""
        domain = address.rpartition("@")[2] if "@" in address else ""
        if domain in self.local_domains:
            if not self.is_deliverable(address):
                raise MailError("5.1.1", f"<{address}>: Recipient address rejected: User unknown")
            return
        if authenticated or self.is_trusted(client_address):
            return
        # RFC 5321 §3.6.2: a server that is not a relay for the domain refuses it.
        raise MailError("5.7.1", f"<{address}>: Relay access denied")
