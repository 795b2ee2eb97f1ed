"""Tests for posthouse.mta.policy: local domains, trusted networks and relay control.

Every decision of :class:`RecipientPolicy` is covered: a local recipient is accepted when
deliverable and refused (5.1.1) otherwise, whoever the client; a remote one only for an
authenticated client or one inside a trusted network, else ``5.7.1 Relay access denied``.
"""

from __future__ import annotations

import pytest

from posthouse.mta.errors import MailError
from posthouse.mta.policy import LocalDomains, RecipientPolicy

LOCAL_USERS = {"alice@example.test", "postmaster", "bob@mail.example.test"}
DEFAULT_TRUSTED = ["127.0.0.0/8", "::1/128"]


def deliverable(address: str) -> bool:
    return address.lower() in LOCAL_USERS


def policy(*networks: str) -> RecipientPolicy:
    return RecipientPolicy(
        local_domains=LocalDomains(["example.test", "Mail.Example.TEST."]),
        trusted_networks=networks,
        is_deliverable=deliverable,
    )


def refusal(p: RecipientPolicy, address: str, **kwargs: object) -> str | None:
    """The enhanced status of the refusal, or None if accepted."""
    options: dict[str, object] = {"authenticated": False, "client_address": "192.0.2.1"}
    options.update(kwargs)
    try:
        p.check_recipient(address, **options)  # type: ignore[arg-type]
    except MailError as error:
        assert not error.temporary
        return error.status
    return None


# -- LocalDomains ------------------------------------------------------------------------------


def test_local_domains_ignore_case_and_a_trailing_dot() -> None:
    domains = LocalDomains(["Example.TEST", "", "mail.example.test."])
    assert "example.test" in domains
    assert "EXAMPLE.test." in domains
    assert "mail.example.test" in domains
    assert "" in domains  # an address without a domain is local
    assert "other.test" not in domains
    assert 42 not in domains


def test_subdomains_and_parents_of_a_local_domain_are_not_local() -> None:
    domains = LocalDomains(["example.test"])
    assert "sub.example.test" not in domains
    assert "test" not in domains
    assert "xexample.test" not in domains
    assert "example.test.evil" not in domains


def test_replace_swaps_the_whole_set() -> None:
    domains = LocalDomains(["old.test"])
    domains.replace(["new.test"])
    assert "new.test" in domains and "old.test" not in domains


# -- trusted networks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("networks", "client", "trusted"),
    [
        # the default: loopback only
        (DEFAULT_TRUSTED, "127.0.0.1", True),
        (DEFAULT_TRUSTED, "127.255.0.9", True),
        (DEFAULT_TRUSTED, "::1", True),
        (DEFAULT_TRUSTED, "128.0.0.1", False),
        (DEFAULT_TRUSTED, "192.0.2.1", False),
        (DEFAULT_TRUSTED, "::2", False),
        (DEFAULT_TRUSTED, "2001:db8::1", False),
        # no networks: nobody is trusted
        ([], "127.0.0.1", False),
        ([], "::1", False),
        # one network: its edges are in, their neighbours out
        (["10.0.0.0/8"], "10.0.0.0", True),
        (["10.0.0.0/8"], "10.255.255.255", True),
        (["10.0.0.0/8"], "9.255.255.255", False),
        (["10.0.0.0/8"], "11.0.0.0", False),
        (["10.0.0.0/8"], "127.0.0.1", False),
        # several networks, either family
        (["192.0.2.0/24", "2001:db8::/32", "10.1.2.3"], "192.0.2.200", True),
        (["192.0.2.0/24", "2001:db8::/32", "10.1.2.3"], "2001:db8:ffff::1", True),
        (["192.0.2.0/24", "2001:db8::/32", "10.1.2.3"], "10.1.2.3", True),
        (["192.0.2.0/24", "2001:db8::/32", "10.1.2.3"], "10.1.2.4", False),
        (["192.0.2.0/24", "2001:db8::/32", "10.1.2.3"], "2001:db9::1", False),
        (["192.0.2.0/24", "2001:db8::/32", "10.1.2.3"], "198.51.100.1", False),
        # host bits in a configured network are ignored (strict=False)
        (["192.0.2.77/24"], "192.0.2.1", True),
        # an IPv4 client seen on a dual-stack socket as an IPv4-mapped IPv6 address
        (["10.0.0.0/8"], "::ffff:10.1.2.3", True),
        (["10.0.0.0/8"], "::ffff:192.0.2.1", False),
        (DEFAULT_TRUSTED, "::ffff:127.0.0.1", True),
        (DEFAULT_TRUSTED, "::ffff:192.0.2.1", False),
        # an IPv6 network does not trust mapped IPv4 clients it does not contain
        (["2001:db8::/32"], "::ffff:10.1.2.3", False),
        # a configured mapped network is an IPv4 network for either form of the client
        (["::ffff:10.0.0.0/104"], "10.1.2.3", True),
        (["::ffff:10.0.0.0/104"], "::ffff:10.1.2.3", True),
        (["::ffff:10.0.0.0/104"], "11.1.2.3", False),
        # all of IPv6 includes the mapped range
        (["::/0"], "::ffff:10.1.2.3", True),
        # link-local IPv6 with a zone
        (["fe80::/10"], "fe80::1%eth0", True),
        (DEFAULT_TRUSTED, "fe80::1%eth0", False),
        # not an address at all
        (DEFAULT_TRUSTED, "localhost", False),
        (DEFAULT_TRUSTED, "127.0.0.1:25", False),
        (["0.0.0.0/0"], "garbage", False),
    ],
)
def test_trusted_network_membership(networks: list[str], client: str, trusted: bool) -> None:
    assert policy(*networks).is_trusted(client) is trusted


