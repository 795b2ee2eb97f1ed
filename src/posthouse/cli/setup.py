"""``posthouse setup``: the chapter's Mail Configuration application (mailsetup, 12.3).

Creates or updates the configuration file from the answers of the Basic Mail Setup and Mail
Protocol worksheets (12.2.3).  The file is ``--config FILE``, else ``$POSTHOUSE_CONFIG``, else
``./posthouse.toml``; an existing file supplies the current answers and every option that
setup does not ask about is kept.

**Interactive mode** (the default when standard input is a terminal and no answer is given
as a flag; ``--interactive`` forces it) asks in the worksheets' order, showing the current
value as the default and asking again, with the reason, after an invalid answer:

* the role: standalone (12.3.1), client (12.3.2) or server (12.3.3);
* client: the mail server, preferably the domain ("your mail service cannot be interrupted
  by a single mail server that becomes unavailable"), then the mailbox directory (local,
  NFS client, NFS server), the mailbox server for an NFS client, and the locking;
* server: the top domain, the local domains, the mailbox directory (local, server, or NFS
  client) and the locking;
* standalone: the local domains, the mailbox directory (local, NFS client, NFS server), the
  mailbox server and the locking;
* the locking defaults by the worksheet's rule: local -> lockf, NFS client -> lockfile,
  server / NFS server -> both (the current value when the mailbox directory is unchanged);
* standalone and server: the SMTP forwarding mode and, unless it is ``none``, the relay host;
* every role: the host aliases;
* server: the gateway protocols (DECnet, DECnet/OSI, UUCP, MTS, X.25), and per protocol the
  routing (direct, relay, internet), the relay's host name and protocol, the program for
  direct routing, the pseudodomain (DECnet, DECnet/OSI, MTS), its aliases, the DECnet node
  address and the DECnet/OSI DNS name space.

**Scripted mode** takes the answers as flags (``--role``, ``--mail-server``, ...); answers not
given keep their current values.  Repeatable list flags (``--host-alias``, ``--local-domain``)
replace the list; a single empty value (``--host-alias=``) empties it.  ``--pseudodomain
PROTOCOL:NAME[:ROUTING[:RELAY_HOST]]`` adds or updates the entry of one protocol (other
protocols are kept; ``--remove-pseudodomain PROTOCOL`` drops one).

Answers that only make sense with others are cleared when those change: the mail server
unless the role is client, the mailbox server unless the mailbox directory is an NFS client,
the relay host when forwarding is ``none``, a pseudodomain's relay host unless its routing is
``relay``.

Before anything is written the whole result is checked: ``parse_config`` on the text to be
written, then the checks the daemon makes when it starts (host specifications of the mail
server and relay, pseudodomain names unique across protocols).  Setup then shows the
difference from the current file, asks ``Write this configuration? [y/N]`` (not with
``--yes``), writes through a temporary file and a rename, keeping the old file as
``FILE.bak``, and offers to reload a running daemon (``DATA_DIR/posthouse.pid``) with SIGHUP;
in scripted mode it reloads unless ``--no-reload``.

Exit status: 0 done (or nothing to change), 1 declined or aborted, 64 usage error, 73 the
file cannot be written, 78 invalid answers or an invalid existing/new configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO, cast

from posthouse.config.load import ConfigError, parse_config, resolve_paths
from posthouse.config.render import render_config
from posthouse.config.schema import Config, MailSection, PseudodomainSection
from posthouse.mta.pseudodomains import DEFAULT_NAMES, AddressMapper, Pseudodomain
from posthouse.mta.routing import RoutingSettings, parse_host_spec

EX_OK = 0
EX_DECLINED = 1
EX_USAGE = 64
EX_CANTCREAT = 73
EX_CONFIG = 78

DEFAULT_FILE = "posthouse.toml"
PID_FILE = "posthouse.pid"

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

#: What ``posthouse serve`` applies on SIGHUP (see ``posthouse.cli.serve.reload``); the rest
#: of [mail] and the pseudodomains take effect when the daemon is restarted.
RELOADED_MAIL_KEYS: frozenset[str] = frozenset(
    {"local_domains", "host_aliases", "trusted_networks"}
)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?\Z")
_NODE_ADDRESS = re.compile(r"(\d{1,2})\.(\d{1,4})\Z")
_NAMESPACE = re.compile(r"[A-Za-z0-9_$-]+(?::(?:\.[A-Za-z0-9_$-]+)+)?\Z")
_CLEAR = "-"

Ask = Callable[[str], str]
GatewayProtocol = Literal["decnet", "decnet-osi", "uucp", "mts", "x25"]


class UsageError(Exception):
    """A malformed command line (exit status 64)."""


class AnswerError(Exception):
    """An invalid answer (exit status 78)."""


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


def _optional(check: Callable[[str], str | None]) -> Callable[[str], str | None]:
    return lambda value: None if value == "" else check(value)


def _each(check: Callable[[str], str | None]) -> Callable[[list[str]], str | None]:
    def run(values: list[str]) -> str | None:
        for value in values:
            error = check(value)
            if error:
                return error
        return None

    return run


def split_list(text: str) -> list[str]:
    """A list answer: names separated by commas and/or blanks; ``-`` alone is the empty list."""
    if text.strip() == _CLEAR:
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


# -- the command line -----------------------------------------------------------------------

ANSWER_FLAGS: tuple[str, ...] = (
    "role",
    "mail_server",
    "top_domain",
    "mailbox_directory",
    "mailbox_server",
    "locking",
    "forwarding",
    "relay_host",
    "host_alias",
    "local_domain",
    "pseudodomain",
    "pseudodomain_alias",
    "relay_protocol",
    "transport",
    "node_address",
    "namespace",
    "remove_pseudodomain",
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``setup`` to ``parser``."""
    answers = parser.add_argument_group("worksheet answers (scripted mode)")
    answers.add_argument("--role", help="standalone, client or server")
    answers.add_argument("--mail-server", metavar="HOST", help="client: host or domain")
    answers.add_argument("--top-domain", metavar="DOMAIN", help="server: the top domain")
    answers.add_argument(
        "--mailbox-directory",
        metavar="WHERE",
        help="local, nfs-client, nfs-server (standalone, client) or server (server)",
    )
    answers.add_argument("--mailbox-server", metavar="HOST", help="nfs-client: exporting host")
    answers.add_argument("--locking", help="lockf, lockfile or both")
    answers.add_argument("--forwarding", help="none, internet, nonlocal or local")
    answers.add_argument("--relay-host", metavar="HOST", help="relay for forwarded mail")
    answers.add_argument(
        "--host-alias", metavar="NAME", action="append", help="host alias (repeatable)"
    )
    answers.add_argument(
        "--local-domain", metavar="DOMAIN", action="append", help="local domain (repeatable)"
    )
    answers.add_argument(
        "--pseudodomain",
        metavar="PROTOCOL:NAME[:ROUTING[:RELAY_HOST]]",
        action="append",
        help="add or update a gateway protocol (decnet, decnet-osi, uucp, mts, x25)",
    )
    answers.add_argument(
        "--pseudodomain-alias",
        metavar="PROTOCOL:ALIAS",
        action="append",
        help="pseudodomain alias (repeatable; replaces that protocol's aliases)",
    )
    answers.add_argument(
        "--relay-protocol",
        metavar="PROTOCOL:RELAY_PROTOCOL",
        action="append",
        help="protocol the relay of a gateway protocol speaks",
    )
    answers.add_argument(
        "--transport",
        metavar="PROTOCOL:PROGRAM",
        action="append",
        help="program for a gateway protocol with direct routing",
    )
    answers.add_argument("--node-address", metavar="AREA.NODE", help="DECnet node address")
    answers.add_argument("--namespace", metavar="NAMESPACE", help="DECnet/OSI DNS name space")
    answers.add_argument(
        "--remove-pseudodomain",
        metavar="PROTOCOL",
        action="append",
        help="drop the gateway protocol",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--interactive", action="store_true", help="ask the worksheet questions")
    mode.add_argument("--batch", action="store_true", help="never ask the worksheet questions")
    parser.add_argument("-y", "--yes", action="store_true", help="write without asking")
    parser.add_argument("--no-reload", action="store_true", help="do not signal the running daemon")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "setup",
        help="create or update the configuration (the Mail Configuration application)",
        description="Configure mail from the worksheet answers (chapter 12.3).",
    )
    configure_parser(parser)
    parser.set_defaults(func=lambda args: run_setup(args))


