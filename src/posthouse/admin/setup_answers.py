"""The worksheet answers of ``posthouse setup``: choices, checks and the draft being edited.

This module owns what both ways of answering (:mod:`posthouse.cli.setup_questions`,
interactive, and :mod:`posthouse.cli.setup_flags`, scripted) share: the choices of the
Basic Mail Setup and Mail Protocol worksheets (12.2.3), the checks of single answers, the
:class:`Draft` of the answers being edited and :func:`check_config`, the checks of the
whole result that ``parse_config`` does not make.

Answers that only make sense with others are cleared by :meth:`Draft.tidy` when those
change: the mail server unless the role is client, the mailbox server unless the mailbox
directory is an NFS client, the relay host when forwarding is ``none``, a pseudodomain's
relay host unless its routing is ``relay`` (and its program unless it is ``direct``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from posthouse.admin.errors import NotConfigured
from posthouse.config.schema import Config, MailSection, PseudodomainSection
from posthouse.mta.pseudodomains import DEFAULT_NAMES as DEFAULT_NAMES  # for the questions
from posthouse.mta.pseudodomains import RELAY_PROTOCOLS, AddressMapper, Pseudodomain
from posthouse.mta.rewrite import masquerade_domain
from posthouse.mta.routing import RoutingSettings, parse_host_spec

ROLES: tuple[str, ...] = ("standalone", "client", "server")
LOCKINGS: tuple[str, ...] = ("lockf", "lockfile", "both")
FORWARDINGS: tuple[str, ...] = ("none", "internet", "nonlocal", "local")
PROTOCOLS: tuple[str, ...] = ("decnet", "decnet-osi", "uucp", "mts", "x25")
ROUTINGS: tuple[str, ...] = ("direct", "relay", "internet")
PROTOCOL_TITLES: dict[str, str] = {
    "decnet": "DECnet",
    "decnet-osi": "DECnet/OSI",
    "uucp": "UUCP",
    "mts": "MTS",
    "x25": "X.25",
}
#: The chapter lets the administrator choose the pseudodomain for these protocols only.
NAMED_PROTOCOLS: tuple[str, ...] = ("decnet", "decnet-osi", "mts")

#: Mailbox directory choices of each role (12.2.3.1 and the setup dialogs of 12.3).
MAILBOX_CHOICES: dict[str, tuple[str, ...]] = {
    "standalone": ("local", "nfs-client", "nfs-server"),
    "client": ("local", "nfs-client", "nfs-server"),
    "server": ("local", "server", "nfs-client"),
}
#: The same choice under the other roles' name (NFS server <-> Server) when the role changes.
MAILBOX_EQUIVALENT: dict[str, str] = {"server": "nfs-server", "nfs-server": "server"}

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?\Z")
_NODE_ADDRESS = re.compile(r"(\d{1,2})\.(\d{1,4})\Z")
_NAMESPACE = re.compile(r"[A-Za-z0-9_$-]+(?::(?:\.[A-Za-z0-9_$-]+)+)?\Z")

#: As a list answer, the empty list; as an optional answer, no value.
CLEAR = "-"

GatewayProtocol = Literal["decnet", "decnet-osi", "uucp", "mts", "x25"]


class AnswerError(NotConfigured):
    """An invalid answer: the configuration it would make is invalid."""


# -- locking default and answer checks ----------------------------------------------------


def default_locking(mailbox_directory: str) -> str:
    """The worksheet's locking rule (12.2.3.1): local -> lockf, NFS client -> lockfile,
    server / NFS server -> both."""
    return {"local": "lockf", "nfs-client": "lockfile"}.get(mailbox_directory, "both")


def check_choice(value: str, choices: Sequence[str]) -> str | None:
    if value in choices:
        return None
    return f"{value!r} is not one of {', '.join(choices)}"


def check_domain(value: str) -> str | None:
    if value and len(value) <= 253 and _DOMAIN.match(value):
        return None
    return f"{value!r} is not a domain name"


def check_host_spec(value: str) -> str | None:
    try:
        parse_host_spec(value)
    except ValueError as exc:
        return str(exc)
    return None


def check_relay_protocol(value: str) -> str | None:
    if value.lower() in RELAY_PROTOCOLS:
        return None
    return (
        f"relay protocol {value!r}: posthouse reaches a relay over SMTP only "
        "(use smtp, or direct routing with a delivery program)"
    )


def check_node_address(value: str) -> str | None:
    match = _NODE_ADDRESS.match(value)
    if match and 1 <= int(match.group(1)) <= 63 and 1 <= int(match.group(2)) <= 1023:
        return None
    return f"{value!r} is not a DECnet node address area.node (area 1-63, node 1-1023)"


def check_namespace(value: str) -> str | None:
    if _NAMESPACE.match(value):
        return None
    return f"{value!r} is not a DNS name space (namespace or namespace:.site.nodename)"


def check_pseudodomain_name(value: str) -> str | None:
    if check_domain(value) is None and not value.endswith("."):
        return None
    return f"{value!r} is not a pseudodomain name (letters, digits, '-' and dots)"


def optional_check(check: Callable[[str], str | None]) -> Callable[[str], str | None]:
    return lambda value: None if value == "" else check(value)


def each_check(check: Callable[[str], str | None]) -> Callable[[list[str]], str | None]:
    def run(values: list[str]) -> str | None:
        for value in values:
            error = check(value)
            if error:
                return error
        return None

    return run


def split_list(text: str) -> list[str]:
    """A list answer: names separated by commas and/or blanks; ``-`` alone is the empty list."""
    if text.strip() == CLEAR:
        return []
    return [item for item in re.split(r"[\s,]+", text) if item]


# -- the working copy of the answers --------------------------------------------------------


@dataclass
class Draft:
    """The answers being edited: ``[mail]`` values and the pseudodomains by protocol."""

    mail: dict[str, Any]
    pseudodomains: dict[str, PseudodomainSection] = field(default_factory=dict)

    @classmethod
    def of(cls, config: Config) -> Draft:
        mail = {f.name: getattr(config.mail, f.name) for f in dataclasses.fields(MailSection)}
        mail["local_domains"] = list(mail["local_domains"])
        mail["host_aliases"] = list(mail["host_aliases"])
        return cls(mail=mail, pseudodomains={p.protocol: p for p in config.pseudodomain})

    def apply(self, config: Config) -> Config:
        values = dict(self.mail)
        values["local_domains"] = tuple(values["local_domains"])
        values["host_aliases"] = tuple(values["host_aliases"])
        return dataclasses.replace(
            config,
            mail=dataclasses.replace(config.mail, **values),
            pseudodomain=tuple(self.pseudodomains.values()),
        )

    def set_role(self, role: str) -> None:
        self.mail["role"] = role
        directory = self.mail["mailbox_directory"]
        if directory not in MAILBOX_CHOICES[role]:
            self.mail["mailbox_directory"] = MAILBOX_EQUIVALENT.get(directory, "local")

    def tidy(self) -> None:
        """Clear answers that the other answers make meaningless (see the module docstring)."""
        if self.mail["role"] != "client":
            self.mail["mail_server"] = ""
        if self.mail["mailbox_directory"] != "nfs-client":
            self.mail["mailbox_server"] = ""
        if self.mail["forwarding"] == "none":
            self.mail["relay_host"] = ""
        self.pseudodomains = {
            protocol: dataclasses.replace(
                entry,
                relay_host=entry.relay_host if entry.routing == "relay" else "",
                transport=entry.transport if entry.routing == "direct" else "",
            )
            for protocol, entry in self.pseudodomains.items()
        }

    def entry(self, protocol: str) -> PseudodomainSection:
        """The current entry of ``protocol``, or a new one with the schema's defaults."""
        existing = self.pseudodomains.get(protocol)
        if existing is not None:
            return existing
        return PseudodomainSection(protocol=cast(GatewayProtocol, protocol))


