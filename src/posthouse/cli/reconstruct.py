"""``posthouse reconstruct [-r] MAILBOX...``: rebuild mailbox indexes from their message
files (chapter 12.5.5, Cyrus's ``reconstruct``); see :mod:`posthouse.admin.reconstruct`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from posthouse.admin.errors import AdminError
from posthouse.admin.reconstruct import describe, reconstruct
from posthouse.cli.configured import settings_for
from posthouse.cli.exits import EX_CONFIG, EX_NOUSER, report


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reconstruct",
        help="rebuild IMAP mailbox indexes from their message files",
        description="Rebuild each MAILBOX's index from its message files, keeping the flags,"
        " internal dates, seen state and MODSEQs the old index still holds. Message files"
        " the index lacks are added; index entries without a file are dropped. Quota usage"
        " is not adjusted: run 'posthouse imapquota -f' afterwards.",
    )
    parser.add_argument(
        "-r", "--recursive", action="store_true", help="also every mailbox below each MAILBOX"
    )
    parser.add_argument(
        "mailboxes", nargs="+", metavar="MAILBOX", help="as the administrator names it: user.NAME"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_for("reconstruct", args.config)
    if settings is None:
        return EX_CONFIG
    try:
        outcome = reconstruct(settings, args.mailboxes, recursive=args.recursive)
    except AdminError as exc:
        return report("reconstruct", exc, sys.stderr)
    for result in outcome.reports:
        print("\n".join(describe(result)))
    for name in outcome.missing:
        print(f"reconstruct: {name}: no such mailbox", file=sys.stderr)
    return EX_NOUSER if outcome.missing else 0
