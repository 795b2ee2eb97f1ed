"""Mail host lookup for outbound delivery (RFC 5321 §5.1, RFC 7505).

:meth:`Resolver.mail_hosts` turns a recipient domain into the ordered list of hosts to try:

* MX records sorted by preference, the order among equal preferences shuffled (§5.1: "the
  sender-SMTP MUST randomize them to spread the load").
* No MX records (the name exists but has no MX) -> the *implicit MX*: the domain itself with
  preference 0 and its own A/AAAA addresses.
* The domain does not exist (NXDOMAIN) -> permanent ``5.1.2``.  The domain exists but has
  neither MX nor addresses -> permanent ``5.1.2`` as well (there is no way to reach it; this is
  what sendmail and Postfix do).
* Null MX (RFC 7505: a single MX whose exchange is ``.``) -> permanent ``5.1.10``.  A ``.``
  mixed with real MX records (forbidden to publish) is ignored and the real ones are used.
* SERVFAIL, timeout or no answer from any name server -> temporary ``4.4.3``.
* An MX host without addresses (NXDOMAIN or no A/AAAA) is skipped; so is one whose address
  lookup failed temporarily, if other hosts are usable.  If no MX host is usable the error
  is temporary (``4.4.3`` when a lookup failed temporarily, else ``4.4.4``): RFC 5321 does
  not call a broken MX permanent, and a DNS fix should not have bounced the mail meanwhile;
  the queue lifetime ends the retries.
* If one of this host's own names (``local_names``) is an MX host, it and every host with a
  preference not better than its own are dropped (§5.1, loop prevention); nothing left ->
  permanent ``5.4.6`` ("mail loops back to myself").

Addresses are listed IPv4 first, then IPv6 (IPv4 is still the more reliably reachable path
for mail).  :meth:`Resolver.host_addresses` resolves a host used literally (a relay or a static
route): an unknown host there is a configuration problem, so it is *temporary* (``4.4.4``)
rather than a bounce of every message routed through it.

The DNS itself is behind :class:`DNSBackend`; :class:`DnspythonBackend` wraps
``dns.asyncresolver`` and tests inject their own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from posthouse.mta.errors import MailError


@dataclass(frozen=True)
class MailHost:
    """One host to try, with its addresses in the order to try them."""

    host: str
    preference: int
    addresses: tuple[str, ...]


class DomainNotFound(Exception):
    """The queried name does not exist (NXDOMAIN)."""


class LookupFailed(Exception):
    """The lookup could not be completed now (SERVFAIL, timeout, no name server)."""


class DNSBackend(Protocol):
    """The DNS queries the resolver needs.

    Both return an empty list when the name exists without records of that type, raise
    :class:`DomainNotFound` for NXDOMAIN and :class:`LookupFailed` for temporary failures.
    """

    async def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs; the root exchange is ``"."``."""
        ...

    async def addresses(self, name: str, family: int) -> list[str]:
        """A (``family=4``) or AAAA (``family=6``) records as address strings."""
        ...


class DnspythonBackend:
    """:class:`DNSBackend` over ``dns.asyncresolver``."""

    def __init__(self, resolver: dns.asyncresolver.Resolver | None = None) -> None:
        self.resolver = resolver if resolver is not None else dns.asyncresolver.Resolver()

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[object]:
        try:
            answer = await self.resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN as exc:
            raise DomainNotFound(name) from exc
        except dns.resolver.NoAnswer:
            return []
        except dns.resolver.YXDOMAIN as exc:  # name too long after DNAME substitution
            raise DomainNotFound(name) from exc
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise LookupFailed(f"{name}: {exc}") from exc
        except dns.exception.DNSException as exc:
            # Anything else (a bad name, a malformed answer): not worth a bounce.
            raise LookupFailed(f"{name}: {exc}") from exc
        return list(answer)

    async def mx(self, name: str) -> list[tuple[int, str]]:
        records = await self._query(name, dns.rdatatype.MX)
        result: list[tuple[int, str]] = []
        for rdata in records:
            preference = int(getattr(rdata, "preference", 0))
            exchange = getattr(rdata, "exchange", dns.name.root)
            result.append((preference, exchange.to_text(omit_final_dot=False)))
        return result

    async def addresses(self, name: str, family: int) -> list[str]:
        rdtype = dns.rdatatype.A if family == 4 else dns.rdatatype.AAAA
        return [str(getattr(rdata, "address", "")) for rdata in await self._query(name, rdtype)]