def config_path(option: str | None) -> Path:
    """``--config``, else ``$POSTHOUSE_CONFIG``, else ``./posthouse.toml``."""
    return Path(option or os.environ.get("POSTHOUSE_CONFIG") or DEFAULT_FILE)


def _split_spec(flag: str, spec: str, *, parts: int = 2) -> list[str]:
    pieces = spec.split(":", parts - 1)
    protocol = pieces[0].strip().lower()
    if len(pieces) < 2 or protocol not in PROTOCOLS:
        raise UsageError(
            f"{flag} {spec!r}: expected PROTOCOL:... with PROTOCOL one of {', '.join(PROTOCOLS)}"
        )
    return [protocol, *pieces[1:]]


def _flag_list(flag: str, values: list[str], check: Callable[[str], str | None]) -> list[str]:
    if values == [""]:
        return []
    items = [item for value in values for item in split_list(value)]
    for item in items:
        error = check(item)
        if error:
            raise AnswerError(f"{flag}: {error}")
    return items


def _checked(flag: str, value: str, check: Callable[[str], str | None]) -> str:
    error = check(value)
    if error:
        raise AnswerError(f"{flag}: {error}")
    return value


def apply_flags(draft: Draft, args: argparse.Namespace) -> None:
    """Put the answers given as flags into ``draft``; UsageError or AnswerError."""
    mail = draft.mail
    old_directory = mail["mailbox_directory"]
    if args.role is not None:
        draft.set_role(_checked("--role", args.role, lambda v: check_choice(v, ROLES)))
    role = mail["role"]
    if args.mail_server is not None:
        mail["mail_server"] = _checked("--mail-server", args.mail_server, check_host_spec)
    if args.top_domain is not None:
        mail["top_domain"] = _checked("--top-domain", args.top_domain, _optional(check_domain))
    if args.mailbox_directory is not None:
        choices = MAILBOX_CHOICES[role]
        mail["mailbox_directory"] = _checked(
            "--mailbox-directory", args.mailbox_directory, lambda v: check_choice(v, choices)
        )
    if args.mailbox_server is not None:
        mail["mailbox_server"] = _checked(
            "--mailbox-server", args.mailbox_server, _optional(check_domain)
        )
    if args.locking is not None:
        mail["locking"] = _checked("--locking", args.locking, lambda v: check_choice(v, LOCKINGS))
    elif mail["mailbox_directory"] != old_directory:
        mail["locking"] = default_locking(mail["mailbox_directory"])
    if args.forwarding is not None:
        mail["forwarding"] = _checked(
            "--forwarding", args.forwarding, lambda v: check_choice(v, FORWARDINGS)
        )
    if args.relay_host is not None:
        mail["relay_host"] = _checked("--relay-host", args.relay_host, _optional(check_host_spec))
    if args.host_alias is not None:
        mail["host_aliases"] = _flag_list("--host-alias", args.host_alias, check_domain)
    if args.local_domain is not None:
        mail["local_domains"] = _flag_list("--local-domain", args.local_domain, check_domain)
    _apply_pseudodomain_flags(draft, args)


