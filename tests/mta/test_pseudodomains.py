"""Tests for posthouse.mta.pseudodomains: gateway pseudodomain address mapping."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from posthouse.mta.pseudodomains import (
    DEFAULT_NAMES,
    AddressError,
    AddressMapper,
    NativeAddress,
    Protocol,
    Pseudodomain,
    quote_local,
)

DNET = Pseudodomain("decnet", "DNET", aliases=("DECNET",), top_domain="big.com")
DNA = Pseudodomain("decnet-osi", "DNA", aliases=("OSI",), top_domain="big.com")
UUCP = Pseudodomain("uucp", "UUCP", aliases=("BANG",))
MTS = Pseudodomain("mts", "MTS", top_domain="big.com", routing="relay", relay_host="gw.big.com")
X25 = Pseudodomain("x25", "X25", top_domain="big.com", routing="direct", transport="/bin/x")
ALL = (DNET, DNA, UUCP, MTS, X25)
MAPPER = AddressMapper(ALL)
EMPTY = AddressMapper([])


# -- Pseudodomain --------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "name"), sorted(DEFAULT_NAMES.items()))
def test_empty_name_takes_the_protocol_default(protocol: Protocol, name: str) -> None:
    assert Pseudodomain(protocol).name == name


@pytest.mark.parametrize(
    ("pd", "suffix", "domains"),
    [
        (DNET, "DNET.big.com", ("dnet.big.com", "dnet", "decnet.big.com", "decnet")),
        (UUCP, "UUCP", ("uucp", "bang")),
        (Pseudodomain("mts", "Mts", top_domain="Big.COM."), "Mts.big.com", ("mts.big.com", "mts")),
        (Pseudodomain("uucp", "UUCP", aliases=("uucp",)), "UUCP", ("uucp",)),
    ],
)
def test_suffix_and_accepted_domains(pd: Pseudodomain, suffix: str, domains: tuple[str]) -> None:
    assert pd.suffix == suffix
    assert pd.domains == domains


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "smtp"}, "unknown gateway protocol"),
        ({"protocol": "decnet", "name": "D NET"}, "not a domain name"),
        ({"protocol": "decnet", "name": "DNET."}, "not a domain name"),
        ({"protocol": "decnet", "aliases": ("ok", "bad!")}, "not a domain name"),
        ({"protocol": "decnet", "top_domain": "big..com"}, "top domain"),
        ({"protocol": "decnet", "routing": "carrier-pigeon"}, "unknown routing"),
        ({"protocol": "decnet", "routing": "relay"}, "needs a relay_host"),
        ({"protocol": "decnet", "relay_host": "gw"}, "only used with routing 'relay'"),
        ({"protocol": "uucp", "routing": "direct", "relay_host": "gw"}, "only used"),
    ],
)
def test_pseudodomain_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pseudodomain(**kwargs)  # type: ignore[arg-type]


def test_pseudodomain_keeps_routing_data() -> None:
    pd = Pseudodomain(
        "decnet",
        routing="direct",
        transport="/usr/bin/mail11 -f $sender $node $user",
    )
    assert pd.transport == "/usr/bin/mail11 -f $sender $node $user"
    assert MTS.relay_host == "gw.big.com"


@pytest.mark.parametrize(
    ("pds", "message"),
    [
        ((DNET, Pseudodomain("decnet", "OTHER")), "more than one pseudodomain"),
        ((DNET, Pseudodomain("decnet-osi", "DNET", top_domain="big.com")), "used by both"),
        ((DNET, Pseudodomain("decnet-osi", "dnet", top_domain="BIG.com")), "used by both"),
        ((DNET, Pseudodomain("mts", "X", aliases=("decnet",), top_domain="big.com")), "both"),
        ((UUCP, Pseudodomain("mts", "bang")), "used by both"),
    ],
)
def test_mapper_refuses_clashes(pds: tuple[Pseudodomain, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AddressMapper(pds)


def test_mapper_accessors() -> None:
    assert MAPPER.pseudodomains == ALL
    assert MAPPER.for_protocol("uucp") is UUCP
    assert EMPTY.for_protocol("uucp") is None


# -- classify ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("node.DNET.big.com", DNET),
        ("NODE.dnet.BIG.COM.", DNET),
        ("node.DECNET.big.com", DNET),
        ("node.dnet", DNET),
        ("node.site.ns.DNA.big.com", DNA),
        ("node.OSI.big.com", DNA),
        ("host.UUCP", UUCP),
        ("host.bang", UUCP),
        ("a.b.uucp", UUCP),
        ("host.MTS.big.com", MTS),
        ("12345.X25.big.com", X25),
        ("DNET.big.com", None),  # the pseudodomain itself is an ordinary name
        ("uucp", None),
        ("big.com", None),
        ("node.DNET.big.org", None),
        ("xdnet.big.com", None),
        ("example.org", None),
        ("", None),
    ],
)
def test_classify(domain: str, expected: Pseudodomain | None) -> None:
    assert MAPPER.classify(domain) is expected


def test_classify_prefers_the_longest_suffix() -> None:
    inner = Pseudodomain("decnet", "DNET", top_domain="gw.big.com")
    outer = Pseudodomain("mts", "gw", top_domain="big.com")
    mapper = AddressMapper([outer, inner])
    assert mapper.classify("node.DNET.gw.big.com") is inner
    assert mapper.classify("host.gw.big.com") is outer


def test_empty_mapper_classifies_nothing() -> None:
    assert EMPTY.classify("node.DNET.big.com") is None
    assert EMPTY.to_native("joe@node.DNET.big.com") is None


# -- to_internet ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("native", "internet"),
    [
        # DECnet Phase IV (12.1.6): nodename::username -> username@nodename.pseudodomain.top
        ("NODE::joe", "joe@NODE.DNET.big.com"),
        ("node::Joe.Smith", "Joe.Smith@node.DNET.big.com"),
        ("A::B::joe", '"B::joe"@A.DNET.big.com'),
        ("node::host!joe", "host!joe@node.DNET.big.com"),
        ("node::a/b", "a/b@node.DNET.big.com"),
        ("node::a:b", '"a:b"@node.DNET.big.com'),
        ("node::$user_1", "$user_1@node.DNET.big.com"),
        # DECnet/OSI (12.1.6): username@namespace:.site.nodename
        ("joe@ns:.site.node", "joe@node.site.ns.DNA.big.com"),
        ("joe@ACME:.Paris.VAX1", "joe@VAX1.Paris.ACME.DNA.big.com"),
        ("joe@ns:.node", "joe@node.ns.DNA.big.com"),
        ("joe@ns:.a.b.node", "joe@node.b.a.ns.DNA.big.com"),
        ("ns:.site.node::joe", "joe@node.site.ns.DNA.big.com"),
        ('"a b"@ns:.site.node', None),  # refused below (white space)
        # UUCP (RFC 976, mailaddr(7))
        ("host!joe", "joe@host.UUCP"),
        ("a!b!joe", "b!joe@a.UUCP"),
        ("a!b!c!joe", "b!c!joe@a.UUCP"),
        ("a!b::joe", '"b::joe"@a.UUCP'),
        ("host.domain!joe", "joe@host.domain"),
        ("host.domain!b!joe", "b!joe@host.domain"),
        ("node.DNET.big.com!joe", "joe@node.DNET.big.com"),  # no nesting
        ("a.UUCP!joe", "joe@a.UUCP"),  # no nesting
        # MTS and X.25: posthouse conventions
        ("host/joe", "joe@host.MTS.big.com"),
        ("h2/a/b", "a/b@h2.MTS.big.com"),
        ("31342/joe", "joe@31342.X25.big.com"),
        ("123456789012345/joe", "joe@123456789012345.X25.big.com"),
        # Leftmost separator picks the protocol
        ("host/a!b", "a!b@host.MTS.big.com"),
        ("123/a::b", '"a::b"@123.X25.big.com'),
        # Already Internet form, or no separator: unchanged
        ("", ""),
        ("joe", "joe"),
        ("joe@example.org", "joe@example.org"),
        ("joe@node.DNET.big.com", "joe@node.DNET.big.com"),
        ('"B::joe"@A.DNET.big.com', '"B::joe"@A.DNET.big.com'),
        ("b!joe@a.UUCP", "b!joe@a.UUCP"),
        ("a!b@c.d", "a!b@c.d"),  # RFC 976: (a!b)@c.d
        ("node::joe@c.d", "node::joe@c.d"),
        ("joe@[IPv6:2001:db8::1]", "joe@[IPv6:2001:db8::1]"),
    ],
)
def test_to_internet(native: str, internet: str | None) -> None:
    if internet is None:
        with pytest.raises(AddressError):
            MAPPER.to_internet(native)
    else:
        assert MAPPER.to_internet(native) == internet


@pytest.mark.parametrize(
    ("native", "message"),
    [
        ("::joe", "empty node"),
        ("node::", "empty user"),
        ("::", "empty node"),
        ("node::a::::b", "empty hop"),
        ("no de::joe", "not a valid node"),
        ("-node::joe", "not a valid node"),
        ("32.958::joe", "not a valid node"),
        ("node::a b", "white space"),
        ('node::"joe"', "quote"),
        ("!joe", "empty host"),
        ("!!", "empty host"),
        ("host!", "empty user"),
        ("a!!joe", "empty hop"),
        ("a!b!", "empty hop"),
        ("host_!joe", "not a valid host"),
        ("a..b!joe", "not a host or domain"),
        ("a.b!", "empty user"),
        ("/joe", "empty"),
        ("host/", "empty user"),
        ("1host/joe", "starting with a letter"),
        ("1234567890123456/joe", "1-15 digits"),
        ("ns:site.node::joe", "namespace:.site.nodename"),
        (":.site.node::joe", "namespace:.site.nodename"),
        ("ns:.site..node::joe", "bad component"),
        ("ns:.::joe", "bad component"),
        ("joe@ns:.site.", "bad component"),
        ("joe@ns:", "namespace:.site.nodename"),
        ("@ns:.site.node", "empty user"),
        ("a@b@ns:.site.node", "'@'"),
    ],
)
def test_to_internet_refuses_malformed(native: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        MAPPER.to_internet(native)


def test_address_error_is_a_value_error() -> None:
    assert issubclass(AddressError, ValueError)


@pytest.mark.parametrize(
    "native",
    ["NODE::joe", "joe@ns:.site.node", "ns:.site.node::joe", "host!joe", "h/joe", "1/joe"],
)
def test_unconfigured_protocols_are_left_alone(native: str) -> None:
    assert EMPTY.to_internet(native) == native


def test_dotted_bang_path_is_converted_without_a_uucp_gateway() -> None:
    assert EMPTY.to_internet("host.domain!joe") == "joe@host.domain"


def test_x25_and_mts_are_told_apart_by_the_hop() -> None:
    only_mts = AddressMapper([MTS])
    assert only_mts.to_internet("123/joe") == "123/joe"  # X.25 syntax, no X.25 gateway
    assert only_mts.to_internet("host/joe") == "joe@host.MTS.big.com"


def test_unqualified_pseudodomain_without_top_domain() -> None:
    mapper = AddressMapper([Pseudodomain("decnet", "DNET")])
    assert mapper.to_internet("NODE::joe") == "joe@NODE.DNET"


# -- to_native -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("internet", "expected"),
    [
        ("joe@NODE.DNET.big.com", ("decnet", DNET, "NODE::joe", "NODE", "joe")),
        ("joe@node.dnet.BIG.COM.", ("decnet", DNET, "node::joe", "node", "joe")),
        ("joe@node.DECNET.big.com", ("decnet", DNET, "node::joe", "node", "joe")),
        ("joe@node.DNET", ("decnet", DNET, "node::joe", "node", "joe")),
        ('"B::joe"@A.DNET.big.com', ("decnet", DNET, "A::B::joe", "A", "B::joe")),
        ("Joe.Smith@n.DNET.big.com", ("decnet", DNET, "n::Joe.Smith", "n", "Joe.Smith")),
        (
            "joe@node.site.ns.DNA.big.com",
            ("decnet-osi", DNA, "joe@ns:.site.node", "ns:.site.node", "joe"),
        ),
        ("joe@node.ns.OSI.big.com", ("decnet-osi", DNA, "joe@ns:.node", "ns:.node", "joe")),
        ("joe@n.c.b.a.DNA.big.com", ("decnet-osi", DNA, "joe@a:.b.c.n", "a:.b.c.n", "joe")),
        ("joe@host.UUCP", ("uucp", UUCP, "host!joe", "host", "joe")),
        ("b!joe@a.uucp", ("uucp", UUCP, "a!b!joe", "a", "b!joe")),
        ("joe@host.BANG", ("uucp", UUCP, "host!joe", "host", "joe")),
        ("joe@host.MTS.big.com", ("mts", MTS, "host/joe", "host", "joe")),
        ("joe@31342.X25.big.com", ("x25", X25, "31342/joe", "31342", "joe")),
    ],
)
def test_to_native(internet: str, expected: tuple[str, Pseudodomain, str, str, str]) -> None:
    assert MAPPER.to_native(internet) == NativeAddress(*expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address",
    ["", "joe", "joe@example.org", "joe@DNET.big.com", "joe@uucp", "joe@node.DNET.big.org"],
)
def test_to_native_outside_pseudodomains(address: str) -> None:
    assert MAPPER.to_native(address) is None


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("joe@a.b.DNET.big.com", "exactly one node"),
        ("joe@a.b.UUCP", "exactly one host"),
        ("joe@a.b.MTS.big.com", "exactly one host"),
        ("joe@ns.DNA.big.com", "node\\[.site...\\].namespace"),
        ("joe@a_.ns.DNA.big.com", "node\\[.site...\\].namespace"),
        ("joe@1host.MTS.big.com", "starting with a letter"),
        ("joe@12a.X25.big.com", "1-15 digits"),
        ("joe@-x.DNET.big.com", "not a valid node"),
        ("@node.DNET.big.com", "empty user"),
        ('""@node.DNET.big.com', "empty user"),
        ('"a@b"@node.DNET.big.com', "'@'"),
        ('"a b"@host.UUCP', "white space"),
        ('"a\\"b"@host.UUCP', "quote"),
        ('"b!!joe"@a.UUCP', "empty hop"),
        ('"b::"@a.DNET.big.com', "empty hop"),
        ("a//b@host.MTS.big.com", "empty hop"),
    ],
)
def test_to_native_refuses_unmappable(address: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        MAPPER.to_native(address)


# -- quote_local ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "quoted"),
    [
        ("joe", "joe"),
        ("joe.smith", "joe.smith"),
        ("b!c!joe", "b!c!joe"),
        ("a/b", "a/b"),
        ("b::joe", '"b::joe"'),
        (".joe", '".joe"'),
        ("joe.", '"joe."'),
        ("a..b", '"a..b"'),
        ("a b", '"a b"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("", '""'),
    ],
)
def test_quote_local(local: str, quoted: str) -> None:
    assert quote_local(local) == quoted


# -- properties ----------------------------------------------------------------------------

_node = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,5}", fullmatch=True)
_label = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_mts_host = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,8}[A-Za-z0-9]", fullmatch=True)
_dte = st.from_regex(r"[0-9]{1,15}", fullmatch=True)
_user_chars = st.sampled_from("abcXYZ019._-$%+=!/:'&*#?^{}|~`")
_raw_user = st.text(_user_chars, min_size=1, max_size=20)

_SEP: dict[str, str] = {"decnet": "::", "decnet-osi": "::", "uucp": "!", "mts": "/", "x25": "/"}


def _user_for(protocol: str) -> st.SearchStrategy[str]:
    sep = _SEP[protocol]
    return _raw_user.filter(lambda u: all(u.split(sep)))


@st.composite
def natives(draw: st.DrawFn) -> tuple[str, str]:
    """A well-formed native address of a random protocol, with its protocol."""
    protocol = draw(st.sampled_from(["decnet", "decnet-osi", "uucp", "mts", "x25"]))
    user = draw(_user_for(protocol))
    if protocol == "decnet":
        return protocol, f"{draw(_node)}::{user}"
    if protocol == "decnet-osi":
        path = draw(st.lists(_label, min_size=1, max_size=3))
        return protocol, f"{user}@{draw(_label)}:.{'.'.join(path)}"
    if protocol == "uucp":
        return protocol, f"{draw(_node)}!{user}"
    if protocol == "mts":
        return protocol, f"{draw(_mts_host)}/{user}"
    return protocol, f"{draw(_dte)}/{user}"


@given(natives())
def test_native_round_trip(case: tuple[str, str]) -> None:
    protocol, native = case
    internet = MAPPER.to_internet(native)
    mapped = MAPPER.to_native(internet)
    assert mapped is not None
    assert mapped.protocol == protocol
    assert mapped.native == native
    assert native.startswith(mapped.next_hop) or native.endswith(mapped.next_hop)


@given(natives())
def test_to_internet_never_nests(case: tuple[str, str]) -> None:
    internet = MAPPER.to_internet(case[1])
    assert MAPPER.to_internet(internet) == internet
    assert internet.count(".DNET.") + internet.count(".DNA.") + internet.count(".MTS.") <= 1


@st.composite
def internets(draw: st.DrawFn) -> str:
    """A canonical Internet-form address inside one of MAPPER's pseudodomains."""
    protocol = draw(st.sampled_from(["decnet", "decnet-osi", "uucp", "mts", "x25"]))
    user = quote_local(draw(_user_for(protocol)))
    pd = MAPPER.for_protocol(protocol)
    assert pd is not None
    if protocol == "decnet-osi":
        labels = draw(st.lists(_label, min_size=2, max_size=4))
        return f"{user}@{'.'.join(labels)}.{pd.suffix}"
    hop = {"decnet": _node, "uucp": _node, "mts": _mts_host, "x25": _dte}[protocol]
    return f"{user}@{draw(hop)}.{pd.suffix}"