# -- checks of the whole result ------------------------------------------------------------


def check_config(config: Config) -> list[str]:
    """Problems ``parse_config`` does not see but the daemon or the chapter would refuse."""
    mail = config.mail
    problems: list[str] = []
    if mail.mailbox_directory not in MAILBOX_CHOICES[mail.role]:
        choices = ", ".join(MAILBOX_CHOICES[mail.role])
        problems.append(
            f"mailbox directory {mail.mailbox_directory!r} is not for a {mail.role} "
            f"(choose {choices})"
        )
    if mail.mailbox_directory == "nfs-client" and not mail.mailbox_server:
        problems.append("an NFS client mailbox directory needs the mailbox server")
    if mail.mailbox_server and check_domain(mail.mailbox_server):
        problems.append(f"mailbox server: {check_domain(mail.mailbox_server)}")
    if mail.top_domain and check_domain(mail.top_domain):
        problems.append(f"top domain: {check_domain(mail.top_domain)}")
    if mail.masquerade_as and check_domain(mail.masquerade_as):
        problems.append(f"masquerade as: {check_domain(mail.masquerade_as)}")
    hostname = config.server.hostname
    if mail.masquerade and not masquerade_domain(
        hostname, mail.top_domain, mail.local_domains, mail.masquerade_as
    ):
        problems.append(
            f"masquerading needs a domain: the host name {hostname!r} has none; "
            "give the domain to masquerade as (or a top domain)"
        )
    for what, names in (("local domain", mail.local_domains), ("host alias", mail.host_aliases)):
        problems.extend(f"{what}: {check_domain(n)}" for n in names if check_domain(n))
    try:
        RoutingSettings(
            role=mail.role,
            mail_server=mail.mail_server,
            top_domain=mail.top_domain,
            local_domains=frozenset(mail.local_domains),
            forwarding=mail.forwarding,
            relay_host=mail.relay_host,
            static_routes={route.domain: route.to for route in config.route},
            host_names=frozenset(mail.host_aliases),
        )
    except ValueError as exc:
        problems.append(f"routing: {exc}")
    seen: set[str] = set()
    gateways: list[Pseudodomain] = []
    for entry in config.pseudodomain:
        title = PROTOCOL_TITLES[entry.protocol]
        if entry.protocol in seen:
            problems.append(f"{title} is configured more than once")
        seen.add(entry.protocol)
        if entry.node_address and check_node_address(entry.node_address):
            problems.append(f"{title}: {check_node_address(entry.node_address)}")
        if entry.namespace and check_namespace(entry.namespace):
            problems.append(f"{title}: {check_namespace(entry.namespace)}")
        if entry.routing == "relay" and entry.relay_host and check_host_spec(entry.relay_host):
            problems.append(f"{title} relay host: {check_host_spec(entry.relay_host)}")
        if entry.routing == "relay" and check_relay_protocol(entry.relay_protocol):
            problems.append(f"{title}: {check_relay_protocol(entry.relay_protocol)}")
        try:
            gateways.append(
                Pseudodomain(
                    protocol=entry.protocol,
                    name=entry.name,
                    aliases=entry.aliases,
                    top_domain=mail.top_domain,
                    routing=entry.routing,
                    relay_host=entry.relay_host,
                    relay_protocol=entry.relay_protocol,
                    transport=entry.transport,
                )
            )
        except ValueError as exc:
            problems.append(f"{title}: {exc}")
    if not problems:
        try:
            AddressMapper(gateways)
        except ValueError as exc:
            problems.append(str(exc))
    return problems
