"""Next-hop routing: every role x forwarding mode x domain class, static routes, host specs."""

from __future__ import annotations

import pytest

from posthouse.mta.routing import NextHop, RoutingSettings, parse_host_spec, route

HOST = "host1.nyc.big.com"  # this host's own name
LOCAL = "nyc.big.com"  # a local domain (domain-based addressing)
SUBLOCAL = "sales.nyc.big.com"  # below a local domain, not itself local
TOP = "la.big.com"  # inside the top domain, outside the local domain
OUTSIDE = "example.org"
DOMAINS = {"host": HOST, "local": LOCAL, "sublocal": SUBLOCAL, "top": TOP, "outside": OUTSIDE}

RELAY = NextHop("relay.big.com", 25, True, "")
DIRECT = "MX"
HERE = None

# forwarding -> domain class -> expected ("MX" = direct delivery, RELAY, None = here)
SERVER_TABLE: dict[str, dict[str, object]] = {
    "none": {"host": HERE, "local": HERE, "sublocal": DIRECT, "top": DIRECT, "outside": DIRECT},
    "internet": {"host": HERE, "local": HERE, "sublocal": DIRECT, "top": DIRECT, "outside": RELAY},
    "nonlocal": {"host": HERE, "local": HERE, "sublocal": DIRECT, "top": RELAY, "outside": RELAY},
    "local": {"host": RELAY, "local": RELAY, "sublocal": RELAY, "top": RELAY, "outside": RELAY},
}


def settings(**overrides: object) -> RoutingSettings:
    values: dict[str, object] = {
        "role": "server",
        "mail_server": "",
        "top_domain": "big.com",
        "local_domains": frozenset({LOCAL}),
        "forwarding": "none",
        "relay_host": "relay.big.com",
        "static_routes": {},
        "host_names": frozenset({HOST}),
    }
    values.update(overrides)
    return RoutingSettings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["standalone", "server"])
@pytest.mark.parametrize("forwarding", sorted(SERVER_TABLE))
@pytest.mark.parametrize("domain_class", sorted(DOMAINS))
def test_servers_and_standalone_hosts(role: str, forwarding: str, domain_class: str) -> None:
    domain = DOMAINS[domain_class]
    hop = route(domain, settings(role=role, forwarding=forwarding))
    expected = SERVER_TABLE[forwarding][domain_class]
    if expected is HERE:
        assert hop is None
    elif expected == DIRECT:
        assert hop == NextHop(domain, 25, True, "MX", configured=False)
    else:
        assert hop is not None
        assert (hop.host, hop.port, hop.use_mx) == ("relay.big.com", 25, True)
        assert hop.reason == f"relay (forwarding={forwarding})"


@pytest.mark.parametrize("forwarding", sorted(SERVER_TABLE))
@pytest.mark.parametrize("domain_class", sorted(DOMAINS))
def test_clients_send_everything_but_their_own_mail_to_the_server(
    forwarding: str, domain_class: str
) -> None:
    cfg = settings(role="client", mail_server="big.com", forwarding=forwarding, top_domain="")
    hop = route(DOMAINS[domain_class], cfg)
    if domain_class == "host":
        assert hop is None
    else:
        assert hop == NextHop("big.com", 25, True, "mail server (role=client)")


def test_client_mail_server_may_be_a_literal_host_with_port() -> None:
    cfg = settings(role="client", mail_server="[mail.big.com]:587")
    assert route(OUTSIDE, cfg) == NextHop("mail.big.com", 587, False, "mail server (role=client)")


def test_internet_forwarding_without_top_domain_keeps_only_local_domains_inside() -> None:
    cfg = settings(role="standalone", forwarding="internet", top_domain="")
    assert route(SUBLOCAL, cfg) == NextHop(SUBLOCAL, 25, True, "MX", configured=False)
    assert route(TOP, cfg) is not None and route(TOP, cfg).host == "relay.big.com"  # type: ignore[union-attr]


def test_top_domain_itself_is_inside() -> None:
    cfg = settings(forwarding="internet")
    assert route("big.com", cfg) == NextHop("big.com", 25, True, "MX", configured=False)
    assert route("notbig.com", cfg) is not None
    assert route("notbig.com", cfg).host == "relay.big.com"  # type: ignore[union-attr]


def test_domains_are_compared_case_insensitively_without_trailing_dot() -> None:
    cfg = settings()
    assert route("NYC.Big.COM.", cfg) is None
    assert route("Example.ORG.", cfg) == NextHop("example.org", 25, True, "MX", configured=False)


def test_relay_host_forms() -> None:
    assert route(OUTSIDE, settings(forwarding="nonlocal", relay_host="[10.0.0.1]:2525")) == (
        NextHop("10.0.0.1", 2525, False, "relay (forwarding=nonlocal)")
    )
    assert route(OUTSIDE, settings(forwarding="nonlocal", relay_host="127.0.0.1:2525")) == (
        NextHop("127.0.0.1", 2525, False, "relay (forwarding=nonlocal)")
    )
    assert route(OUTSIDE, settings(forwarding="nonlocal", relay_host="smart.isp.test")) == (
        NextHop("smart.isp.test", 25, True, "relay (forwarding=nonlocal)")
    )


