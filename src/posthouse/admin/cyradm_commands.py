"""cyradm's commands: their names and Cyrus aliases, arguments, help and output.

Each command takes the words of one command line, calls :class:`CyradmClient` and writes
what Cyrus's cyradm writes (``Cyrus::IMAP::Shell``): ``listmailbox`` in sorted columns,
``listacl`` one ``identifier rights`` line per entry, ``listquota`` ``" STORAGE used/limit
(percent%)"``.  A failure raises :class:`CommandFailed` with the line to show on standard
error (``createmailbox: Mailbox already exists``, the server's own text); the shell
(``posthouse.cli.cyradm``) prints it and decides what it means for the exit status.
Where Cyrus's cyradm keeps quiet about an error (``listquota`` of a root that has no quota
prints an empty line), this one reports the server's text.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TextIO, TypeVar

from posthouse.admin.cyradm_client import (
    CyradmClient,
    QuotaUsage,
    ServerRefused,
)
from posthouse.admin.imap_words import WordError

__all__ = ["COMMANDS", "CommandFailed", "Quit", "command_named", "execute", "help_text"]

#: Attributes of LIST entries that are not mailboxes one can act on (Cyrus skips them too).
_NOT_MAILBOXES = {"\\noselect", "\\nonexistent", "\\placeholder"}


class CommandFailed(Exception):
    """The command did not succeed; the message is the line to show on standard error."""


class Quit(Exception):
    """``quit`` / ``exit``: leave the shell with this status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


T = TypeVar("T")

Runner = Callable[[CyradmClient, list[str], TextIO], None]


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    arguments: str
    summary: str
    run: Runner | None  # None: handled by the shell itself (help, quit)

    def usage(self) -> str:
        return f"usage: {self.name} {self.arguments}".rstrip()


def _usage(command: str) -> CommandFailed:
    return CommandFailed(command_named(command).usage())


def _refused(command: str, imap_command: str, exc: ServerRefused) -> CommandFailed:
    if exc.status == "BAD":  # RFC 3501 §7.1.3: unknown command or arguments it cannot parse
        return CommandFailed(
            f"{command}: the server does not support {imap_command} as sent ({exc.text})"
        )
    return CommandFailed(f"{command}: {exc.text}")


def _call(command: str, imap_command: str, action: Callable[[], T]) -> T:
    """*action*'s result; the server's refusal as :class:`CommandFailed`."""
    try:
        return action()
    except ServerRefused as exc:
        raise _refused(command, imap_command, exc) from exc
    except WordError as exc:
        raise CommandFailed(f"{command}: {exc}") from exc


def _is_pattern(name: str) -> bool:
    return "*" in name or "%" in name


def _selectable(client: CyradmClient, pattern: str, command: str) -> list[str]:
    """The mailboxes a ``*``/``%`` pattern names (as Cyrus's sam/dam/lam/dm expand them)."""
    found = _call(command, "LIST", partial(client.list_mailboxes, pattern))
    return [
        entry.name
        for entry in found
        if not {attribute.lower() for attribute in entry.attributes} & _NOT_MAILBOXES
    ]


# --- the commands --------------------------------------------------------------------------


def _createmailbox(client: CyradmClient, args: list[str], out: TextIO) -> None:
    args, partition = _partition_option(args, "createmailbox")
    if not 1 <= len(args) <= 2 or (partition and len(args) == 2):
        raise _usage("createmailbox")
    partition = partition or (args[1] if len(args) == 2 else None)
    _call("createmailbox", "CREATE", partial(client.create, args[0], partition))


def _deletemailbox(client: CyradmClient, args: list[str], out: TextIO) -> None:
    if len(args) != 1:
        raise _usage("deletemailbox")
    if not _is_pattern(args[0]):
        _call("deletemailbox", "DELETE", partial(client.delete, args[0]))
        return
    for name in _selectable(client, args[0], "deletemailbox"):
        out.write(f"Deleting mailbox {name}...")
        out.flush()
        _call("deletemailbox", "DELETE", partial(client.delete, name))
        out.write("OK.\n")


def _renamemailbox(client: CyradmClient, args: list[str], out: TextIO) -> None:
    args, partition = _partition_option(args, "renamemailbox")
    if len(args) == 3 and partition is None:
        args, partition = args[:2], args[2]
    if len(args) != 2:
        raise _usage("renamemailbox")
    _call("renamemailbox", "RENAME", partial(client.rename, args[0], args[1], partition))


def _partition_option(args: list[str], command: str) -> tuple[list[str], str | None]:
    """``--partition NAME`` (or Cyrus's ``-partition``, ``-p``) taken out of *args*."""
    rest: list[str] = []
    partition = None
    words = iter(args)
    for word in words:
        if word in ("--partition", "-partition", "-p"):
            partition = next(words, None)
            if partition is None:
                raise _usage(command)
        elif word.startswith("-") and word != "-":
            raise _usage(command)
        else:
            rest.append(word)
    return rest, partition


