"""``posthouse mailauth``: set up the mailauth database and change one's own mail password.

::

    posthouse mailauth -init              create the database and its key (§12.4.2.1 step 3)
    posthouse mailauth -convert [FILE]    import qpopper's popauth database (§12.4.2.2): its
                                          dbm file, or a text dump in FILE or on stdin
    posthouse mailauth [USER] [--password-stdin]
                                          change USER's (default: your own) mail password

``--init`` and ``--convert`` are accepted too.  FILE may be the popauth database
itself (``/etc/pop.auth``: ndbm ``.pag``/``.dir`` files or a gdbm file, see
:mod:`posthouse.admin.popauth`), or a text dump: one user per line,
``user:password`` or ``user password``; ``#`` starts a comment line and blank
lines are ignored; bad lines (and unusable records) are reported and skipped.

Changing a mail password (§12.4.4 step 7: "The user can later set a new
password by issuing the mailauth command without any flags") asks for the
current mail password, or the login password if the user has no mail password
yet, then the new one twice.  With ``--password-stdin`` it reads two lines,
the current password and the new one, for scripts.  The new mail password
must differ from the login password, which it exists to protect.

An ordinary user, who may not open the database (it belongs to the daemon's account, mode
0600), changes their own mail password through the running daemon: the request goes over the
daemon's control socket, which identifies the caller by its uid (``SO_PEERCRED``), so nobody
can change another user's password that way and the files stay private.

Run as root, every command that writes the files (``-init``, ``-convert``, a password
change) then hands the database, its WAL files and the key to the daemon's account
(``[server] run_as``), mode 0600, so the daemon can read what root created; directories
``-init`` created go to it too.  See :meth:`MailAuthDatabase.hand_over`.

Exit codes follow sysexits: 0 ok, 64 usage, 66 input file missing, 67 no such
user, 69 the daemon (needed by an ordinary user) does not answer, 74 I/O error, 77 wrong
current password, 78 configuration (database not
initialised, key problems).
"""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from posthouse.admin import mailauth as admin
from posthouse.admin.daemon import change_own_mail_password
from posthouse.admin.errors import AdminError, InvalidRequest, NotPermitted
from posthouse.admin.mailauth import MailAuthFiles
from posthouse.admin.users import user_name
from posthouse.cli.configured import configured
from posthouse.cli.exits import EX_CONFIG, EX_OK, report
from posthouse.config.load import load_settings

__all__ = [
    "MailAuthFiles",
    "add_parser",
    "mailauth_files",
    "read_new_password",
    "run_mailauth",
]

TOOL = "posthouse mailauth"

Prompt = Callable[[str], str]


def mailauth_files(config: str | None) -> MailAuthFiles:
    """The mailauth files of the configuration file *config* (default: the usual search)."""
    return admin.files_of(load_settings(config))


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
        help="import qpopper's popauth database FILE (ndbm or gdbm), or a text dump "
        "from FILE (default: standard input)",
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
    files = configured("posthouse mailauth", args.config, mailauth_files)
    if files is None:
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
        if (args.init or args.convert is not None) and args.user is not None:
            raise InvalidRequest("USER cannot be combined with -init or -convert")
        if args.init:
            result = admin.init_database(files)
            state = "created with a new key" if result.created else "already set up; key kept"
            print(f"mailauth database {files.database}: {state}", file=stdout)
            handed_to = result.handed_to
        elif args.convert is not None:
            label = "(stdin)" if args.convert == "-" else args.convert

            def skipped(number: int, reason: str) -> None:
                print(f"{label}:{number}: skipped: {reason}", file=stderr)

            source = stdin if args.convert == "-" else Path(args.convert)
            imported = admin.import_mail_passwords(files, source, skipped)
            print(
                f"imported {imported.imported} users, skipped {imported.skipped} lines",
                file=stdout,
            )
            handed_to = imported.handed_to
        elif files.writable():
            name = user_name(args.user or current_user())
            handed_to = _change_own(files, name, args.password_stdin, stdin, stdout, prompt)
        else:
            own = pwd.getpwuid(os.getuid()).pw_name  # who the daemon will see, not $USER
            if args.user is not None and user_name(args.user) != own:
                raise NotPermitted("only root may change another user's mail password")
            handed_to = None
            _change_through_daemon(files, own, args.password_stdin, stdin, stdout, prompt)
    except AdminError as exc:
        return report(TOOL, exc, stderr)
    announce_handover(handed_to, stdout)
    return EX_OK


def announce_handover(account: str | None, stdout: TextIO) -> None:
    """Say so when the mailauth files were handed to the daemon's account."""
    if account is not None:
        print(f"mailauth files now belong to {account} (mode 0600)", file=stdout)


def _change_own(
    files: MailAuthFiles,
    name: str,
    password_stdin: bool,
    stdin: TextIO,
    stdout: TextIO,
    prompt: Prompt,
) -> str | None:
    kind = admin.password_kind(files, name)
    if password_stdin:
        current = _stdin_line(stdin)
    else:
        _need_terminal(stdin)
        current = prompt(f"Current {kind} password for {name}: ")
    admin.verify_current(files, name, current)
    new = read_new_password(password_stdin, stdin, prompt, name)
    handed_to = admin.set_mail_password(files, name, new)
    print(f"mail password changed for {name}", file=stdout)
    return handed_to


def _change_through_daemon(
    files: MailAuthFiles,
    name: str,
    password_stdin: bool,
    stdin: TextIO,
    stdout: TextIO,
    prompt: Prompt,
) -> None:
    """An ordinary user, who may not open the database, asks the running daemon, which knows
    the caller by its uid and checks the current password itself."""
    if password_stdin:
        current = _stdin_line(stdin)
    else:
        _need_terminal(stdin)
        current = prompt(f"Current mail password (login password if none yet) for {name}: ")
    new = read_new_password(password_stdin, stdin, prompt, name)
    assert files.control_socket is not None
    print(change_own_mail_password(files.control_socket, current, new), file=stdout)


def read_new_password(password_stdin: bool, stdin: TextIO, prompt: Prompt, name: str) -> str:
    """A new mail password: one line of *stdin*, or asked twice at the terminal."""
    if password_stdin:
        new = _stdin_line(stdin)
    else:
        _need_terminal(stdin)
        new = prompt(f"New mail password for {name}: ")
        if new and prompt("Retype new mail password: ") != new:
            raise InvalidRequest("passwords do not match")
    if not new:
        raise InvalidRequest("empty password refused")
    return new


def _stdin_line(stdin: TextIO) -> str:
    return stdin.readline().removesuffix("\n").removesuffix("\r")


def _need_terminal(stdin: TextIO) -> None:
    if not stdin.isatty():
        raise InvalidRequest("no terminal to ask for passwords: use --password-stdin")