def _apply_pseudodomain_flags(draft: Draft, args: argparse.Namespace) -> None:
    for protocol in args.remove_pseudodomain or ():
        if protocol not in PROTOCOLS:
            raise UsageError(f"--remove-pseudodomain: {check_choice(protocol, PROTOCOLS)}")
        draft.pseudodomains.pop(protocol, None)
    for spec in args.pseudodomain or ():
        protocol, *rest = _split_spec("--pseudodomain", spec, parts=4)
        entry = draft.entry(protocol)
        name = rest[0]
        if name:
            _checked("--pseudodomain", name, check_pseudodomain_name)
        changes: dict[str, Any] = {"name": name}
        if len(rest) > 1 and rest[1]:
            changes["routing"] = _checked(
                "--pseudodomain", rest[1], lambda v: check_choice(v, ROUTINGS)
            )
        if len(rest) > 2:
            changes["relay_host"] = _checked("--pseudodomain", rest[2], _optional(check_host_spec))
        draft.pseudodomains[protocol] = dataclasses.replace(entry, **changes)
    aliases: dict[str, list[str]] = {}
    for spec in args.pseudodomain_alias or ():
        protocol, alias = _split_spec("--pseudodomain-alias", spec)
        aliases.setdefault(protocol, [])
        if alias:
            aliases[protocol].append(
                _checked("--pseudodomain-alias", alias, check_pseudodomain_name)
            )
    per_protocol: list[tuple[str, str, str]] = [(protocol, "aliases", "") for protocol in aliases]
    for flag, key in (("--relay-protocol", "relay_protocol"), ("--transport", "transport")):
        for spec in getattr(args, key) or ():
            protocol, value = _split_spec(flag, spec)
            per_protocol.append((protocol, key, value))
    if args.node_address is not None:
        _checked("--node-address", args.node_address, _optional(check_node_address))
        per_protocol.append(("decnet", "node_address", args.node_address))
    if args.namespace is not None:
        _checked("--namespace", args.namespace, _optional(check_namespace))
        per_protocol.append(("decnet-osi", "namespace", args.namespace))
    for protocol, key, value in per_protocol:
        if protocol not in draft.pseudodomains:
            raise UsageError(
                f"{PROTOCOL_TITLES[protocol]} is not configured: "
                f"add it with --pseudodomain {protocol}:NAME"
            )
        new_value: Any = tuple(aliases[protocol]) if key == "aliases" else value
        draft.pseudodomains[protocol] = dataclasses.replace(
            draft.pseudodomains[protocol], **{key: new_value}
        )