def _listmailbox(client: CyradmClient, args: list[str], out: TextIO) -> None:
    if len(args) > 2:
        raise _usage("listmailbox")
    pattern = args[0] if args else "*"
    reference = args[1] if len(args) == 2 else ""
    found = _call("listmailbox", "LIST", partial(client.list_mailboxes, pattern, reference))
    entries = sorted(
        f"{entry.name} ({' '.join(entry.attributes)})" if entry.attributes else entry.name
        for entry in found
    )
    out.write(columns(entries, int(os.environ.get("COLUMNS", "") or 79)))


def columns(entries: list[str], line_length: int = 79) -> str:
    """*entries* down then across in columns, as Cyrus's ``listmailbox`` prints them."""
    if not entries:
        return ""
    width = min(max(len(entry) + 1 for entry in entries), line_length)
    per_line = max(line_length // width, 1)
    rows = (len(entries) + per_line - 1) // per_line
    lines = []
    for row in range(rows):
        cells = entries[row::rows]
        lines.append("".join(cell + " " * (width + 1 - len(cell)) for cell in cells))
    return "".join(line + "\n" for line in lines)


def _listacl(client: CyradmClient, args: list[str], out: TextIO) -> None:
    if len(args) != 1:
        raise _usage("listacl")
    if not _is_pattern(args[0]):
        entries = _call("listacl", "GETACL", partial(client.getacl, args[0]))
        out.write("".join(f"{identifier} {rights}\n" for identifier, rights in entries))
        return
    for name in _selectable(client, args[0], "listacl"):
        found = _call("listacl", "GETACL", partial(client.getacl, name))
        out.write(f"{name}:\n" + "".join(f"  {ident} {rights}\n" for ident, rights in found))


def _setacl(client: CyradmClient, args: list[str], out: TextIO) -> None:
    if len(args) < 3 or (len(args) - 1) % 2:
        raise _usage("setacl")
    pairs = list(zip(args[1::2], args[2::2], strict=True))

    def set_all(mailbox: str) -> None:
        for identifier, rights in pairs:
            client.setacl(mailbox, identifier, rights)

    _on_each(client, args[0], "setacl", "SETACL", "Setting ACL on", set_all, out)


def _deleteacl(client: CyradmClient, args: list[str], out: TextIO) -> None:
    if len(args) < 2:
        raise _usage("deleteacl")

    def delete_all(mailbox: str) -> None:
        for identifier in args[1:]:
            client.deleteacl(mailbox, identifier)

    _on_each(client, args[0], "deleteacl", "DELETEACL", "Deleting acl on", delete_all, out)


def _on_each(
    client: CyradmClient,
    mailbox: str,
    command: str,
    wire: str,
    doing: str,
    action: Callable[[str], None],
    out: TextIO,
) -> None:
    """Run ``action`` on ``mailbox``, or, for a pattern, on each selectable match saying
    ``DOING NAME...OK.`` as Cyrus's cyradm does."""
    if not _is_pattern(mailbox):
        _call(command, wire, partial(action, mailbox))
        return
    for name in _selectable(client, mailbox, command):
        out.write(f"{doing} {name}...")
        out.flush()
        _call(command, wire, partial(action, name))
        out.write("OK.\n")


def _setquota(client: CyradmClient, args: list[str], out: TextIO) -> None:
    """``setquota ROOT RESOURCE N [RESOURCE N ...]``, ``setquota ROOT N`` (STORAGE), and
    ``none`` for a limit removes the root's limits (``SETQUOTA root ()``, RFC 9208 §4.3)."""
    if len(args) == 2:  # Cyrus's short form, which also announces what it does
        out.write("remove quota\n" if args[1] == "none" else f"quota:{args[1]}\n")
        args = [args[0]] if args[1] == "none" else [args[0], "STORAGE", args[1]]
    if not args or (len(args) - 1) % 2:
        raise _usage("setquota")
    limits: dict[str, int] = {}
    remove = False
    for resource, value in zip(args[1::2], args[2::2], strict=True):
        if value == "none":
            remove = True
        elif not value.isdigit() or len(value) > 19:
            raise CommandFailed(f"setquota: {resource}: {value}: not a number")
        else:
            limits[resource.upper()] = int(value)
    if remove and limits:
        raise CommandFailed("setquota: none removes every limit of the root: give no other")
    _call("setquota", "SETQUOTA", partial(client.setquota, args[0], limits))


def _usage_text(usage: tuple[QuotaUsage, ...] | list[QuotaUsage]) -> str:
    text = ""
    for item in usage:
        text += f" {item.resource} {item.used}/{item.limit}"
        if item.limit:
            text += f" ({_perl_number(item.used * 100 / item.limit)}%)"
    return text


def _perl_number(value: float) -> str:
    """A number as Perl prints it (15 significant digits, no trailing ``.0``)."""
    return f"{value:.15g}"


def _listquota(client: CyradmClient, args: list[str], out: TextIO) -> None:
    if len(args) != 1:
        raise _usage("listquota")
    usage = _call("listquota", "GETQUOTA", partial(client.getquota, args[0]))
    out.write(_usage_text(usage) + "\n")


def _listquotaroot(client: CyradmClient, args: list[str], out: TextIO) -> None:
    if len(args) != 1:
        raise _usage("listquotaroot")
    roots = _call("listquotaroot", "GETQUOTAROOT", partial(client.getquotaroot, args[0]))
    if not roots.roots:
        out.write("\n")
    for root in roots.roots:
        out.write(root + _usage_text(roots.usage.get(root, ())) + "\n")


def _reconstruct(client: CyradmClient, args: list[str], out: TextIO) -> None:
    """``reconstruct [-r] MAILBOX``; prints what the server reports (Cyrus's cyradm prints
    nothing: its server reports nothing)."""
    recursive = bool(args) and args[0] == "-r"
    args = args[1:] if recursive else args
    if len(args) != 1 or args[0].startswith("-"):
        raise _usage("reconstruct")
    lines = _call(
        "reconstruct", "RECONSTRUCT", partial(client.reconstruct, args[0], recursive=recursive)
    )
    out.write("".join(line + "\n" for line in lines))


COMMANDS: tuple[Command, ...] = (
    Command(
        "createmailbox",
        ("cm", "create"),
        "[--partition partition] mailbox [partition]",
        "create mailbox",
        _createmailbox,
    ),
    Command(
        "deleteacl",
        ("dam", "deleteaclmailbox"),
        "mailbox id [id ...]",
        "remove ACLs from mailbox",
        _deleteacl,
    ),
    Command("deletemailbox", ("dm", "delete"), "mailbox", "delete mailbox", _deletemailbox),
    Command("exit", ("quit",), "[number]", "exit cyradm", None),
    Command("help", ("?",), "[command]", "show commands", None),
    Command("listacl", ("lam", "listaclmailbox"), "mailbox", "list ACLs on mailbox", _listacl),
    Command("listmailbox", ("lm",), "[pattern [reference]]", "list mailboxes", _listmailbox),
    Command("listquota", ("lq",), "root", "list quotas on specified root", _listquota),
    Command(
        "listquotaroot",
        ("lqr", "lqm"),
        "mailbox",
        "show quota roots and quotas for mailbox",
        _listquotaroot,
    ),
    Command("reconstruct", (), "[-r] mailbox", "reconstruct mailbox (if supported)", _reconstruct),
    Command(
        "renamemailbox",
        ("renm", "rename"),
        "[--partition partition] oldname newname [partition]",
        "rename (and optionally relocate) mailbox",
        _renamemailbox,
    ),
    Command(
        "setacl",
        ("sam", "setaclmailbox"),
        "mailbox id rights [id rights ...]",
        "set ACLs on mailbox",
        _setacl,
    ),
    Command(
        "setquota",
        ("sq",),
        "root resource value [resource value ...] (value 'none' removes the limits)",
        "set quota on mailbox or resource",
        _setquota,
    ),
)

_BY_NAME = {name: command for command in COMMANDS for name in (command.name, *command.aliases)}


def command_named(name: str) -> Command:
    """The command called *name* or by the alias *name*; :class:`CommandFailed` if none."""
    command = _BY_NAME.get(name)
    if command is None:
        raise CommandFailed(f"{name}: unknown command (help lists the commands)")
    return command


def all_names() -> list[str]:
    """Every command name and alias (for completion)."""
    return sorted(_BY_NAME)


def help_text(names: list[str]) -> str:
    """``help``: every command with its aliases and summary; ``help CMD``: its usage."""
    if not names:
        labels = {command: ", ".join((command.name, *command.aliases)) for command in COMMANDS}
        width = max(len(label) for label in labels.values())
        return "".join(f"{labels[c]:<{width}}  {c.summary}\n" for c in COMMANDS)
    text = ""
    for name in names:
        command = command_named(name)
        alias = f"{name}, alias for " if name != command.name else ""
        text += f"{alias}{command.name} {command.arguments}\n\t{command.summary}\n"
    return text


def execute(client: CyradmClient, argv: list[str], out: TextIO) -> None:
    """Run one command line's words; :class:`CommandFailed` or :class:`Quit` otherwise."""
    command = command_named(argv[0])
    args = argv[1:]
    if command.name == "help":
        out.write(help_text(args))
    elif command.name == "exit":
        if len(args) > 1 or (args and not args[0].isdigit()):
            raise _usage("exit")
        raise Quit(int(args[0]) if args else 0)
    else:
        assert command.run is not None
        command.run(client, args, out)