def test_a_client_outside_the_configured_networks_is_not_trusted() -> None:
    """Any trusted network configured must not make every client trusted."""
    p = policy("10.0.0.0/8")
    assert p.is_trusted("10.9.9.9")
    assert not p.is_trusted("127.0.0.1")
    assert not p.is_trusted("192.0.2.1")
    assert not p.is_trusted("::1")


def test_a_local_process_without_an_address_is_trusted() -> None:
    """Unix-socket clients (LMTP, local submission) have no network address."""
    assert policy().is_trusted("")
    assert refusal(policy(), "someone@remote.test", client_address="") is None


def test_set_trusted_networks_replaces_them() -> None:
    p = policy("10.0.0.0/8")
    assert p.is_trusted("10.0.0.1") and p.is_trusted("10.0.0.1")  # judged, then remembered
    p.set_trusted_networks(["192.0.2.0/24"])
    assert p.is_trusted("192.0.2.5") and not p.is_trusted("10.0.0.1")
    p.set_trusted_networks([])
    assert not p.is_trusted("192.0.2.5")


def test_a_bad_network_is_refused_when_configured() -> None:
    with pytest.raises(ValueError):
        policy("10.0.0.0/33")
    with pytest.raises(ValueError):
        policy("not-a-network")


# -- recipients --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["alice@example.test", "ALICE@EXAMPLE.TEST", "postmaster", "bob@mail.example.test"],
)
@pytest.mark.parametrize("client", ["192.0.2.1", "127.0.0.1", ""])
@pytest.mark.parametrize("authenticated", [False, True])
def test_a_deliverable_local_recipient_is_accepted_from_anyone(
    address: str, client: str, authenticated: bool
) -> None:
    p = policy(*DEFAULT_TRUSTED)
    assert refusal(p, address, client_address=client, authenticated=authenticated) is None


@pytest.mark.parametrize("client", ["192.0.2.1", "127.0.0.1", ""])
@pytest.mark.parametrize("authenticated", [False, True])
def test_an_unknown_local_recipient_is_refused_even_when_trusted(
    client: str, authenticated: bool
) -> None:
    p = policy(*DEFAULT_TRUSTED)
    status = refusal(p, "nobody@example.test", client_address=client, authenticated=authenticated)
    assert status == "5.1.1"
    with pytest.raises(MailError, match="User unknown"):
        p.check_recipient("nobody@example.test", authenticated=True, client_address="")


