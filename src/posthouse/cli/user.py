"""``posthouse user``: add, delete, list users and set their login passwords.

::

    posthouse user add NAME [--password PW | --password-stdin | --no-password] [--type TYPE]
    posthouse user del NAME
    posthouse user list [PATTERN]
    posthouse user passwd NAME [--password PW | --password-stdin]

With no password option, ``add`` and ``passwd`` prompt (twice) when standard
input is a terminal, and otherwise stop with a usage error.  ``--password``
puts the password on the command line, where other local users may see it;
prefer ``--password-stdin`` in scripts.  Empty passwords are refused.

Exit codes follow sysexits: 0 ok, 64 usage, 67 no such user, 73 user exists,
74 database I/O error, 78 configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from posthouse.admin import users as admin
from posthouse.admin.errors import AdminError, InvalidRequest
from posthouse.admin.users import ServiceType, User
from posthouse.cli.configured import configured
from posthouse.cli.exits import EX_CONFIG, EX_OK, report
from posthouse.config.load import load_settings

__all__ = ["add_parser", "run_user_command"]

_TYPES = [service_type.value for service_type in ServiceType]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``user`` sub-command."""
    parser = subparsers.add_parser("user", help="manage posthouse's users")
    actions = parser.add_subparsers(dest="user_action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add a user")
    add.add_argument("name", metavar="NAME")
    _password_options(add, allow_none=True)
    add.add_argument(
        "--type",
        dest="service_type",
        choices=_TYPES,
        default=ServiceType.UNIX.value,
        help="mail service type (default: unix)",
    )

    delete = actions.add_parser("del", help="delete a user")
    delete.add_argument("name", metavar="NAME")

    listing = actions.add_parser("list", help="list users (name, type, source)")
    listing.add_argument("pattern", metavar="PATTERN", nargs="?", help="wildcard, e.g. 'a*'")

    passwd = actions.add_parser("passwd", help="set a user's login password")
    passwd.add_argument("name", metavar="NAME")
    _password_options(passwd, allow_none=False)

    parser.set_defaults(func=main)


def _password_options(parser: argparse.ArgumentParser, *, allow_none: bool) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password", metavar="PW", help="the password (visible to `ps`)")
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    if allow_none:
        group.add_argument(
            "--no-password", action="store_true", help="no login password of the user's own"
        )


def main(args: argparse.Namespace) -> int:
    """Entry point set as ``func``: find the users database, then run the action."""
    db_path = configured("posthouse user", args.config, _users_db_path)
    if db_path is None:
        return EX_CONFIG
    return run_user_command(db_path, args)


def _users_db_path(config: str | None) -> Path:
    """The one place that consults the configuration."""
    return load_settings(config).paths.users_db


def run_user_command(
    db_path: Path,
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    """Run the parsed ``user`` action against the database at *db_path*."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    action: str = args.user_action
    try:
        if action == "add":
            password = _read_password(args, stdin, prompt)
            user = admin.add_user(db_path, args.name, password, ServiceType(args.service_type))
            print(f"added {user.name} ({user.service_type.value})", file=stderr)
        elif action == "del":
            admin.delete_user(db_path, args.name)
        elif action == "list":
            stdout.write(format_table(admin.list_users(db_path, args.pattern)))
        else:  # passwd (argparse restricts the choices)
            password = _read_password(args, stdin, prompt)
            admin.set_login_password(db_path, args.name, password or "")
    except AdminError as exc:
        return report("posthouse user", exc, stderr)
    return EX_OK


def _read_password(
    args: argparse.Namespace, stdin: TextIO, prompt: Callable[[str], str]
) -> str | None:
    """The password from the options, standard input or a prompt; ``None`` for none."""
    if getattr(args, "no_password", False):
        return None
    if args.password is not None:
        password: str = args.password
    elif args.password_stdin:
        password = stdin.readline().removesuffix("\n").removesuffix("\r")
    elif stdin.isatty():
        password = prompt("Password: ")
        if password and prompt("Password again: ") != password:
            raise InvalidRequest("passwords do not match")
    else:
        raise InvalidRequest("no password given: use --password, --password-stdin or a terminal")
    if not password:
        raise InvalidRequest("empty password refused")
    return password


def format_table(users: list[User]) -> str:
    """A plain-text table of users: name, service type, source."""
    rows = [("NAME", "TYPE", "SOURCE")]
    rows += [(user.name, user.service_type.value, user.source) for user in users]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "".join(
        f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {source}\n" for name, kind, source in rows
    )