@given(internets())
def test_internet_round_trip(internet: str) -> None:
    mapped = MAPPER.to_native(internet)
    assert mapped is not None
    assert MAPPER.to_internet(mapped.native) == internet
    assert MAPPER.to_native(internet) == mapped


@given(
    st.text(max_size=30)
    | st.from_regex(
        r"[a-zA-Z0-9]{1,6}(::|!|/)[a-zA-Z0-9!:./]{1,10}(@[a-z.]{1,10})?", fullmatch=True
    )
)
@example(".!")  # host.domain!user with an empty host: refused even without pseudodomains
@example("a.b!joe")
def test_arbitrary_text_maps_or_fails_cleanly(text: str) -> None:
    """Any text either maps, consistently, or raises AddressError (never anything else)."""
    # Without pseudodomains nothing is a gateway address: a text is left as it is, except
    # host.domain!user, which is user@host.domain on every host (mailaddr(7)), or refused.
    try:
        plain = EMPTY.to_internet(text)
    except AddressError:
        assert "!" in text
    else:
        assert plain == text or ("!" in text and EMPTY.to_native(plain) is None)
    try:
        internet = MAPPER.to_internet(text)
    except AddressError:
        pass
    else:
        assert MAPPER.to_internet(internet) == internet  # the Internet form is a fixed point
        if internet != text:
            native = MAPPER.to_native(internet)
            if native is None:
                # host.domain!user -> user@host.domain: an Internet address on every host.
                assert "!" in text and internet == EMPTY.to_internet(text)
            else:
                # What was mapped lands in a pseudodomain and maps back to the same place.
                assert native.pseudodomain in ALL
                assert MAPPER.to_internet(native.native) == internet
    try:
        found = MAPPER.to_native(text)
    except AddressError:
        return
    if found is not None:
        assert found.pseudodomain in ALL and found.protocol == found.pseudodomain.protocol
        assert found.native and found.next_hop


def test_pseudodomain_aliases_become_the_canonical_name() -> None:
    mapper = AddressMapper([Pseudodomain("decnet", "DNET", ("DECNET", "DN"), top_domain="big.com")])
    assert mapper.canonical("smith@VAXA.DECNET.big.com") == "smith@VAXA.DNET.big.com"
    assert mapper.canonical("smith@vaxa.dn") == "smith@vaxa.DNET.big.com"
    assert mapper.canonical("smith@VAXA.DNET") == "smith@VAXA.DNET.big.com"
    assert mapper.canonical("smith@vaxa.dnet.big.com") == "smith@vaxa.dnet.big.com"
    assert mapper.canonical("joe@example.org") == "joe@example.org"
    assert mapper.canonical("postmaster") == "postmaster"
