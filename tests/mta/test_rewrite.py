"""Tests for posthouse.mta.rewrite: domain-based sender addresses (masquerading)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.mta import pseudodomains, rewrite
from posthouse.mta.address_fields import rewrite_header_section
from posthouse.mta.rewrite import (
    AddressMapper,
    MasqueradeSettings,
    Pseudodomain,
    masquerade_sender,
)

BIG = MasqueradeSettings("big.com", exceptions=("mail.big.com", "lab.big.com"))
NYC = ("nyc.big.com",)
MAPPER = AddressMapper([Pseudodomain("decnet", "DNET", top_domain="big.com")])


@pytest.mark.parametrize(
    ("address", "local_domains", "expected"),
    [
        # 12.1.2: joe@host1.nyc.big.com -> joe@nyc.big.com
        ("joe@host1.nyc.big.com", NYC, "joe@nyc.big.com"),
        ("Joe.Smith@HOST1.NYC.Big.Com", NYC, "Joe.Smith@nyc.big.com"),
        ("joe@host1.nyc.big.com.", NYC, "joe@nyc.big.com"),
        ("joe@a.b.nyc.big.com", NYC, "joe@nyc.big.com"),
        ("joe@host2.big.com", NYC, "joe@big.com"),
        ("joe@host9.sf.big.com", NYC, "joe@big.com"),
        ("joe@host9.sf.big.com", ("nyc.big.com", "sf.big.com"), "joe@sf.big.com"),
        ("joe@h.sub.nyc.big.com", ("nyc.big.com", "sub.nyc.big.com"), "joe@sub.nyc.big.com"),
        ("joe@host1.nyc.big.com", (), "joe@big.com"),
        ("joe@host1.nyc.big.com", ("NYC.Big.COM.",), "joe@nyc.big.com"),
        ("joe@host1.nyc.big.com", ("example.org", "big.com"), "joe@big.com"),
        ('"joe smith"@host1.nyc.big.com', NYC, '"joe smith"@nyc.big.com'),
        ("a@b@host1.nyc.big.com", NYC, "a@b@nyc.big.com"),
        # Already domain-based: unchanged
        ("joe@nyc.big.com", NYC, "joe@nyc.big.com"),
        ("joe@NYC.BIG.COM", NYC, "joe@NYC.BIG.COM"),
        ("joe@big.com", NYC, "joe@big.com"),
        ("joe@Big.Com", (), "joe@Big.Com"),
        # Outside the top domain: unchanged
        ("joe@example.org", NYC, "joe@example.org"),
        ("joe@host.notbig.com", NYC, "joe@host.notbig.com"),
        ("joe@big.com.au", NYC, "joe@big.com.au"),
        ("joe@host1.nyc.example.org", ("nyc.example.org",), "joe@host1.nyc.example.org"),
        ("joe@[192.0.2.1]", NYC, "joe@[192.0.2.1]"),
        # Null sender, bare local users, odd forms: unchanged
        ("", NYC, ""),
        ("joe", NYC, "joe"),
        ("@host1.nyc.big.com", NYC, "@host1.nyc.big.com"),
        ("joe@", NYC, "joe@"),
        # Exceptions (hosts or domains, and everything inside them)
        ("joe@mail.big.com", NYC, "joe@mail.big.com"),
        ("joe@MAIL.big.com", NYC, "joe@MAIL.big.com"),
        ("joe@x.mail.big.com", NYC, "joe@x.mail.big.com"),
        ("joe@h.lab.big.com", NYC, "joe@h.lab.big.com"),
        ("joe@notmail.big.com", NYC, "joe@big.com"),
        # Exempt users (default: root)
        ("root@host1.nyc.big.com", NYC, "root@host1.nyc.big.com"),
        ("ROOT@host1.nyc.big.com", NYC, "ROOT@host1.nyc.big.com"),
        ('"root"@host1.nyc.big.com', NYC, '"root"@host1.nyc.big.com'),
        ("rooter@host1.nyc.big.com", NYC, "rooter@nyc.big.com"),
    ],
)
def test_masquerade_sender(address: str, local_domains: tuple[str, ...], expected: str) -> None:
    assert masquerade_sender(address, BIG, local_domains=local_domains) == expected


@pytest.mark.parametrize(
    ("settings", "address", "expected"),
    [
        (MasqueradeSettings("big.com", enabled=False), "joe@h.big.com", "joe@h.big.com"),
        (MasqueradeSettings("", enabled=False), "joe@h.big.com", "joe@h.big.com"),
        (MasqueradeSettings("big.com", users_exempt=()), "root@h.big.com", "root@big.com"),
        (MasqueradeSettings("big.com", users_exempt=("Daemon",)), "daemon@h.big.com", None),
        (MasqueradeSettings("big.com", users_exempt=("Daemon",)), "root@h.big.com", "root@big.com"),
        (MasqueradeSettings("big.univ.ac.uk"), "joe@pc1.cs.big.univ.ac.uk", "joe@big.univ.ac.uk"),
        (MasqueradeSettings("BIG.com."), "joe@h.big.com", "joe@big.com"),
    ],
)
def test_settings(settings: MasqueradeSettings, address: str, expected: str | None) -> None:
    assert masquerade_sender(address, settings) == (address if expected is None else expected)


def test_settings_are_normalised() -> None:
    s = MasqueradeSettings(" Big.COM. ", exceptions=("Mail.Big.com.", " "), users_exempt=("Root",))
    assert s.top_domain == "big.com"
    assert s.exceptions == ("mail.big.com",)
    assert s.users_exempt == ("root",)


def test_default_exempts_root() -> None:
    assert MasqueradeSettings("big.com").users_exempt == ("root",)


def test_enabled_settings_need_a_top_domain() -> None:
    with pytest.raises(ValueError, match="top domain"):
        MasqueradeSettings("")


def test_worksheet_example_cs_big_univ_ac_uk() -> None:
    s = MasqueradeSettings("big.univ.ac.uk")
    out = masquerade_sender("joe@pc1.cs.big.univ.ac.uk", s, local_domains=["cs.big.univ.ac.uk"])
    assert out == "joe@cs.big.univ.ac.uk"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("joe@NODE.DNET.big.com", "joe@NODE.DNET.big.com"),
        ("joe@node.dnet.big.com", "joe@node.dnet.big.com"),
        ("joe@dnet.big.com", "joe@big.com"),  # the pseudodomain itself is a plain host name
        ("joe@host1.nyc.big.com", "joe@nyc.big.com"),
    ],
)
def test_pseudodomain_addresses_are_not_masqueraded(address: str, expected: str) -> None:
    assert masquerade_sender(address, BIG, local_domains=NYC, mapper=MAPPER) == expected


def test_without_mapper_pseudodomains_need_an_exception() -> None:
    assert masquerade_sender("joe@NODE.DNET.big.com", BIG) == "joe@big.com"
    s = MasqueradeSettings("big.com", exceptions=("DNET.big.com",))
    assert masquerade_sender("joe@NODE.DNET.big.com", s) == "joe@NODE.DNET.big.com"


def test_rewrite_reexports_the_gateway_api() -> None:
    for name in ("AddressError", "AddressMapper", "NativeAddress", "Pseudodomain", "quote_local"):
        assert getattr(rewrite, name) is getattr(pseudodomains, name)
    assert set(rewrite.__all__) >= {"MasqueradeSettings", "masquerade_sender"}


# -- properties ----------------------------------------------------------------------------

_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_domain = st.lists(_label, min_size=1, max_size=5).map(".".join)
_local = st.from_regex(r"[A-Za-z0-9._+!%-]{1,12}", fullmatch=True)
_tops = st.sampled_from(["big.com", "big.univ.ac.uk", "com"])


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, MasqueradeSettings, list[str]]:
    top = draw(_tops)
    inside = st.lists(_label, min_size=0, max_size=3).map(lambda ls: ".".join([*ls, top]))
    domain = draw(st.one_of(inside, _domain))
    local_domains = draw(st.lists(st.one_of(inside, _domain), max_size=3))
    exceptions = tuple(draw(st.lists(st.one_of(inside, _domain), max_size=2)))
    settings = MasqueradeSettings(top, exceptions=exceptions)
    return f"{draw(_local)}@{domain}", settings, local_domains


@given(cases())
def test_masquerade_is_idempotent(case: tuple[str, MasqueradeSettings, list[str]]) -> None:
    address, settings, local_domains = case
    once = masquerade_sender(address, settings, local_domains=local_domains)
    assert masquerade_sender(once, settings, local_domains=local_domains) == once


@given(cases())
def test_masquerade_keeps_local_part_and_top_domain(
    case: tuple[str, MasqueradeSettings, list[str]],
) -> None:
    address, settings, local_domains = case
    out = masquerade_sender(address, settings, local_domains=local_domains)
    local, _, domain = address.rpartition("@")
    out_local, _, out_domain = out.rpartition("@")
    assert out_local == local
    top = settings.top_domain
    inside = domain.lower() == top or domain.lower().endswith("." + top)
    if out != address:
        # Only hosts strictly inside the top domain move, and only up to a parent domain.
        assert inside and domain.lower() != top
        assert domain.lower().endswith("." + out_domain)
        assert out_domain == top or out_domain.endswith("." + top)
        assert out_domain == top or out_domain in {d.lower() for d in local_domains}


@given(cases())
def test_disabled_masquerade_is_identity(case: tuple[str, MasqueradeSettings, list[str]]) -> None:
    address, settings, local_domains = case
    off = MasqueradeSettings(settings.top_domain, enabled=False)
    assert masquerade_sender(address, off, local_domains=local_domains) == address


# -- the masquerade domain of this host (12.1.2) ------------------------------------------


@pytest.mark.parametrize(
    ("hostname", "top", "local_domains", "explicit", "expected"),
    [
        ("host1.nyc.big.com", "big.com", (), "", "nyc.big.com"),  # the chapter's example
        ("host1.nyc.big.com", "", (), "", "nyc.big.com"),  # a client has no top domain
        ("host1.nyc.big.com", "big.com", ("big.com",), "", "big.com"),
        ("a.host1.nyc.big.com", "big.com", ("nyc.big.com",), "", "nyc.big.com"),
        ("host1.nyc.big.com", "big.com", (), "Big.COM.", "big.com"),
        ("mail.example.org", "big.com", (), "", "big.com"),  # outside the top domain
        ("localhost", "", (), "", ""),
        ("mail", "", ("example.test",), "", ""),
    ],
)
def test_masquerade_domain(
    hostname: str, top: str, local_domains: tuple[str, ...], explicit: str, expected: str
) -> None:
    assert rewrite.masquerade_domain(hostname, top, local_domains, explicit) == expected


HOST1 = MasqueradeSettings(
    "big.com", domain="nyc.big.com", host_names=("host1.nyc.big.com", "localhost")
)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        # 12.1.2 with local_domains = []: the host's own domain, not the top domain.
        ("joe@host1.nyc.big.com", "joe@nyc.big.com"),
        ("joe@host2.nyc.big.com", "joe@nyc.big.com"),  # a client of the same domain
        ("joe@localhost", "joe@nyc.big.com"),  # this host's names, whatever they are
        ("joe@nyc.big.com", "joe@nyc.big.com"),
        ("joe@host9.sf.big.com", "joe@big.com"),
        ("root@host1.nyc.big.com", "root@host1.nyc.big.com"),
        ("joe@example.org", "joe@example.org"),
    ],
)
def test_masquerading_as_the_hosts_own_domain(address: str, expected: str) -> None:
    assert masquerade_sender(address, HOST1) == expected
    assert masquerade_sender(expected, HOST1) == expected  # idempotent


def test_a_client_without_a_top_domain_masquerades_within_its_domain() -> None:
    s = MasqueradeSettings("", domain="nyc.big.com", host_names=("host1.nyc.big.com",))
    assert masquerade_sender("joe@host1.nyc.big.com", s) == "joe@nyc.big.com"
    assert masquerade_sender("joe@host9.sf.big.com", s) == "joe@host9.sf.big.com"


# -- the rewriting policy: qualification, native forms, masquerading ---------------------

GATEWAYS = AddressMapper(
    [
        Pseudodomain("decnet", "DNET", ("DECNET",), top_domain="big.com"),
        Pseudodomain("decnet-osi", "DNA", top_domain="big.com"),
        Pseudodomain("uucp"),
    ]
)
REWRITER = rewrite.AddressRewriter("host1.nyc.big.com", GATEWAYS, HOST1)
PLAIN = rewrite.AddressRewriter("host1.nyc.big.com", GATEWAYS)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("joe", "joe@host1.nyc.big.com"),  # sendmail's $j
        ("joe@example.org", "joe@example.org"),
        ("", ""),
        ("VAXA::SMITH", "SMITH@VAXA.DNET.big.com"),
        ("SMITH@ACME:.nyc.hub", "SMITH@hub.nyc.ACME.DNA.big.com"),
        ("uuhost!joe", "joe@uuhost.UUCP"),
        ("smith@vaxa.decnet", "smith@vaxa.DNET.big.com"),  # an alias: the own name
    ],
)
def test_qualify(address: str, expected: str) -> None:
    assert REWRITER.qualify(address) == expected


def test_outbound_sender_is_internet_form_and_masqueraded() -> None:
    assert REWRITER.outbound_sender("joe@host1.nyc.big.com") == "joe@nyc.big.com"
    assert REWRITER.outbound_sender("VAXA::SMITH") == "SMITH@VAXA.DNET.big.com"
    assert REWRITER.outbound_sender("") == ""
    assert PLAIN.outbound_sender("joe@host1.nyc.big.com") == "joe@host1.nyc.big.com"


def header(rewriter: rewrite.AddressRewriter, text: str, *, qualify: bool = True) -> str:
    raw = text.encode()
    return rewrite_header_section(raw, rewriter.header_rewrites(qualify=qualify)).decode()


def test_sender_fields_are_qualified_and_masqueraded() -> None:
    out = header(REWRITER, "From: Joe <joe>\r\nSender: joe@host1.nyc.big.com\r\nReply-To: ann\r\n")
    assert (
        out
        == "From: Joe <joe@nyc.big.com>\r\nSender: joe@nyc.big.com\r\nReply-To: ann@nyc.big.com\r\n"
    )


def test_recipient_fields_are_qualified_not_masqueraded() -> None:
    out = header(REWRITER, "To: bob, carl@host1.nyc.big.com\r\nCc: VAXA::SMITH\r\nBcc: root\r\n")
    assert out == (
        "To: bob@nyc.big.com, carl@host1.nyc.big.com\r\n"
        "Cc: SMITH@VAXA.DNET.big.com\r\nBcc: root@host1.nyc.big.com\r\n"
    )


def test_without_masquerading_bare_names_get_the_host_name() -> None:
    assert header(PLAIN, "From: joe\r\nTo: bob\r\n") == (
        "From: joe@host1.nyc.big.com\r\nTo: bob@host1.nyc.big.com\r\n"
    )


def test_mail_from_elsewhere_keeps_its_bare_names() -> None:
    out = header(REWRITER, "From: joe\r\nTo: VAXA::SMITH\r\n", qualify=False)
    assert out == "From: joe\r\nTo: SMITH@VAXA.DNET.big.com\r\n"