def _norm(name: str) -> str:
    name = name.strip().lower()
    return name if name == "." else name.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Resolver:
    """Finds the hosts to deliver to (see the module docstring for the rules)."""

    def __init__(
        self,
        backend: DNSBackend | None = None,
        *,
        local_names: frozenset[str] = frozenset(),
        rng: random.Random | None = None,
    ) -> None:
        self.backend: DNSBackend = backend if backend is not None else DnspythonBackend()
        self.local_names = frozenset(_norm(name) for name in local_names)
        self.rng = rng if rng is not None else random.Random()

    async def _lookup_addresses(self, host: str) -> tuple[str, ...]:
        """A then AAAA; DomainNotFound if the name does not exist, LookupFailed if unknown."""
        results = await asyncio.gather(
            self.backend.addresses(host, 4),
            self.backend.addresses(host, 6),
            return_exceptions=True,
        )
        addresses: list[str] = []
        failure: BaseException | None = None
        for result in results:
            if isinstance(result, DomainNotFound):
                raise result
            if isinstance(result, BaseException):
                failure = result
            else:
                addresses.extend(result)
        if not addresses and failure is not None:
            if isinstance(failure, LookupFailed):
                raise failure
            raise LookupFailed(f"{host}: {failure}") from failure
        return tuple(dict.fromkeys(addresses))

    async def host_addresses(self, host: str) -> list[MailHost]:
        """A host used literally (relay, static route, address literal): one MailHost."""
        host = _norm(host)
        if _is_ip(host):
            return [MailHost(host, 0, (host,))]
        try:
            addresses = await self._lookup_addresses(host)
        except DomainNotFound:
            raise MailError("4.4.4", f"next hop {host} does not exist in the DNS") from None
        except LookupFailed as exc:
            raise MailError("4.4.3", f"DNS lookup failed for {host}: {exc}") from None
        if not addresses:
            raise MailError("4.4.4", f"next hop {host} has no addresses")
        return [MailHost(host, 0, addresses)]

    async def mail_hosts(self, domain: str) -> list[MailHost]:
        """The mail hosts of ``domain`` in the order to try them; raises MailError."""
        domain = _norm(domain)
        if not domain or domain == ".":
            raise MailError("5.1.2", "empty recipient domain")
        try:
            records = await self.backend.mx(domain)
        except DomainNotFound:
            raise MailError("5.1.2", f"domain {domain} does not exist") from None
        except LookupFailed as exc:
            raise MailError("4.4.3", f"DNS lookup of MX for {domain} failed: {exc}") from None
        if not records:
            return await self._implicit_mx(domain)
        exchanges = [(pref, _norm(host)) for pref, host in records]
        real = [(pref, host) for pref, host in exchanges if host != "."]
        if not real:
            raise MailError("5.1.10", f"domain {domain} does not accept mail (null MX)")
        ordered = self._order(real)
        ordered = self._drop_self(domain, ordered)
        results = await asyncio.gather(
            *(self._lookup_addresses(host) for _, host in ordered), return_exceptions=True
        )
        hosts: list[MailHost] = []
        temporary: list[str] = []
        for (pref, host), result in zip(ordered, results, strict=True):
            if isinstance(result, tuple):
                if result:
                    hosts.append(MailHost(host, pref, result))
            elif isinstance(result, DomainNotFound):
                continue
            elif isinstance(result, Exception):
                temporary.append(f"{host}: {result}")
            else:
                raise result
        if hosts:
            return hosts
        if temporary:
            raise MailError("4.4.3", "DNS lookup of mail hosts failed: " + "; ".join(temporary))
        raise MailError("4.4.4", f"no mail host of {domain} has an address")

    async def _implicit_mx(self, domain: str) -> list[MailHost]:
        try:
            addresses = await self._lookup_addresses(domain)
        except DomainNotFound:
            raise MailError("5.1.2", f"domain {domain} does not exist") from None
        except LookupFailed as exc:
            raise MailError("4.4.3", f"DNS lookup of {domain} failed: {exc}") from None
        if not addresses:
            raise MailError("5.1.2", f"domain {domain} has no mail exchanger and no address")
        if domain in self.local_names:
            raise MailError("5.4.6", f"mail for {domain} loops back to myself")
        return [MailHost(domain, 0, addresses)]

    def _order(self, records: list[tuple[int, str]]) -> list[tuple[int, str]]:
        unique = list(dict.fromkeys(records))
        self.rng.shuffle(unique)
        unique.sort(key=lambda record: record[0])  # stable: keeps the shuffle within a level
        seen: set[str] = set()
        ordered: list[tuple[int, str]] = []
        for pref, host in unique:  # a host listed twice keeps its best preference
            if host not in seen:
                seen.add(host)
                ordered.append((pref, host))
        return ordered

    def _drop_self(self, domain: str, ordered: list[tuple[int, str]]) -> list[tuple[int, str]]:
        own = [pref for pref, host in ordered if host in self.local_names]
        if not own:
            return ordered
        kept = [(pref, host) for pref, host in ordered if pref < min(own)]
        if not kept:
            raise MailError("5.4.6", f"mail for {domain} loops back to myself (MX problem?)")
        return kept