def test_a_remote_recipient_from_an_untrusted_client_is_relaying_denied() -> None:
    p = policy(*DEFAULT_TRUSTED)
    with pytest.raises(MailError) as refused:
        p.check_recipient("someone@remote.test", authenticated=False, client_address="192.0.2.1")
    assert refused.value.status == "5.7.1"
    assert "Relay access denied" in refused.value.message
    assert "<someone@remote.test>" in refused.value.message


@pytest.mark.parametrize(
    ("networks", "client", "authenticated", "status"),
    [
        (DEFAULT_TRUSTED, "127.0.0.1", False, None),  # trusted network
        (DEFAULT_TRUSTED, "::1", False, None),
        (DEFAULT_TRUSTED, "192.0.2.1", True, None),  # authenticated, from anywhere
        ([], "127.0.0.1", True, None),
        ([], "127.0.0.1", False, "5.7.1"),  # nothing trusted
        (["10.0.0.0/8"], "127.0.0.1", False, "5.7.1"),  # other networks trusted
        (["10.0.0.0/8"], "10.0.0.1", False, None),
        (["10.0.0.0/8"], "::ffff:10.0.0.1", False, None),
        (["10.0.0.0/8"], "::ffff:127.0.0.1", False, "5.7.1"),
        (DEFAULT_TRUSTED, "not an address", False, "5.7.1"),
    ],
)
def test_relaying_to_a_remote_domain(
    networks: list[str], client: str, authenticated: bool, status: str | None
) -> None:
    p = policy(*networks)
    for address in ("someone@remote.test", "someone@sub.example.test", "x@[192.0.2.9]"):
        got = refusal(p, address, client_address=client, authenticated=authenticated)
        assert got == status, address


@pytest.mark.parametrize(
    "address",
    [
        # A subdomain or a look-alike of a local domain is somewhere else.
        "someone@sub.example.test",
        "someone@example.test.evil",
        "someone@xexample.test",
        # The % hack and bang paths under a remote domain: the remote domain decides.
        "user%example.test@remote.test",
        "example.test!user@remote.test",
        # The last @ is the one that counts.
        "user@example.test@remote.test",
        '"user@example.test"@remote.test',
    ],
)
def test_remote_forms_are_relaying(address: str) -> None:
    p = policy(*DEFAULT_TRUSTED)
    assert refusal(p, address, client_address="192.0.2.1") == "5.7.1"
    assert refusal(p, address, client_address="127.0.0.1") is None
    assert refusal(p, address, client_address="192.0.2.1", authenticated=True) is None


@pytest.mark.parametrize(
    "address",
    [
        # The classic relay tricks, addressed to a local domain: only a deliverable local
        # recipient passes, so none of them relays through us.
        "user%remote.test@example.test",
        "user%remote.test@[127.0.0.1]",
        "remote.test!user@example.test",
        "remote.test!user",
        "user@remote.test@example.test",
        '"user@remote.test"@example.test',
        "@remote.test:user@example.test",
        "alice%remote.test@example.test",
    ],
)
def test_relay_tricks_through_a_local_domain_are_not_deliverable(address: str) -> None:
    p = policy(*DEFAULT_TRUSTED)
    status = refusal(p, address, client_address="192.0.2.1")
    if address.endswith("@[127.0.0.1]"):
        assert status == "5.7.1"  # an address literal is not a local domain here
    else:
        assert status == "5.1.1"


def test_a_source_route_to_a_remote_host_is_relaying() -> None:
    """``@local:user@remote`` (RFC 5321 Appendix C) ends at the remote host."""
    p = policy(*DEFAULT_TRUSTED)
    assert refusal(p, "@example.test:user@remote.test", client_address="192.0.2.1") == "5.7.1"
    assert refusal(p, "@example.test:alice@example.test", client_address="192.0.2.1") == "5.1.1"


def test_the_deliverability_check_sees_the_address_as_given() -> None:
    seen: list[str] = []

    def check(address: str) -> bool:
        seen.append(address)
        return True

    p = RecipientPolicy(
        local_domains=LocalDomains(["example.test"]), trusted_networks=[], is_deliverable=check
    )
    p.check_recipient("Alice@Example.Test", authenticated=False, client_address="192.0.2.1")
    p.check_recipient("someone@remote.test", authenticated=True, client_address="192.0.2.1")
    assert seen == ["Alice@Example.Test"]  # remote recipients are not looked up
