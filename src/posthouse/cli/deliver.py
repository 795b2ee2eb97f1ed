"""``posthouse deliver``: deliver the message on standard input into users' IMAP mailboxes.

::

    posthouse deliver [-f SENDER] [-m FOLDER] [-a AUTHUSER] [-q] [-e] USER...
    posthouse deliver -l [-a AUTHUSER] [-q] [-e]

The chapter's deliver(8) (12.5), as Cyrus's: each USER's INBOX gets the message, or with
``-m FOLDER`` the mailbox ``INBOX.FOLDER`` when it lets the poster (``-a AUTHUSER``, else
anonymous) post to it, else the INBOX.  ``-f`` (or ``-r``) is the envelope sender written
as ``Return-Path:`` (default: the invoking user).  The message is durable in every mailbox
before the command exits 0.  ``-q`` delivers even over quota; ``-e`` suppresses duplicates:
a message whose Message-ID was delivered to the mailbox it would be written to (the folder,
or the INBOX it falls back to) in the last three days is not stored again (Cyrus's
deliver.db).  What delivering does is
:mod:`posthouse.admin.deliver`'s.  ``-l`` speaks LMTP on standard input and output instead
(recipients ``user`` or ``user+folder``; :mod:`posthouse.admin.deliver_lmtp`), as Cyrus's.

Exit codes follow sysexits, so a local mailer can act on them: 0 delivered to every user;
75 (EX_TEMPFAIL) when any user failed temporarily (the store unavailable or over quota:
the MTA retries); else 67 (EX_NOUSER) for a user without an IMAP INBOX, 77 (EX_NOPERM) for
a refused post, 65 (EX_DATAERR) for an empty or too big message, 69 (EX_UNAVAILABLE)
otherwise; 64 (EX_USAGE) for a bad command line, 78 for a bad configuration.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import BinaryIO, NoReturn, TextIO

from posthouse.admin.deliver import DeliverRequest, DeliverResult, deliver_message
from posthouse.admin.deliver_lmtp import DeliverOptions, serve_lmtp
from posthouse.cli.configured import settings_for
from posthouse.cli.exits import EX_CONFIG, EX_NOPERM, EX_NOUSER, EX_OK, EX_USAGE
from posthouse.config.schema import Settings

__all__ = ["EX_DATAERR", "EX_TEMPFAIL", "EX_UNAVAILABLE", "add_parser", "run_deliver"]

TOOL = "posthouse deliver"
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
_PERMANENT = {"5.1.1": EX_NOUSER, "5.7.1": EX_NOPERM, "5.3.4": EX_DATAERR}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``deliver`` sub-command."""
    parser = subparsers.add_parser(
        "deliver",
        help="deliver the message on standard input into users' IMAP mailboxes",
        description="Deliver the message read from standard input into each USER's IMAP "
        "INBOX (or -m FOLDER), durably; exit codes of sysexits(3) (chapter 12.5, deliver(8)).",
    )
    parser.add_argument("-f", "-r", dest="sender", metavar="SENDER", help="envelope sender")
    parser.add_argument("-m", dest="folder", metavar="FOLDER", help="deliver to INBOX.FOLDER")
    parser.add_argument(
        "-a", dest="poster", metavar="AUTHUSER", help="whose post right -m FOLDER needs"
    )
    parser.add_argument(
        "-q", dest="ignore_quota", action="store_true", help="deliver even over quota"
    )
    parser.add_argument(
        "-e",
        dest="suppress_duplicates",
        action="store_true",
        help="do not deliver a Message-ID again to a mailbox it reached in the last three days",
    )
    parser.add_argument(
        "-l",
        dest="lmtp",
        action="store_true",
        help="speak LMTP (RFC 2033) on standard input and output; no USER then",
    )
    parser.add_argument("users", metavar="USER", nargs="*", help="the users to deliver to")
    parser.set_defaults(func=main, usage_status=EX_USAGE)

    def usage_error(message: str) -> NoReturn:
        parser.print_usage(sys.stderr)
        parser.exit(EX_USAGE, f"{TOOL}: {message}\n")

    parser.error = usage_error  # type: ignore[method-assign]  # sysexits: 64, not 2


def main(args: argparse.Namespace) -> int:
    """Entry point set as ``func``."""
    settings = settings_for(TOOL, args.config)
    if settings is None:
        return EX_CONFIG
    return run_deliver(settings, args)


def run_deliver(
    settings: Settings,
    args: argparse.Namespace,
    *,
    stdin: BinaryIO | None = None,
    stderr: TextIO | None = None,
    stdout: BinaryIO | None = None,
) -> int:
    """Read the message, deliver it, report each failure; the sysexits status."""
    stdin = sys.stdin.buffer if stdin is None else stdin
    stderr = sys.stderr if stderr is None else stderr
    if getattr(args, "lmtp", False):
        if args.users or args.folder or args.sender:
            print(f"{TOOL}: -l takes no USER, -m or -f (LMTP names them)", file=stderr)
            return EX_USAGE
        options = DeliverOptions(args.poster, args.ignore_quota, args.suppress_duplicates)
        return serve_lmtp(settings, stdin, stdout or sys.stdout.buffer, options)
    if not args.users:
        print(f"{TOOL}: name at least one USER to deliver to", file=stderr)
        return EX_USAGE
    limit = settings.config.imap.maxmessagesize
    content = stdin.read(limit + 1)
    if not content.strip():
        print(f"{TOOL}: no message on standard input", file=stderr)
        return EX_DATAERR
    if len(content) > limit:
        print(f"{TOOL}: the message is over {limit} octets (imap maxmessagesize)", file=stderr)
        return EX_DATAERR
    sender = args.sender if args.sender is not None else getpass.getuser()
    request = DeliverRequest(
        tuple(args.users),
        content,
        sender,
        args.folder,
        args.poster,
        ignore_quota=args.ignore_quota,
        suppress_duplicates=args.suppress_duplicates,
    )
    results = deliver_message(settings, request)
    for result in results:
        if result.error is not None:
            print(f"{TOOL}: {result.error}", file=stderr)
        elif result.duplicate:
            print(f"{TOOL}: {result.user}: a duplicate, delivered before: skipped", file=stderr)
    return exit_status(results)


def exit_status(results: list[DeliverResult]) -> int:
    """Temporary failures first (the MTA must retry), then the first permanent one."""
    errors = [r.error for r in results if r.error is not None]
    if not errors:
        return EX_OK
    if any(error.temporary for error in errors):
        return EX_TEMPFAIL
    return _PERMANENT.get(errors[0].status, EX_UNAVAILABLE)