def any_answer_flags(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) is not None for name in ANSWER_FLAGS)


# -- interactive questions ------------------------------------------------------------------


class Dialogue:
    """Asks questions through ``ask`` and reports through ``out``."""

    def __init__(self, ask: Ask, out: TextIO) -> None:
        self.ask = ask
        self.out = out

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def text(
        self,
        prompt: str,
        default: str,
        check: Callable[[str], str | None],
        *,
        optional: bool = False,
    ) -> str:
        """A one-value answer; empty keeps ``default``; ``-`` clears an optional answer."""
        while True:
            shown = f"{prompt} [{default}]: " if default else f"{prompt}: "
            reply = self.ask(shown).strip()
            if not reply:
                reply = default
            if optional and reply == _CLEAR:
                return ""
            if not reply and optional:
                return ""
            error = check(reply) if reply else "an answer is required"
            if error is None:
                return reply
            self.say(f"  {error}; please answer again.")

    def choice(self, prompt: str, default: str, choices: Sequence[str]) -> str:
        """One of ``choices``; a unique prefix is enough."""

        def check(value: str) -> str | None:
            return check_choice(value, choices)

        while True:
            reply = self.ask(f"{prompt} ({', '.join(choices)}) [{default}]: ").strip().lower()
            if not reply:
                reply = default
            if reply in choices:
                return reply
            matches = [c for c in choices if c.startswith(reply)]
            if len(matches) == 1:
                return matches[0]
            reason = check(reply) or ""
            if len(matches) > 1:
                reason = f"{reply!r} could be {' or '.join(matches)}"
            self.say(f"  {reason}; please answer again.")

    def names(
        self, prompt: str, default: Sequence[str], check: Callable[[str], str | None]
    ) -> list[str]:
        """A list answer (comma-separated; ``-`` for none); empty keeps ``default``."""
        shown_default = ", ".join(default) if default else _CLEAR
        while True:
            reply = self.ask(f"{prompt} (comma-separated, '-' for none) [{shown_default}]: ")
            reply = reply.strip()
            values = list(default) if not reply else split_list(reply)
            error = _each(check)(values)
            if error is None:
                return values
            self.say(f"  {error}; please answer again.")

    def yes_no(self, prompt: str, *, default: bool) -> bool:
        hint = "[Y/n]" if default else "[y/N]"
        while True:
            reply = self.ask(f"{prompt} {hint} ").strip().lower()
            if not reply:
                return default
            if reply in ("y", "yes"):
                return True
            if reply in ("n", "no"):
                return False
            self.say("  please answer yes or no.")


