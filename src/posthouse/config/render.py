"""Writing a ``Config`` back as a readable TOML configuration file.

``render_config(config)`` is the inverse of ``posthouse.config.load.parse_config``: for every
valid configuration ``parse_config(render_config(c), source) == c``.  It is what
``posthouse setup`` writes.  The text lists

* the ``[mail]`` worksheet answers of chapter 12.2.3 (role, mail server, top domain, local
  domains, mailbox directory and server, locking, forwarding, relay host, host aliases)
  always, in the worksheets' order and each with a short comment, so the file reads like a
  filled-in worksheet;
* every other option only when it differs from the built-in default in
  ``posthouse.config.schema`` (sections with nothing to say are left out);
* ``[[listener]]``, ``[[route]]`` and ``[[pseudodomain]]`` tables when they differ from the
  defaults.  An empty listener list, which cannot be written as tables, becomes
  ``listener = []`` at the top of the file.

The whole text is made from the values: for a file that exists, ``posthouse setup`` edits
only what changes instead (:mod:`posthouse.config.edit`), and keeps the rest as written.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from posthouse.config.schema import Config, MailSection

HEADER = (
    "# posthouse configuration, written by 'posthouse setup'.\n"
    "# Options at their built-in defaults are left out, except the worksheet answers of\n"
    "# [mail] (chapter 12.2.3), which are always listed.\n"
)

#: The ``[mail]`` keys of the Basic Mail Setup and Mail Protocol worksheets, in their order.
WORKSHEET_KEYS: tuple[str, ...] = (
    "role",
    "mail_server",
    "top_domain",
    "local_domains",
    "mailbox_directory",
    "mailbox_server",
    "locking",
    "forwarding",
    "relay_host",
    "host_aliases",
    "masquerade",
    "masquerade_as",
)

#: Keys always written in each entry of an array of tables, for readability.
ALWAYS_IN_ENTRY: dict[str, tuple[str, ...]] = {
    "listener": ("protocol", "address", "port"),
    "route": ("domain", "to"),
    "pseudodomain": ("protocol", "name", "routing"),
}

SECTION_COMMENTS: dict[str, str] = {
    "server": "Process settings of 'posthouse serve'.",
    "mail": "The Basic Mail Setup and Mail Protocol worksheets (12.2.3).",
    "smtp": "Limits shared by the SMTP listeners.",
    "pop3": "The POP3 server (12.4).",
    "listener": "A listening socket.",
    "tls": "Certificate for STARTTLS and implicit TLS.",
    "aliases": "The aliases file and its database.",
    "users": "Where users come from.",
    "queue": "The mail queue.",
    "route": "A static next hop that overrides DNS.",
    "pseudodomain": "A gateway protocol from the Mail Protocol worksheet (12.2.3.2).",
}

KEY_COMMENTS: dict[tuple[str, str], str] = {
    ("mail", "role"): "standalone, client or server",
    (
        "mail",
        "mail_server",
    ): "clients only: mail server (host or, better, domain) for outgoing mail",
    ("mail", "top_domain"): "servers only: highest domain of the organisation, e.g. big.com",
    ("mail", "local_domains"): "mail domains delivered on this system",
    ("mail", "mailbox_directory"): "local, nfs-client, nfs-server or server",
    ("mail", "mailbox_server"): "nfs-client: the host exporting the mailbox directory",
    ("mail", "locking"): "lockf, lockfile or both (must match the NFS server's)",
    ("mail", "forwarding"): "SMTP forwarding to the relay: none, internet, nonlocal or local",
    ("mail", "relay_host"): "the relay for forwarded mail (forwarding other than none)",
    ("mail", "host_aliases"): "other names of this host that mail may be addressed to",
    ("mail", "masquerade"): "domain-based addresses (12.1.2): user@host.domain -> user@domain",
    ("mail", "masquerade_as"): "the domain to masquerade as (empty: this host's domain)",
    ("aliases", "default_user"): "account that aliases-file programs and files run as",
    ("pseudodomain", "protocol"): "decnet, decnet-osi, uucp, mts or x25",
    ("pseudodomain", "routing"): "direct, relay or internet",
    ("pseudodomain", "node_address"): "DECnet address of this machine (area.node)",
    ("pseudodomain", "namespace"): "DECnet/OSI: namespace:.site.nodename",
}

_MAX_INLINE = 96
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(text: str) -> str:
    """A TOML basic string for ``text`` (quotes, backslashes and control characters escaped)."""
    out = ['"']
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_value(value: Any) -> str:
    """One option value in TOML: string, boolean, integer, float or a list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, tuple | list):
        items = [toml_value(item) for item in value]
        inline = "[" + ", ".join(items) + "]"
        if len(inline) <= _MAX_INLINE:
            return inline
        return "[\n" + "".join(f"    {item},\n" for item in items) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def key_lines(section: str, key: str, value: Any) -> list[str]:
    """An option's line, after its short comment when it has one."""
    lines = []
    comment = KEY_COMMENTS.get((section, key))
    if comment:
        lines.append(f"# {comment}")
    lines.append(f"{key} = {toml_value(value)}")
    return lines


def _changed_keys(item: Any, default: Any, always: tuple[str, ...] = ()) -> list[str]:
    """Field names of ``item`` to write: those in ``always``, then those not at ``default``."""
    names = [f.name for f in dataclasses.fields(item)]
    keys = [name for name in always if name in names]
    for name in names:
        if name not in keys and getattr(item, name) != getattr(default, name):
            keys.append(name)
    return keys


def table_lines(header: str, section: str, item: Any, keys: list[str]) -> list[str]:
    """A table's lines: its comment, its header and the ``keys`` of ``item``."""
    comment = SECTION_COMMENTS.get(section)
    lines = ([f"# {comment}"] if comment else []) + [header]
    for key in keys:
        lines.extend(key_lines(section, key, getattr(item, key)))
    return lines


def _mail_table(mail: MailSection) -> list[str]:
    lines = [f"# {SECTION_COMMENTS['mail']}", "[mail]", "# -- Basic Mail Setup worksheet"]
    for key in WORKSHEET_KEYS:
        if key == "forwarding":
            lines.append("# -- Mail Protocol worksheet")
        lines.extend(key_lines("mail", key, getattr(mail, key)))
    others = [k for k in _changed_keys(mail, MailSection()) if k not in WORKSHEET_KEYS]
    if others:
        lines.append("# -- other options")
        for key in others:
            lines.extend(key_lines("mail", key, getattr(mail, key)))
    return lines


def render_config(config: Config) -> str:
    """The TOML text of ``config`` (see the module docstring for what is written)."""
    defaults = Config()
    top: list[str] = []
    blocks: list[list[str]] = []
    for f in dataclasses.fields(Config):
        name = f.name
        value = getattr(config, name)
        if name == "mail":
            blocks.append(_mail_table(value))
        elif isinstance(value, tuple):
            if value == getattr(defaults, name):
                continue
            if not value:
                top.append(f"{name} = []  # none at all (the default has entries)")
                continue
            entry_type = type(value[0])
            for entry in value:
                keys = _changed_keys(entry, entry_type(), ALWAYS_IN_ENTRY.get(name, ()))
                blocks.append(table_lines(f"[[{name}]]", name, entry, keys))
        else:
            keys = _changed_keys(value, getattr(defaults, name))
            if keys:
                blocks.append(table_lines(f"[{name}]", name, value, keys))
    parts = [HEADER]
    if top:
        parts.append("\n".join(top) + "\n")
    parts.extend("\n".join(block) + "\n" for block in blocks)
    return "\n".join(parts)
