"""Scripted mode of ``posthouse setup``: the answer flags and how they become answers.

This module owns the worksheet options of the ``setup`` command line
(:func:`configure_parser`) and :func:`apply_flags`, which checks the answers given as flags
and puts them into a :class:`~posthouse.admin.setup_answers.Draft`.  Answers not given keep
their current values.  Repeatable list flags (``--host-alias``, ``--local-domain``) replace
the list; a single empty value (``--host-alias=``) empties it.  ``--pseudodomain
PROTOCOL:NAME[:ROUTING[:RELAY_HOST]]`` adds or updates the entry of one protocol (other
protocols are kept; ``--remove-pseudodomain PROTOCOL`` drops one).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from posthouse.admin.errors import InvalidRequest
from posthouse.admin.setup_answers import (
    FORWARDINGS,
    LOCKINGS,
    MAILBOX_CHOICES,
    PROTOCOL_TITLES,
    PROTOCOLS,
    ROLES,
    ROUTINGS,
    AnswerError,
    Draft,
    check_choice,
    check_domain,
    check_host_spec,
    check_namespace,
    check_node_address,
    check_pseudodomain_name,
    check_relay_protocol,
    default_locking,
    optional_check,
    split_list,
)

__all__ = ["ANSWER_FLAGS", "any_answer_flags", "apply_flags", "configure_parser"]

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
    "masquerade",
    "masquerade_as",
    "masquerade_exception",
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
        "--masquerade",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="domain-based addresses (12.1.2): user@host.domain leaves as user@domain",
    )
    answers.add_argument(
        "--masquerade-as",
        metavar="DOMAIN",
        help="the domain to masquerade as ('' : this host's domain)",
    )
    answers.add_argument(
        "--masquerade-exception",
        metavar="HOST",
        action="append",
        help="host or domain never masqueraded (repeatable; '' for none)",
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
    parser.add_argument(
        "--no-restart",
        action="store_true",
        help="do not restart the running daemon (the changes apply at its next start)",
    )


def _split_spec(flag: str, spec: str, *, parts: int = 2) -> list[str]:
    pieces = spec.split(":", parts - 1)
    protocol = pieces[0].strip().lower()
    if len(pieces) < 2 or protocol not in PROTOCOLS:
        raise InvalidRequest(
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
    """Put the answers given as flags into ``draft``; InvalidRequest or AnswerError."""
    mail = draft.mail
    old_directory = mail["mailbox_directory"]
    if args.role is not None:
        draft.set_role(_checked("--role", args.role, lambda v: check_choice(v, ROLES)))
    role = mail["role"]
    if args.mail_server is not None:
        mail["mail_server"] = _checked("--mail-server", args.mail_server, check_host_spec)
    if args.top_domain is not None:
        mail["top_domain"] = _checked("--top-domain", args.top_domain, optional_check(check_domain))
    if args.mailbox_directory is not None:
        choices = MAILBOX_CHOICES[role]
        mail["mailbox_directory"] = _checked(
            "--mailbox-directory", args.mailbox_directory, lambda v: check_choice(v, choices)
        )
    if args.mailbox_server is not None:
        mail["mailbox_server"] = _checked(
            "--mailbox-server", args.mailbox_server, optional_check(check_domain)
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
        mail["relay_host"] = _checked(
            "--relay-host", args.relay_host, optional_check(check_host_spec)
        )
    if args.host_alias is not None:
        mail["host_aliases"] = _flag_list("--host-alias", args.host_alias, check_domain)
    if args.local_domain is not None:
        mail["local_domains"] = _flag_list("--local-domain", args.local_domain, check_domain)
    if args.masquerade is not None:
        mail["masquerade"] = args.masquerade
    if args.masquerade_as is not None:
        mail["masquerade_as"] = _checked(
            "--masquerade-as", args.masquerade_as, optional_check(check_domain)
        )
    if args.masquerade_exception is not None:
        mail["masquerade_exceptions"] = tuple(
            _flag_list("--masquerade-exception", args.masquerade_exception, check_domain)
        )
    _apply_pseudodomain_flags(draft, args)


def _apply_pseudodomain_flags(draft: Draft, args: argparse.Namespace) -> None:
    for protocol in args.remove_pseudodomain or ():
        if protocol not in PROTOCOLS:
            raise InvalidRequest(f"--remove-pseudodomain: {check_choice(protocol, PROTOCOLS)}")
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
            changes["relay_host"] = _checked(
                "--pseudodomain", rest[2], optional_check(check_host_spec)
            )
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
            if key == "relay_protocol":
                _checked(flag, value, check_relay_protocol)
            per_protocol.append((protocol, key, value))
    if args.node_address is not None:
        _checked("--node-address", args.node_address, optional_check(check_node_address))
        per_protocol.append(("decnet", "node_address", args.node_address))
    if args.namespace is not None:
        _checked("--namespace", args.namespace, optional_check(check_namespace))
        per_protocol.append(("decnet-osi", "namespace", args.namespace))
    for protocol, key, value in per_protocol:
        if protocol not in draft.pseudodomains:
            raise InvalidRequest(
                f"{PROTOCOL_TITLES[protocol]} is not configured: "
                f"add it with --pseudodomain {protocol}:NAME"
            )
        new_value: Any = tuple(aliases[protocol]) if key == "aliases" else value
        draft.pseudodomains[protocol] = dataclasses.replace(
            draft.pseudodomains[protocol], **{key: new_value}
        )


def any_answer_flags(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) is not None for name in ANSWER_FLAGS)