def interview(draft: Draft, dialogue: Dialogue, *, had_file: bool) -> None:
    """Ask the worksheet questions in the chapter's order, editing ``draft``."""
    mail = draft.mail
    say = dialogue.say
    say("Basic Mail Setup (12.2.3.1). Press Enter to keep the value in brackets.")
    draft.set_role(dialogue.choice("Role of this system", mail["role"], ROLES))
    role = mail["role"]
    if role == "client":
        say("The mail server receives all outgoing mail; the domain name (e.g. big.com) is")
        say("better than one host, as no single server can then interrupt mail service.")
        mail["mail_server"] = dialogue.text("Mail server", mail["mail_server"], check_host_spec)
    if role == "server":
        mail["top_domain"] = dialogue.text(
            "Top domain (e.g. big.com for nyc.big.com)", mail["top_domain"], check_domain
        )
    if role != "client":
        mail["local_domains"] = dialogue.names(
            "Local mail domains", mail["local_domains"], check_domain
        )
    old_directory = mail["mailbox_directory"]
    mail["mailbox_directory"] = dialogue.choice(
        "Mailbox directory", old_directory, MAILBOX_CHOICES[role]
    )
    directory = mail["mailbox_directory"]
    if directory == "nfs-client":
        mail["mailbox_server"] = dialogue.text(
            "Mailbox server (the system exporting the mailbox directory)",
            mail["mailbox_server"],
            check_domain,
        )
    keep = had_file and directory == old_directory
    locking = mail["locking"] if keep else default_locking(directory)
    mail["locking"] = dialogue.choice("Locking", locking, LOCKINGS)
    say("Mail Protocol (12.2.3.2).")
    if role != "client":
        mail["forwarding"] = dialogue.choice(
            "Forward SMTP mail to a relay", mail["forwarding"], FORWARDINGS
        )
        if mail["forwarding"] != "none":
            mail["relay_host"] = dialogue.text("Relay host", mail["relay_host"], check_host_spec)
    mail["host_aliases"] = dialogue.names("Host aliases", mail["host_aliases"], check_domain)
    if role == "server":
        _interview_protocols(draft, dialogue)


def _interview_protocols(draft: Draft, dialogue: Dialogue) -> None:
    current = list(draft.pseudodomains)
    wanted = dialogue.names(
        "Gateway protocols besides SMTP (" + ", ".join(PROTOCOLS) + ")",
        current,
        lambda value: check_choice(value, PROTOCOLS),
    )
    kept: dict[str, PseudodomainSection] = {}
    for protocol in dict.fromkeys(wanted):
        kept[protocol] = _interview_protocol(draft.entry(protocol), dialogue)
    draft.pseudodomains = kept


