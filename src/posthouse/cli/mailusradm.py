"""``posthouse mailusradm``: list users' mail service types and change them.

::

    posthouse mailusradm list [PATTERN]
    posthouse mailusradm set USER TYPE [--rights RIGHTS] [--password-file FILE | --password-stdin]
                             [--delete-imap-mail]

The command-line form of the chapter's Mail User Administration window
(§12.4.4, §12.5.2).  ``list`` shows every user of posthouse's database, or
those matching the wildcard PATTERN (``*``, ``?``, ``[seq]``), with their
service type and whether they have a mail password.  ``set`` changes a user's
type to one of unix, pop, pop-mailpass, apop-mailpass, imap, imap-mailpass.
When the new type needs a mail password and the user has none (for
apop-mailpass: none whose clear secret is stored, as APOP needs it), it asks
for one twice on the terminal, as the window's "Enter an alternate password" step does;
``--password-file`` (its first line) or ``--password-stdin`` (one line) give it otherwise,
and replace the user's mail password if there is one already.  A system account (when
``system_accounts`` is on) not yet in the database gets a password-less entry
recording its type.  A user who becomes imap or imap-mailpass gets their INBOX in the
IMAP store, with Sent, Drafts, Trash and Junk (12.5.2), those missing, before the type
changes, the user holding ``--rights`` on them (step 8: "in most cases ... All", the
default; given for mailboxes already there, it sets the user's rights on them).  A user who
stops being IMAP type keeps those mailboxes: the tool lists them with their messages, sizes
and directories (new mail goes to the spool mailbox; ``posthouse mailcv -I`` moves spool
mail the other way); ``--delete-imap-mail`` deletes them, after the type has changed.

Exit codes follow sysexits: 0 ok, 64 usage, 66 password file missing, 67 no such user,
74 I/O error, 78 mailauth database not initialised (needed for the mail-password types).
"""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from posthouse.admin import users as admin
from posthouse.admin.errors import AdminError, InputMissing, InvalidRequest
from posthouse.admin.mailauth import files_of
from posthouse.admin.mailstore import StoredMailbox, delete_imap_mail, ensure_inbox, imap_mail_of
from posthouse.admin.users import ServiceType, UserEntry
from posthouse.cli.configured import settings_for
from posthouse.cli.exits import EX_CONFIG, EX_OK, report
from posthouse.cli.mailauth import (
    MailAuthFiles,
    Prompt,
    announce_handover,
    read_new_password,
)

__all__ = ["add_parser", "format_mailboxes", "format_table", "run_mailusradm"]

TOOL = "posthouse mailusradm"