def test_address_literal_domains() -> None:
    cfg = settings(host_names=frozenset({HOST, "[192.0.2.7]"}))
    assert route("[192.0.2.7]", cfg) is None
    assert route("[192.0.2.8]", cfg) == NextHop(
        "192.0.2.8", 25, False, "address literal", configured=False
    )
    assert route("[IPv6:2001:db8::1]", cfg) == NextHop(
        "2001:db8::1", 25, False, "address literal", configured=False
    )
    relayed = route("[192.0.2.8]", settings(forwarding="internet"))
    assert relayed is not None and relayed.host == "relay.big.com"


# -- static routes ------------------------------------------------------------------------

ROUTES = {
    "special.example.org": "127.0.0.1:2001",
    ".example.org": "127.0.0.1:2002",
    ".deep.example.org": "[gw.deep.test]:2003",
    "*": "fallback.test:2004",
}


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        (
            "special.example.org",
            NextHop("127.0.0.1", 2001, False, "static route (special.example.org)"),
        ),
        ("a.special.example.org", NextHop("127.0.0.1", 2002, False, "static route (.example.org)")),
        ("x.example.org", NextHop("127.0.0.1", 2002, False, "static route (.example.org)")),
        (
            "a.b.deep.example.org",
            NextHop("gw.deep.test", 2003, False, "static route (.deep.example.org)"),
        ),
        ("example.org", NextHop("fallback.test", 2004, False, "static route (*)")),
        ("elsewhere.test", NextHop("fallback.test", 2004, False, "static route (*)")),
    ],
)
def test_static_route_precedence(domain: str, expected: NextHop) -> None:
    assert route(domain, settings(static_routes=ROUTES)) == expected


@pytest.mark.parametrize("forwarding", ["none", "internet", "nonlocal"])
def test_static_routes_override_relays_but_never_capture_local_mail(forwarding: str) -> None:
    cfg = settings(forwarding=forwarding, static_routes={"*": "127.0.0.1:2525"})
    assert route(LOCAL, cfg) is None
    assert route(HOST, cfg) is None
    assert route(OUTSIDE, cfg) == NextHop("127.0.0.1", 2525, False, "static route (*)")


def test_static_routes_apply_to_local_domains_when_everything_is_forwarded() -> None:
    cfg = settings(forwarding="local", static_routes={LOCAL: "127.0.0.1:2525"})
    assert route(LOCAL, cfg) == NextHop("127.0.0.1", 2525, False, f"static route ({LOCAL})")
    assert route(OUTSIDE, cfg) is not None
    assert route(OUTSIDE, cfg).host == "relay.big.com"  # type: ignore[union-attr]


def test_static_routes_override_a_clients_mail_server() -> None:
    cfg = settings(role="client", mail_server="big.com", static_routes={".test": "127.0.0.1:9"})
    assert route("a.test", cfg) == NextHop("127.0.0.1", 9, False, "static route (.test)")
    assert route(OUTSIDE, cfg) == NextHop("big.com", 25, True, "mail server (role=client)")


def test_static_route_keys_are_normalised() -> None:
    cfg = settings(static_routes={"Example.ORG.": "127.0.0.1:1"})
    assert route("example.org", cfg) == NextHop("127.0.0.1", 1, False, "static route (example.org)")


# -- host specifications and validation ---------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("mail.example.org", ("mail.example.org", 25, True)),
        ("Mail.Example.org.", ("mail.example.org", 25, True)),
        ("mail.example.org:587", ("mail.example.org", 587, True)),
        ("[mail.example.org]", ("mail.example.org", 25, False)),
        ("[mail.example.org]:2525", ("mail.example.org", 2525, False)),
        ("127.0.0.1", ("127.0.0.1", 25, False)),
        ("127.0.0.1:2525", ("127.0.0.1", 2525, False)),
        ("[1.2.3.4]:26", ("1.2.3.4", 26, False)),
        ("[::1]:2525", ("::1", 2525, False)),
        ("[IPv6:2001:db8::1]", ("2001:db8::1", 25, False)),
        ("2001:db8::1", ("2001:db8::1", 25, False)),
    ],
)
def test_parse_host_spec(spec: str, parsed: tuple[str, int, bool]) -> None:
    assert parse_host_spec(spec) == parsed


@pytest.mark.parametrize(
    "spec", ["", "   ", "[unclosed", "[h]x", "host:", "host:0", "host:70000", "host:ab", "a b"]
)
def test_bad_host_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_host_spec(spec)


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="mail_server"):
        settings(role="client", mail_server="")
    with pytest.raises(ValueError, match="relay_host"):
        settings(forwarding="internet", relay_host="")
    with pytest.raises(ValueError):
        settings(static_routes={"x.test": "host:notaport"})
    # a client ignores forwarding, so it needs no relay
    settings(role="client", mail_server="big.com", forwarding="local", relay_host="")
    # no forwarding: no relay needed
    settings(forwarding="none", relay_host="")


def test_hop_key_ignores_case_and_reason() -> None:
    assert NextHop("MX.test", 25, True, "a").key == NextHop("mx.test", 25, True, "b").key
    assert NextHop("mx.test", 25, True).key != NextHop("mx.test", 25, False).key