def _interview_protocol(entry: PseudodomainSection, dialogue: Dialogue) -> PseudodomainSection:
    protocol = entry.protocol
    title = PROTOCOL_TITLES[protocol]
    dialogue.say(f"{title}:")
    routing = dialogue.choice(f"  {title} routing", entry.routing, ROUTINGS)
    changes: dict[str, Any] = {"routing": routing, "relay_host": "", "transport": ""}
    if routing == "relay":
        changes["relay_host"] = dialogue.text(
            f"  {title} relay's host name", entry.relay_host, check_host_spec
        )
        changes["relay_protocol"] = dialogue.text(
            f"  {title} relay's protocol", entry.relay_protocol or "smtp", check_domain
        )
    if routing == "direct":
        changes["transport"] = dialogue.text(
            f"  {title} delivery program (optional)",
            entry.transport,
            lambda v: None,
            optional=True,
        )
    if protocol in NAMED_PROTOCOLS:
        changes["name"] = dialogue.text(
            f"  {title} pseudodomain",
            entry.name or DEFAULT_NAMES[protocol],
            check_pseudodomain_name,
        )
    changes["aliases"] = tuple(
        dialogue.names(f"  {title} pseudodomain aliases", entry.aliases, check_pseudodomain_name)
    )
    if protocol == "decnet":
        changes["node_address"] = dialogue.text(
            f"  {title} node address of this system (area.node, e.g. 32.958)",
            entry.node_address,
            check_node_address,
            optional=True,
        )
    if protocol == "decnet-osi":
        changes["namespace"] = dialogue.text(
            f"  {title} DNS name space", entry.namespace, check_namespace, optional=True
        )
    return dataclasses.replace(entry, **changes)


# -- writing and reloading ------------------------------------------------------------------


def show_diff(old_text: str, new_text: str, path: Path, out: TextIO) -> None:
    """Write the unified diff from the current file to the new text."""
    had = bool(old_text)
    diff = difflib.unified_diff(
        old_text.splitlines(keepends=True),
        new_text.splitlines(keepends=True),
        fromfile=f"{path} (current)" if had else "/dev/null",
        tofile=f"{path} (new)",
    )
    for line in diff:
        out.write(line if line.endswith("\n") else line + "\n")
    out.flush()


def write_atomically(path: Path, text: str) -> Path | None:
    """Replace ``path`` by ``text`` through a temporary file and a rename.

    The previous file, if any, is kept as ``path.bak`` (returned).  A symbolic link is
    followed, so its target is what is replaced.
    """
    target = Path(os.path.realpath(path))
    directory = target.parent
    backup: Path | None = None
    mode = 0o644
    if target.exists():
        mode = stat.S_IMODE(target.stat().st_mode)
        backup = target.with_name(target.name + ".bak")
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, mode)
        if backup is not None:
            shutil.copy2(target, backup)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return backup


