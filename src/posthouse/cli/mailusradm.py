"""``posthouse mailusradm``: list users' mail service types and change them.

::

    posthouse mailusradm list [PATTERN]
    posthouse mailusradm set USER TYPE [--password-stdin]

The command-line form of the chapter's Mail User Administration window
(§12.4.4, §12.5.2).  ``list`` shows every user of posthouse's database, or
those matching the wildcard PATTERN (``*``, ``?``, ``[seq]``), with their
service type and whether they have a mail password.  ``set`` changes a user's
type to one of unix, pop, pop-mailpass, apop-mailpass, imap, imap-mailpass.
When the new type needs a mail password and the user has none (for
apop-mailpass: none whose clear secret is stored, as APOP needs it), it asks
for one twice, as the window's "Enter an alternate password" step does; with
``--password-stdin`` it reads one line instead, which replaces the user's mail password if
there is one already.  A system account (when
``system_accounts`` is on) not yet in the database gets a password-less entry
recording its type.

Exit codes follow sysexits: 0 ok, 64 usage, 67 no such user, 74 I/O error,
78 mailauth database not initialised (needed for the mail-password types).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from posthouse.admin import users as admin
from posthouse.admin.errors import AdminError
from posthouse.admin.users import ServiceType, UserEntry
from posthouse.cli.exits import EX_CONFIG, EX_OK, report
from posthouse.cli.mailauth import (
    MailAuthFiles,
    Prompt,
    announce_handover,
    mailauth_files,
    read_new_password,
)
from posthouse.config.load import ConfigError

__all__ = ["add_parser", "format_table", "run_mailusradm"]

TOOL = "posthouse mailusradm"

_TYPES = [service_type.value for service_type in ServiceType]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``mailusradm`` sub-command."""
    parser = subparsers.add_parser("mailusradm", help="list and set users' mail service types")
    actions = parser.add_subparsers(dest="mailusradm_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list users: name, service type, mail password")
    listing.add_argument("pattern", metavar="PATTERN", nargs="?", help="wildcard, e.g. 'j*'")
    setting = actions.add_parser("set", help="set a user's mail service type")
    setting.add_argument("user", metavar="USER")
    setting.add_argument("service_type", metavar="TYPE", choices=_TYPES, help=", ".join(_TYPES))
    setting.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the mail password, if one is needed, from standard input",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point set as ``func``."""
    try:
        files = mailauth_files(args.config)
    except ConfigError as exc:
        print(f"posthouse mailusradm: {exc}", file=sys.stderr)
        return EX_CONFIG
    return run_mailusradm(files, args)


def run_mailusradm(
    files: MailAuthFiles,
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    prompt: Prompt = getpass.getpass,
) -> int:
    """Run the parsed ``mailusradm`` action against *files*."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        if args.mailusradm_action == "list":
            stdout.write(format_table(admin.list_service_types(files, args.pattern)))
            return EX_OK
        service_type = ServiceType(args.service_type)
        password = None
        # --password-stdin gives the mail password: a new one replaces the one there is.
        needed = admin.mail_password_needed(files, args.user, service_type)
        if needed or (args.password_stdin and service_type.uses_mail_password):
            password = read_new_password(
                args.password_stdin, stdin, prompt, admin.user_name(args.user)
            )
        change = admin.set_service_type(files, args.user, service_type, password)
    except AdminError as exc:
        return report(TOOL, exc, stderr)
    if change.mail_password_set:
        print(f"mail password set for {change.name}", file=stdout)
    print(f"{change.name}: mail service type is now {service_type.value}", file=stdout)
    announce_handover(change.handed_to, stdout)
    return EX_OK


def format_table(entries: list[UserEntry]) -> str:
    """A plain-text table: name, service type, whether a mail password is set."""
    rows = [("NAME", "TYPE", "MAIL PASSWORD")]
    rows += [
        (entry.user.name, entry.user.service_type.value, "yes" if entry.has_mail_password else "no")
        for entry in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}\n" for a, b, c in rows)
