"""Mail host lookup: MX order and shuffling, implicit MX, null MX, failures; dnspython mapping."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from typing import cast

import dns.asyncresolver
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from posthouse.mta.dns import (
    DnspythonBackend,
    DomainNotFound,
    LookupFailed,
    MailHost,
    Resolver,
)
from posthouse.mta.errors import MailError
from tests.mta.smtp_sink import FakeDNS


def hosts(resolver: Resolver, domain: str) -> list[MailHost]:
    return asyncio.run(resolver.mail_hosts(domain))


def error_of(resolver: Resolver, domain: str) -> MailError:
    with pytest.raises(MailError) as info:
        hosts(resolver, domain)
    return info.value


def test_mx_records_are_tried_by_preference() -> None:
    fake = FakeDNS(
        mx={"example.test": [(30, "c.example.test."), (10, "a.example.test."), (20, "b.mx.test")]},
        a={
            "a.example.test": ["192.0.2.1"],
            "b.mx.test": ["192.0.2.2"],
            "c.example.test": ["192.0.2.3"],
        },
        aaaa={"a.example.test": ["2001:db8::1"]},
    )
    result = hosts(Resolver(fake), "Example.Test.")
    assert result == [
        MailHost("a.example.test", 10, ("192.0.2.1", "2001:db8::1")),
        MailHost("b.mx.test", 20, ("192.0.2.2",)),
        MailHost("c.example.test", 30, ("192.0.2.3",)),
    ]


def test_equal_preferences_are_shuffled_but_never_reordered_across_levels() -> None:
    names = ["m1.test", "m2.test", "m3.test"]
    fake = FakeDNS(
        mx={"example.test": [(10, n) for n in names] + [(5, "first.test"), (50, "last.test")]},
        a={n: ["192.0.2.9"] for n in [*names, "first.test", "last.test"]},
    )
    orders = set()
    for seed in range(40):
        result = hosts(Resolver(fake, rng=random.Random(seed)), "example.test")
        assert result[0].host == "first.test" and result[-1].host == "last.test"
        assert [h.preference for h in result] == [5, 10, 10, 10, 50]
        orders.add(tuple(h.host for h in result[1:4]))
    assert len(orders) > 1  # all 6 permutations are possible; 40 seeds give several


def test_no_mx_means_implicit_mx_on_the_domain_itself() -> None:
    fake = FakeDNS(a={"example.test": ["192.0.2.5"]}, aaaa={"example.test": ["2001:db8::5"]})
    assert hosts(Resolver(fake), "example.test") == [
        MailHost("example.test", 0, ("192.0.2.5", "2001:db8::5"))
    ]


def test_null_mx_is_a_permanent_refusal() -> None:
    fake = FakeDNS(mx={"nomail.test": [(0, ".")]}, a={"nomail.test": ["192.0.2.5"]})
    error = error_of(Resolver(fake), "nomail.test")
    assert error.status == "5.1.10" and not error.temporary


def test_null_mx_mixed_with_real_records_is_ignored() -> None:
    fake = FakeDNS(
        mx={"odd.test": [(0, "."), (10, "mx.odd.test")]}, a={"mx.odd.test": ["192.0.2.1"]}
    )
    assert hosts(Resolver(fake), "odd.test") == [MailHost("mx.odd.test", 10, ("192.0.2.1",))]


def test_nxdomain_is_permanent() -> None:
    error = error_of(Resolver(FakeDNS()), "nowhere.test")
    assert error.status == "5.1.2" and not error.temporary


def test_domain_without_mx_or_address_is_permanent() -> None:
    fake = FakeDNS(aaaa={"bare.test": []})  # the name exists, with no records we want
    assert error_of(Resolver(fake), "bare.test").status == "5.1.2"


def test_servfail_on_mx_is_temporary() -> None:
    fake = FakeDNS(mx={"broken.test": LookupFailed("SERVFAIL")})
    error = error_of(Resolver(fake), "broken.test")
    assert error.status == "4.4.3" and error.temporary


def test_servfail_on_implicit_mx_addresses_is_temporary() -> None:
    fake = FakeDNS(
        a={"flaky.test": LookupFailed("timeout")}, aaaa={"flaky.test": LookupFailed("x")}
    )
    assert error_of(Resolver(fake), "flaky.test").status == "4.4.3"


def test_one_address_family_failing_does_not_hide_the_other() -> None:
    fake = FakeDNS(a={"half.test": ["192.0.2.1"]}, aaaa={"half.test": LookupFailed("timeout")})
    assert hosts(Resolver(fake), "half.test") == [MailHost("half.test", 0, ("192.0.2.1",))]


def test_mx_hosts_without_addresses_are_skipped() -> None:
    fake = FakeDNS(
        mx={
            "example.test": [
                (10, "gone.test"),
                (20, "empty.test"),
                (30, "flaky.test"),
                (40, "ok.test"),
            ]
        },
        a={"empty.test": [], "flaky.test": LookupFailed("timeout"), "ok.test": ["192.0.2.4"]},
        aaaa={"flaky.test": LookupFailed("timeout")},
    )
    assert hosts(Resolver(fake), "example.test") == [MailHost("ok.test", 40, ("192.0.2.4",))]


def test_mx_pointing_nowhere_is_temporary() -> None:
    fake = FakeDNS(
        mx={"example.test": [(10, "gone.test"), (20, "empty.test")]}, a={"empty.test": []}
    )
    error = error_of(Resolver(fake), "example.test")
    assert error.status == "4.4.4" and error.temporary


def test_mx_hosts_failing_temporarily_give_a_temporary_dns_error() -> None:
    fake = FakeDNS(
        mx={"example.test": [(10, "gone.test"), (20, "flaky.test")]},
        a={"flaky.test": LookupFailed("timeout")},
        aaaa={"flaky.test": LookupFailed("timeout")},
    )
    assert error_of(Resolver(fake), "example.test").status == "4.4.3"


def test_this_host_and_worse_mx_hosts_are_dropped() -> None:
    fake = FakeDNS(
        mx={"example.test": [(10, "backup.test"), (20, "me.test"), (30, "other.test")]},
        a={n: ["192.0.2.1"] for n in ("backup.test", "me.test", "other.test")},
    )
    resolver = Resolver(fake, local_names=frozenset({"Me.Test."}))
    assert [h.host for h in hosts(resolver, "example.test")] == ["backup.test"]


def test_being_the_best_mx_is_a_loop() -> None:
    fake = FakeDNS(
        mx={"example.test": [(10, "me.test"), (20, "other.test")]}, a={"me.test": ["1.2.3.4"]}
    )
    error = error_of(Resolver(fake, local_names=frozenset({"me.test"})), "example.test")
    assert error.status == "5.4.6"


def test_literal_hosts() -> None:
    fake = FakeDNS(a={"relay.test": ["192.0.2.1"]}, aaaa={"empty.test": []})
    resolver = Resolver(fake)
    assert asyncio.run(resolver.host_addresses("127.0.0.1")) == [
        MailHost("127.0.0.1", 0, ("127.0.0.1",))
    ]
    assert asyncio.run(resolver.host_addresses("relay.test.")) == [
        MailHost("relay.test", 0, ("192.0.2.1",))
    ]
    assert fake.queries == [("relay.test", "A"), ("relay.test", "AAAA")]  # never MX
    for name in ("unknown.test", "empty.test"):
        with pytest.raises(MailError) as info:
            asyncio.run(resolver.host_addresses(name))
        assert info.value.status == "4.4.4" and info.value.temporary


# -- the dnspython backend ----------------------------------------------------------------


class _StubResolver:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def resolve(self, *args: object, **kwargs: object) -> object:
        raise self.exc


def dns_error(kind: type[Exception], **kwargs: object) -> Exception:
    factory: Callable[..., Exception] = kind  # dnspython's constructors are untyped
    return factory(**kwargs)


@pytest.mark.parametrize(
    ("exc", "mapped"),
    [
        (dns_error(dns.resolver.NXDOMAIN), DomainNotFound),
        (dns_error(dns.resolver.NoNameservers), LookupFailed),
        (dns_error(dns.exception.Timeout), LookupFailed),
        (dns_error(dns.resolver.LifetimeTimeout, timeout=1.0, errors=[]), LookupFailed),
        (dns_error(dns.exception.SyntaxError), LookupFailed),
    ],
)
def test_dnspython_exceptions_are_mapped(exc: Exception, mapped: type[Exception]) -> None:
    backend = DnspythonBackend(cast(dns.asyncresolver.Resolver, _StubResolver(exc)))
    with pytest.raises(mapped):
        asyncio.run(backend.mx("example.test"))


def test_dnspython_no_answer_is_an_empty_list() -> None:
    stub = _StubResolver(dns_error(dns.resolver.NoAnswer))
    backend = DnspythonBackend(cast(dns.asyncresolver.Resolver, stub))
    assert asyncio.run(backend.addresses("example.test", 4)) == []


class _DNSServer(asyncio.DatagramProtocol):
    """A tiny authoritative-looking DNS server on 127.0.0.1 for the dnspython backend."""

    def __init__(
        self, records: dict[tuple[str, str], list[str]], rcodes: dict[str, dns.rcode.Rcode]
    ) -> None:
        self.records = records
        self.rcodes = rcodes
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        if name in self.rcodes:
            response.set_rcode(self.rcodes[name])
        elif (name, rdtype) in self.records:
            texts = self.records[(name, rdtype)]
            response.answer.append(dns.rrset.from_text_list(name, 300, "IN", rdtype, texts))
        elif not any(key[0] == name for key in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
def records() -> Iterator[dict[tuple[str, str], list[str]]]:
    yield {
        ("example.test.", "MX"): ["20 mx2.example.test.", "10 mx1.example.test."],
        ("mx1.example.test.", "A"): ["127.0.0.1"],
        ("mx2.example.test.", "AAAA"): ["::1"],
        ("nomx.test.", "A"): ["127.0.0.2"],
        ("null.test.", "MX"): ["0 ."],
    }


def test_dnspython_backend_against_a_local_server(
    records: dict[tuple[str, str], list[str]],
) -> None:
    async def scenario() -> list[object]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _DNSServer(records, {"servfail.test.": dns.rcode.SERVFAIL}),
            local_addr=("127.0.0.1", 0),
        )
        try:
            port = transport.get_extra_info("sockname")[1]
            stub = dns.asyncresolver.Resolver(configure=False)
            stub.nameservers = ["127.0.0.1"]
            stub.port = port
            stub.lifetime = 5.0
            resolver = Resolver(DnspythonBackend(stub), rng=random.Random(1))
            outcomes: list[object] = [
                await resolver.mail_hosts("example.test"),
                await resolver.mail_hosts("nomx.test"),
            ]
            for domain in ("null.test", "missing.test", "servfail.test"):
                try:
                    await resolver.mail_hosts(domain)
                except MailError as exc:
                    outcomes.append(exc.status)
            return outcomes
        finally:
            transport.close()

    outcomes = asyncio.run(scenario())
    assert outcomes == [
        [
            MailHost("mx1.example.test", 10, ("127.0.0.1",)),
            MailHost("mx2.example.test", 20, ("::1",)),
        ],
        [MailHost("nomx.test", 0, ("127.0.0.2",))],
        "5.1.10",
        "5.1.2",
        "4.4.3",
    ]
