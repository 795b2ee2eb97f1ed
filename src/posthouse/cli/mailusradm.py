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
``--password-stdin`` it reads one line instead.  A system account (when
``system_accounts`` is on) not yet in the database gets a password-less entry
recording its type.

Exit codes follow sysexits: 0 ok, 64 usage, 67 no such user, 74 I/O error,
78 mailauth database not initialised (needed for the mail-password types).
"""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import sys
from typing import TextIO

from posthouse.auth.mailauth import MailAuthDatabase, MailAuthError
from posthouse.auth.users import InvalidUserName, ServiceType, User, UserDatabase, normalize_name
from posthouse.cli.mailauth import (
    MailAuthFiles,
    Prompt,
    UsageError,
    hand_to_daemon,
    mailauth_files,
    read_new_password,
)
from posthouse.config.load import ConfigError

__all__ = ["add_parser", "format_table", "run_mailusradm"]

EX_OK = 0
EX_USAGE = 64
EX_NOUSER = 67
EX_IOERR = 74
EX_CONFIG = 78

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
        with files.open_mailauth() as mailauth, UserDatabase(files.users_db) as users:
            if args.mailusradm_action == "list":
                stdout.write(format_table(users.list(args.pattern), _mail_passwords(mailauth)))
                return EX_OK
            status = _set(files, mailauth, users, args, stdin, stdout, stderr, prompt)
            hand_to_daemon(files, mailauth, stdout)
            return status
    except (UsageError, InvalidUserName) as exc:
        print(f"posthouse mailusradm: {exc}", file=stderr)
        return EX_USAGE
    except MailAuthError as exc:
        print(f"posthouse mailusradm: {exc}", file=stderr)
        return EX_CONFIG
    except (OSError, sqlite3.Error) as exc:
        print(f"posthouse mailusradm: {exc}", file=stderr)
        return EX_IOERR


def _mail_passwords(mailauth: MailAuthDatabase) -> set[str]:
    try:
        return set(mailauth.users())
    except MailAuthError:  # not initialised yet: nobody has a mail password
        return set()


def _set(
    files: MailAuthFiles,
    mailauth: MailAuthDatabase,
    users: UserDatabase,
    args: argparse.Namespace,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    prompt: Prompt,
) -> int:
    name = normalize_name(args.user)
    service_type = ServiceType(args.service_type)
    known = files.directory(users).get(name)
    if known is None:
        print(f"posthouse mailusradm: no such user: {name}", file=stderr)
        return EX_NOUSER
    if service_type.uses_mail_password:
        if service_type is ServiceType.APOP_MAILPASS:
            missing = mailauth.apop_secret(name) is None
        else:
            missing = not mailauth.has(name)
        if missing:
            password = read_new_password(args.password_stdin, stdin, prompt, name)
            mailauth.set_password(name, password)
            print(f"mail password set for {name}", file=stdout)
    if users.get(name) is None:  # a system account: record its type in the database
        users.add(name, None, service_type)
    else:
        users.set_service_type(name, service_type)
    print(f"{name}: mail service type is now {service_type.value}", file=stdout)
    return EX_OK


def format_table(users: list[User], with_mail_password: set[str]) -> str:
    """A plain-text table: name, service type, whether a mail password is set."""
    rows = [("NAME", "TYPE", "MAIL PASSWORD")]
    rows += [
        (user.name, user.service_type.value, "yes" if user.name in with_mail_password else "no")
        for user in users
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}\n" for a, b, c in rows)