_TYPES = [service_type.value for service_type in ServiceType]
MAX_PASSWORD = 1024


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
        "--rights",
        metavar="RIGHTS",
        help="imap types: the user's rights on the INBOX and its special-use folders, 'all' "
        "or ACL letters such as lrswipkxte (12.5.2 step 8; default: all on new mailboxes, "
        "existing ones left as they are)",
    )
    given = setting.add_mutually_exclusive_group()
    given.add_argument(
        "--password-file",
        metavar="FILE",
        type=Path,
        help="read the mail password, if one is needed, from FILE's first line",
    )
    given.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the mail password, if one is needed, from standard input",
    )
    setting.add_argument(
        "--delete-imap-mail",
        action="store_true",
        help="for a type other than imap: delete the user's IMAP mailboxes (listed first); "
        "without it they are kept",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point set as ``func``."""
    settings = settings_for("posthouse mailusradm", args.config)
    if settings is None:
        return EX_CONFIG
    return run_mailusradm(
        files_of(settings),
        args,
        create_inbox=functools.partial(
            ensure_inbox, settings, rights=getattr(args, "rights", None)
        ),
        imap_mail=functools.partial(imap_mail_of, settings),
        delete_mail=functools.partial(delete_imap_mail, settings),
    )


def run_mailusradm(
    files: MailAuthFiles,
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    prompt: Prompt = getpass.getpass,
    create_inbox: Callable[[str], bool] | None = None,
    imap_mail: Callable[[str], list[StoredMailbox]] | None = None,
    delete_mail: Callable[[str], list[str]] | None = None,
) -> int:
    """Run the parsed ``mailusradm`` action against *files*; *create_inbox*, *imap_mail* and
    *delete_mail* reach the IMAP store (:mod:`posthouse.admin.mailstore`)."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        if args.mailusradm_action == "list":
            stdout.write(format_table(admin.list_service_types(files, args.pattern)))
            return EX_OK
        service_type = ServiceType(args.service_type)
        deleting = getattr(args, "delete_imap_mail", False)
        if deleting and service_type.uses_imap_store:
            raise InvalidRequest("--delete-imap-mail is for a user who stops being IMAP type")
        password = None
        password_file: Path | None = getattr(args, "password_file", None)
        given = args.password_stdin or password_file is not None
        # A mail password given replaces the one there is.
        needed = admin.mail_password_needed(files, args.user, service_type)
        if needed or (given and service_type.uses_mail_password):
            name = admin.user_name(args.user)
            if password_file is not None:
                password = read_password_file(password_file)
            elif not args.password_stdin and not stdin.isatty():
                raise InvalidRequest(
                    f"{service_type.value} needs a mail password for {name} and there is no "
                    "terminal to ask for it: use --password-file FILE"
                )
            else:
                password = read_new_password(args.password_stdin, stdin, prompt, name)
        change = admin.set_service_type(
            files, args.user, service_type, password, create_inbox=create_inbox
        )
        kept = imap_mail(change.name) if imap_mail and not service_type.uses_imap_store else []
        deleted = delete_mail(change.name) if deleting and delete_mail and kept else []
    except AdminError as exc:
        return report(TOOL, exc, stderr)
    if change.mail_password_set:
        print(f"mail password set for {change.name}", file=stdout)
    if change.inbox_created:
        print(f"{change.name}: IMAP INBOX created (with Sent, Drafts, Trash, Junk)", file=stdout)
    print(f"{change.name}: mail service type is now {service_type.value}", file=stdout)
    if change.left_imap:
        print(f"{change.name}: new mail goes to the spool mailbox", file=stdout)
    if kept:
        verb = "deleted" if deleted else "kept in the IMAP store"
        print(f"{change.name}: the IMAP mailboxes are {verb}:", file=stdout)
        stdout.write(format_mailboxes(kept))
        if not deleted:
            print(
                f"{change.name}: to delete them: {TOOL} set {change.name} "
                f"{service_type.value} --delete-imap-mail",
                file=stdout,
            )
    elif deleting:
        print(f"{change.name}: no IMAP mailboxes to delete", file=stdout)
    announce_handover(change.handed_to, stdout)
    return EX_OK


def read_password_file(path: Path) -> str:
    """The mail password on *path*'s first line."""
    try:
        with path.open(encoding="utf-8") as source:
            password = source.readline(MAX_PASSWORD + 1).removesuffix("\n").removesuffix("\r")
    except FileNotFoundError as exc:
        raise InputMissing(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path}: {exc}") from exc
    if not password or len(password) > MAX_PASSWORD:
        raise InvalidRequest(f"{path}: the first line must hold the password")
    return password


def format_mailboxes(mailboxes: list[StoredMailbox]) -> str:
    """One line per mailbox: name, messages, kilobytes, directory."""
    width = max(len(mailbox.name) for mailbox in mailboxes)
    total_messages = sum(mailbox.messages for mailbox in mailboxes)
    total_size = sum(mailbox.size for mailbox in mailboxes)
    lines = [
        f"  {m.name:<{width}}  {m.messages:>7} messages  {_kilobytes(m.size):>9} KB"
        + (f"  {m.directory}" if m.directory else "")
        for m in mailboxes
    ]
    lines.append(
        f"  {'total':<{width}}  {total_messages:>7} messages  {_kilobytes(total_size):>9} KB"
    )
    return "".join(line + "\n" for line in lines)


def _kilobytes(size: int) -> int:
    return (size + 1023) // 1024


def format_table(entries: list[UserEntry]) -> str:
    """A plain-text table: name, service type, whether a mail password is set."""
    rows = [("NAME", "TYPE", "MAIL PASSWORD")]
    rows += [
        (entry.user.name, entry.user.service_type.value, "yes" if entry.has_mail_password else "no")
        for entry in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}\n" for a, b, c in rows)