def running_daemon(pid_file: Path) -> int | None:
    """The process id in ``pid_file`` if that process is alive, else None."""
    try:
        pid = int(pid_file.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by someone else: signalling will say so
    return pid


def restart_needed(old: Config, new: Config) -> list[str]:
    """Changed options that a SIGHUP does not apply (the daemon must be restarted)."""
    changed = [
        f"mail.{f.name}"
        for f in dataclasses.fields(MailSection)
        if f.name not in RELOADED_MAIL_KEYS
        and getattr(old.mail, f.name) != getattr(new.mail, f.name)
    ]
    if old.pseudodomain != new.pseudodomain:
        changed.append("pseudodomain")
    return changed


# -- the command ----------------------------------------------------------------------------


def _stdin_ask(stdin: TextIO, stdout: TextIO) -> Ask:
    def ask(prompt: str) -> str:
        stdout.write(prompt)
        stdout.flush()
        line = stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    return ask


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def run_setup(
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    ask: Ask | None = None,
) -> int:
    """``posthouse setup`` with the parsed ``args``; returns the exit status.

    ``ask(prompt) -> answer`` asks one question (raising EOFError when there is no more
    input); by default it writes the prompt to ``stdout`` and reads a line of ``stdin``.
    """
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    dialogue = Dialogue(ask if ask is not None else _stdin_ask(stdin, out), out)

    def fail(status: int, message: str) -> int:
        err.write(f"setup: {message}\n")
        err.flush()
        return status

    if args.interactive:
        interactive = True
    elif args.batch or args.yes or any_answer_flags(args):
        interactive = False
    else:
        interactive = ask is not None or _isatty(stdin)
    path = config_path(getattr(args, "config", None))
    try:
        old_text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        return fail(EX_CONFIG, f"{path}: cannot read: {exc}")
    had_file = path.exists()
    try:
        old = parse_config(old_text, str(path)) if had_file else Config()
    except ConfigError as exc:
        return fail(EX_CONFIG, f"the current file is invalid, fix or move it first: {exc}")
    draft = Draft.of(old)
    try:
        apply_flags(draft, args)
        if interactive:
            interview(draft, dialogue, had_file=had_file)
    except UsageError as exc:
        return fail(EX_USAGE, str(exc))
    except AnswerError as exc:
        return fail(EX_CONFIG, str(exc))
    except (EOFError, KeyboardInterrupt):
        dialogue.say("")
        return fail(EX_DECLINED, "aborted, nothing written")
    draft.tidy()
    new = draft.apply(old)
    new_text = render_config(new)
    try:
        checked = parse_config(new_text, str(path))
    except ConfigError as exc:
        return fail(EX_CONFIG, f"the new configuration would be invalid: {exc}; nothing written")
    problems = check_config(checked)
    if problems:
        for problem in problems:
            err.write(f"setup: {problem}\n")
        return fail(EX_CONFIG, "invalid answers; nothing written")
    if new_text == old_text:
        dialogue.say(f"{path} is up to date; nothing to change.")
        return EX_OK
    show_diff(old_text, new_text, path, out)
    if not args.yes:
        try:
            accepted = dialogue.yes_no("Write this configuration?", default=False)
        except (EOFError, KeyboardInterrupt):
            accepted = False
        if not accepted:
            dialogue.say("Nothing written.")
            return EX_DECLINED
    try:
        backup = write_atomically(path, new_text)
    except OSError as exc:
        return fail(EX_CANTCREAT, f"{path}: cannot write: {exc.strerror or exc}")
    dialogue.say(f"Wrote {path}" + (f" (previous version in {backup})." if backup else "."))
    return _offer_reload(args, old, new, path, dialogue, interactive=interactive, err=err)


def _offer_reload(
    args: argparse.Namespace,
    old: Config,
    new: Config,
    path: Path,
    dialogue: Dialogue,
    *,
    interactive: bool,
    err: TextIO,
) -> int:
    pid_file = resolve_paths(new, str(path)).data_dir / PID_FILE
    pid = running_daemon(pid_file)
    if pid is None:
        dialogue.say("No running daemon found; the configuration applies when it starts.")
        return EX_OK
    if args.no_reload:
        dialogue.say(f"Not reloading the running daemon (pid {pid}).")
        return EX_OK
    if interactive:
        try:
            reload = dialogue.yes_no("Reload the running daemon now?", default=True)
        except (EOFError, KeyboardInterrupt):
            reload = False
        if not reload:
            dialogue.say(f"Not reloaded: send SIGHUP to {pid} (kill -HUP {pid}) to apply it.")
            return EX_OK
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        err.write(f"setup: cannot signal the daemon (pid {pid}): {exc.strerror or exc}\n")
        return EX_OK
    dialogue.say(f"Sent SIGHUP to the running daemon (pid {pid}): it re-reads {path}.")
    pending = restart_needed(old, new)
    if pending:
        dialogue.say(
            "A reload does not apply " + ", ".join(pending) + "; restart the daemon for those."
        )
    return EX_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    ask: Ask | None = None,
) -> int:
    """``setup`` as a stand-alone command (``--config FILE`` plus the setup options)."""
    parser = argparse.ArgumentParser(prog="posthouse setup")
    parser.add_argument("--config", metavar="FILE")
    configure_parser(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EX_OK if exc.code == 0 else EX_USAGE
    return run_setup(args, stdin=stdin, stdout=stdout, stderr=stderr, ask=ask)
