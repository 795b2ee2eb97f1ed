"""``posthouse mailauth``: set up the mailauth database and change one's own mail password.

::

    posthouse mailauth -init              create the database and its key (§12.4.2.1 step 3)
    posthouse mailauth -convert [FILE]    import a popauth text dump (§12.4.2.2), FILE or stdin
    posthouse mailauth [USER] [--password-stdin]
                                          change USER's (default: your own) mail password

``--init`` and ``--convert`` are accepted too.  The import format is one user
per line, ``user:password`` or ``user password``; ``#`` starts a comment line
and blank lines are ignored; bad lines are reported and skipped.

Changing a mail password (§12.4.4 step 7: "The user can later set a new
password by issuing the mailauth command without any flags") asks for the
current mail password, or the login password if the user has no mail password
yet, then the new one twice.  With ``--password-stdin`` it reads two lines,
the current password and the new one, for scripts.  The new mail password
must differ from the login password, which it exists to protect.

Run as root, every command that writes the files (``-init``, ``-convert``, a password
change) then hands the database, its WAL files and the key to the daemon's account
(``[server] run_as``), mode 0600, so the daemon can read what root created; directories
``-init`` created go to it too.  See :meth:`MailAuthDatabase.hand_over`.

Exit codes follow sysexits: 0 ok, 64 usage, 66 input file missing, 67 no such
user, 74 I/O error, 77 wrong current password, 78 configuration (database not
initialised, key problems).
"""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from posthouse.auth.authenticator import Authenticator, UserDirectory
from posthouse.auth.mailauth import MailAuthDatabase, MailAuthError
from posthouse.auth.users import InvalidUserName, UserDatabase, normalize_name
from posthouse.config.load import ConfigError, load_settings

__all__ = [
    "MailAuthFiles",
    "UsageError",
    "add_parser",
    "mailauth_files",
    "read_new_password",
    "run_mailauth",
]

EX_OK = 0
EX_USAGE = 64
EX_NOINPUT = 66
EX_NOUSER = 67
EX_IOERR = 74
EX_NOPERM = 77
EX_CONFIG = 78

Prompt = Callable[[str], str]


class UsageError(Exception):
    """Bad or missing input from the operator (exit 64)."""


@dataclass(frozen=True)
class MailAuthFiles:
    """The files the mail-password tools use, and how users are looked up."""

    database: Path
    key: Path
    users_db: Path
    system_accounts: bool = False
    system_min_uid: int = 1000
    daemon_account: str = ""  # server.run_as: run as root, the files are handed to it

    def open_mailauth(self) -> MailAuthDatabase:
        return MailAuthDatabase(self.database, self.key)

    def directory(self, users: UserDatabase) -> UserDirectory:
        return UserDirectory(
            users, system_accounts=self.system_accounts, min_uid=self.system_min_uid
        )


