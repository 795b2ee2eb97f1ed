"""``posthouse popcv``: move POP subscribers from an MH POP file to the mailauth database.

::

    posthouse popcv [FILE] [--clear]

§12.4.2.1 step 4.  FILE (default ``/usr/spool/pop/POP``) is MH's POP database,
pop(4): one subscriber per line, colon-separated fields in the BBoards layout::

    name:aliases:primary_file:encrypted_passwd:leader:network_address:...:0
    mrose::mrose:9X5/m4yWHvhCc::mrose@nrtc-isc::::0

Only the name (field 1) and the password (field 4) are used.  The password
is a ``crypt(3)`` hash (made by popwrd); it is stored as a legacy hash that
USER/PASS logins are checked against, and the first good login replaces it
with posthouse's own hash and encrypted secret.  With ``--clear`` field 4 is
taken as the clear password (for files kept that way).  An empty password
("no password is valid") or ``*`` (pick-up disabled) skips the subscriber;
blank lines and ``#`` lines are ignored; bad lines are reported and skipped.

Each subscriber missing from posthouse's users is added with no login
password of its own and service type ``pop-mailpass``; an existing ``unix``
or ``pop`` user is switched to ``pop-mailpass``, so POP logins keep using the
POP file's password as under MH popd; other types are left alone.  The
mailauth database must exist (``posthouse mailauth -init``).

Exit codes follow sysexits: 0 ok (even with skipped lines), 66 no input file,
74 I/O error, 78 mailauth database not initialised.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from posthouse.auth.mailauth import MailAuthDatabase, MailAuthError
from posthouse.auth.users import InvalidUserName, ServiceType, UserDatabase, normalize_name
from posthouse.cli.mailauth import MailAuthFiles, hand_to_daemon, mailauth_files
from posthouse.config.load import ConfigError

__all__ = ["DEFAULT_POP_FILE", "PopcvReport", "add_parser", "convert_pop_file", "run_popcv"]

DEFAULT_POP_FILE = "/usr/spool/pop/POP"
EX_OK = 0
EX_NOINPUT = 66
EX_IOERR = 74
EX_CONFIG = 78

_SWITCHED_TYPES = (ServiceType.UNIX, ServiceType.POP)


@dataclass
class PopcvReport:
    """What a conversion did."""

    imported: int = 0
    created: int = 0
    switched: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``popcv`` sub-command."""
    parser = subparsers.add_parser(
        "popcv",
        help="import POP users and passwords from an MH POP file",
        description="Import name (field 1) and password (field 4) of each line of an "
        "MH POP file (name::file:crypted_password::address::::0) into the mailauth "
        "database, adding missing users as pop-mailpass.",
    )
    parser.add_argument(
        "file", metavar="FILE", nargs="?", default=DEFAULT_POP_FILE, help="the MH POP file"
    )
    parser.add_argument(
        "--clear", action="store_true", help="the password field holds clear passwords"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point set as ``func``."""
    try:
        files = mailauth_files(args.config)
    except ConfigError as exc:
        print(f"posthouse popcv: {exc}", file=sys.stderr)
        return EX_CONFIG
    return run_popcv(files, args.file, clear=args.clear)


def run_popcv(
    files: MailAuthFiles,
    source: str,
    *,
    clear: bool = False,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Convert the POP file *source* (``-`` for standard input is not offered: it is a file)."""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        with files.open_mailauth() as mailauth, UserDatabase(files.users_db) as users:
            mailauth.check()
            with open(source, encoding="utf-8", errors="surrogateescape") as text:
                report = convert_pop_file(text, mailauth, users, clear=clear)
            hand_to_daemon(files, mailauth, stdout)
    except FileNotFoundError:
        print(f"posthouse popcv: {source}: no such file", file=stderr)
        return EX_NOINPUT
    except MailAuthError as exc:
        print(f"posthouse popcv: {exc}", file=stderr)
        return EX_CONFIG
    except (OSError, sqlite3.Error) as exc:
        print(f"posthouse popcv: {exc}", file=stderr)
        return EX_IOERR
    for number, reason in report.skipped:
        print(f"{source}:{number}: skipped: {reason}", file=stderr)
    print(
        f"imported {report.imported} POP users ({report.created} added, "
        f"{report.switched} switched to pop-mailpass), skipped {len(report.skipped)} lines",
        file=stdout,
    )
    return EX_OK


def convert_pop_file(
    lines: Iterable[str], mailauth: MailAuthDatabase, users: UserDatabase, *, clear: bool = False
) -> PopcvReport:
    """Import every subscriber of an MH POP file (see the module docstring)."""
    report = PopcvReport()
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        fields = text.split(":")
        if len(fields) < 4:
            report.skipped.append((number, "fewer than 4 colon-separated fields"))
            continue
        try:
            name = normalize_name(fields[0].strip())
        except InvalidUserName as exc:
            report.skipped.append((number, str(exc)))
            continue
        password = fields[3] if clear else fields[3].strip()
        if not password:
            report.skipped.append((number, f"{name}: empty password (no password is valid)"))
            continue
        if password == "*":
            report.skipped.append((number, f"{name}: password '*' (pick-up disabled)"))
            continue
        if clear:
            mailauth.set_password(name, password)
        else:
            mailauth.set_legacy_crypt(name, password)
        existing = users.get(name)
        if existing is None:
            users.add(name, None, ServiceType.POP_MAILPASS)
            report.created += 1
        elif existing.service_type in _SWITCHED_TYPES:
            users.set_service_type(name, ServiceType.POP_MAILPASS)
            report.switched += 1
        report.imported += 1
    return report
