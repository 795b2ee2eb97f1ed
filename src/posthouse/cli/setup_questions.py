"""Interactive mode of ``posthouse setup``: the worksheet questions.

This module owns :class:`Dialogue` (asking one question, showing the current value as the
default and asking again, with the reason, after an invalid answer) and :func:`interview`,
which asks the Basic Mail Setup and Mail Protocol worksheets' questions (12.2.3) in the
chapter's order for the chosen role, editing a :class:`~posthouse.admin.setup_answers.Draft`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from posthouse.admin.setup_answers import (
    CLEAR,
    DEFAULT_NAMES,
    FORWARDINGS,
    LOCKINGS,
    MAILBOX_CHOICES,
    NAMED_PROTOCOLS,
    PROTOCOL_TITLES,
    PROTOCOLS,
    ROLES,
    ROUTINGS,
    Draft,
    check_choice,
    check_domain,
    check_host_spec,
    check_namespace,
    check_node_address,
    check_pseudodomain_name,
    check_relay_protocol,
    default_locking,
    each_check,
    split_list,
)
from posthouse.config.schema import PseudodomainSection

__all__ = ["Ask", "Dialogue", "interview"]

Ask = Callable[[str], str]


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
            if optional and reply == CLEAR:
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
        shown_default = ", ".join(default) if default else CLEAR
        while True:
            reply = self.ask(f"{prompt} (comma-separated, '-' for none) [{shown_default}]: ")
            reply = reply.strip()
            values = list(default) if not reply else split_list(reply)
            error = each_check(check)(values)
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
    _interview_masquerade(mail, dialogue)
    if role == "server":
        _interview_protocols(draft, dialogue)


def _interview_masquerade(mail: dict[str, Any], dialogue: Dialogue) -> None:
    """Domain-based addresses (12.1.2): joe@host1.nyc.big.com leaves as joe@nyc.big.com."""
    dialogue.say("Domain-based addresses (12.1.2): senders of this host's mail can be")
    dialogue.say("rewritten from user@host.domain to user@domain (masquerading).")
    mail["masquerade"] = dialogue.yes_no(
        "Use domain-based addresses (masquerade)", default=bool(mail["masquerade"])
    )
    if mail["masquerade"]:
        mail["masquerade_as"] = dialogue.text(
            "Masquerade as (empty: this host's domain, e.g. nyc.big.com for host1.nyc.big.com)",
            mail["masquerade_as"],
            check_domain,
            optional=True,
        )


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
            f"  {title} relay's protocol", entry.relay_protocol or "smtp", check_relay_protocol
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