def mailauth_files(config: str | None) -> MailAuthFiles:
    """The one place that maps the configuration to the mailauth files."""
    settings = load_settings(config)
    return MailAuthFiles(
        database=settings.paths.mailauth_db,
        key=settings.paths.mailauth_key,
        users_db=settings.paths.users_db,
        system_accounts=settings.config.users.system_accounts,
        system_min_uid=settings.config.users.system_min_uid,
        daemon_account=settings.config.server.run_as,
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``mailauth`` sub-command."""
    parser = subparsers.add_parser(
        "mailauth",
        help="set up the mail password database, or change your mail password",
        description=__doc__.split("::", 1)[0] if __doc__ else None,
        epilog="Import format: 'user:password' or 'user password' per line; "
        "'#' comment lines and blank lines are ignored; bad lines are reported and skipped.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "-init", "--init", action="store_true", help="create the database and its key"
    )
    mode.add_argument(
        "-convert",
        "--convert",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="import a popauth text dump from FILE (default: standard input)",
    )
    parser.add_argument("user", metavar="USER", nargs="?", help="whose password (default: you)")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the current and the new password, one per line, from standard input",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point set as ``func``."""
    try:
        files = mailauth_files(args.config)
    except ConfigError as exc:
        print(f"posthouse mailauth: {exc}", file=sys.stderr)
        return EX_CONFIG
    return run_mailauth(files, args)


def run_mailauth(
    files: MailAuthFiles,
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    prompt: Prompt = getpass.getpass,
    current_user: Callable[[], str] = getpass.getuser,
) -> int:
    """Run the parsed ``mailauth`` command against *files*."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        with files.open_mailauth() as mailauth:
            if args.init:
                _refuse_user(args)
                created = mailauth.init()
                state = "created with a new key" if created else "already set up; key kept"
                print(f"mailauth database {files.database}: {state}", file=stdout)
                code = EX_OK
            elif args.convert is not None:
                _refuse_user(args)
                code = _convert(mailauth, args.convert, stdin, stdout, stderr)
            else:
                name = normalize_name(args.user or current_user())
                code = _change_own(files, mailauth, name, args, stdin, stdout, stderr, prompt)
        if code == EX_OK:
            hand_to_daemon(files, mailauth, stdout)
        return code
    except (UsageError, InvalidUserName) as exc:
        print(f"posthouse mailauth: {exc}", file=stderr)
        return EX_USAGE
    except MailAuthError as exc:
        print(f"posthouse mailauth: {exc}", file=stderr)
        return EX_CONFIG
    except (OSError, sqlite3.Error) as exc:
        print(f"posthouse mailauth: {exc}", file=stderr)
        return EX_IOERR


def hand_to_daemon(files: MailAuthFiles, mailauth: MailAuthDatabase, stdout: TextIO) -> None:
    """Run as root: make the files the daemon's (``server.run_as``), which must read them.

    Not root, or no ``run_as``: the files stay with the account that ran the command (the
    daemon runs as that account too, or root starts it and hands it the data directory).
    """
    if os.geteuid() != 0 or not files.daemon_account:
        return
    try:
        account = pwd.getpwnam(files.daemon_account)
    except KeyError as exc:
        raise MailAuthError(f"server.run_as: no such account {files.daemon_account!r}") from exc
    if account.pw_uid == 0:
        return
    changed = mailauth.hand_over(account.pw_uid, account.pw_gid)
    if changed:
        print(f"mailauth files now belong to {files.daemon_account} (mode 0600)", file=stdout)


def _refuse_user(args: argparse.Namespace) -> None:
    if args.user is not None:
        raise UsageError("USER cannot be combined with -init or -convert")


def _convert(
    mailauth: MailAuthDatabase, source: str, stdin: TextIO, stdout: TextIO, stderr: TextIO
) -> int:
    label = "(stdin)" if source == "-" else source
    skipped = 0

    def report(number: int, _line: str, reason: str) -> None:
        nonlocal skipped
        skipped += 1
        print(f"{label}:{number}: skipped: {reason}", file=stderr)

    mailauth.check()  # raises MailAuthNotInitialized before reading any input
    if source == "-":
        imported = mailauth.import_popauth(stdin, on_error=report)
    else:
        try:
            with open(source, encoding="utf-8", errors="surrogateescape") as text:
                imported = mailauth.import_popauth(text, on_error=report)
        except FileNotFoundError:
            print(f"posthouse mailauth: {source}: no such file", file=stderr)
            return EX_NOINPUT
    print(f"imported {imported} users, skipped {skipped} lines", file=stdout)
    return EX_OK


def _change_own(
    files: MailAuthFiles,
    mailauth: MailAuthDatabase,
    name: str,
    args: argparse.Namespace,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    prompt: Prompt,
) -> int:
    has_mail_password = mailauth.has(name)
    with UserDatabase(files.users_db) as users:
        authenticator = Authenticator(files.directory(users))
        if not has_mail_password and not authenticator.directory.exists(name):
            print(f"posthouse mailauth: no such user: {name}", file=stderr)
            return EX_NOUSER
        if args.password_stdin:
            current = _stdin_line(stdin)
        else:
            _need_terminal(stdin)
            kind = "mail" if has_mail_password else "login"
            current = prompt(f"Current {kind} password for {name}: ")
        if has_mail_password:
            ok = mailauth.verify(name, current)
        else:
            ok = authenticator.verify(name, current)
        if not ok:
            print("posthouse mailauth: authentication failed", file=stderr)
            return EX_NOPERM
        new = read_new_password(args.password_stdin, stdin, prompt, name)
        if authenticator.verify(name, new):
            raise UsageError("the mail password must differ from the login password")
    mailauth.set_password(name, new)
    print(f"mail password changed for {name}", file=stdout)
    return EX_OK


def read_new_password(password_stdin: bool, stdin: TextIO, prompt: Prompt, name: str) -> str:
    """A new mail password: one line of *stdin*, or asked twice at the terminal."""
    if password_stdin:
        new = _stdin_line(stdin)
    else:
        _need_terminal(stdin)
        new = prompt(f"New mail password for {name}: ")
        if new and prompt("Retype new mail password: ") != new:
            raise UsageError("passwords do not match")
    if not new:
        raise UsageError("empty password refused")
    return new


def _stdin_line(stdin: TextIO) -> str:
    return stdin.readline().removesuffix("\n").removesuffix("\r")


def _need_terminal(stdin: TextIO) -> None:
    if not stdin.isatty():
        raise UsageError("no terminal to ask for passwords: use --password-stdin")
