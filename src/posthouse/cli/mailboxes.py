"""``posthouse mailboxes backup FILE | check FILE | restore [--force] FILE``: copies of the
IMAP mailboxes list (chapter 12.5.5: "make frequent (even hourly) backups of the
mailboxes file"); see :mod:`posthouse.admin.mailboxes_list`.  Cyrus does the same with
``ctl_mboxlist -d`` (dump) and ``-u`` (undump)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from posthouse.admin import mailboxes_list
from posthouse.admin.errors import AdminError
from posthouse.cli.configured import settings_for
from posthouse.cli.exits import EX_CONFIG, EX_DATAERR, report
from posthouse.config.schema import Settings


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "mailboxes",
        help="back up or restore the IMAP mailboxes list",
        description="Back up the IMAP mailboxes list (names, partitions, ACLs, quota roots)"
        " to a file, safely while the server runs; check a backup; restore one, with the"
        " server stopped. Hourly from cron: 0 * * * * posthouse mailboxes backup"
        " /var/backups/posthouse/mailboxes-$(date +\\%H).db",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    backup = actions.add_parser("backup", help="copy the mailboxes list to FILE")
    backup.add_argument("file", metavar="FILE", type=Path)
    backup.set_defaults(func=run_backup)
    check = actions.add_parser("check", help="check FILE as a backup, restore nothing")
    check.add_argument("file", metavar="FILE", type=Path)
    check.set_defaults(func=run_check)
    restore = actions.add_parser(
        "restore", help="put the backup FILE in place of the list (server stopped)"
    )
    restore.add_argument("file", metavar="FILE", type=Path)
    restore.add_argument(
        "--force",
        action="store_true",
        help="restore even if some mailboxes it names have no files any more",
    )
    restore.set_defaults(func=run_restore)


def _settings(args: argparse.Namespace) -> Settings | None:
    return settings_for("mailboxes", args.config)


def run_backup(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EX_CONFIG
    try:
        count = mailboxes_list.backup(settings, args.file)
    except AdminError as exc:
        return report("mailboxes backup", exc, sys.stderr)
    print(f"{args.file}: {count} mailboxes")
    return 0


def _describe(check: mailboxes_list.BackupCheck, file: Path) -> None:
    for name in check.missing:
        print(f"{file}: {name}: its files are gone", file=sys.stderr)
    for folder in check.unlisted:
        print(f"{file}: the folder {folder} is not in this backup (created after it?)")


def run_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EX_CONFIG
    try:
        check = mailboxes_list.check(settings, args.file)
    except AdminError as exc:
        return report("mailboxes check", exc, sys.stderr)
    for problem in check.problems:
        print(f"{args.file}: {problem}", file=sys.stderr)
    _describe(check, args.file)
    if check.problems:
        return EX_DATAERR
    print(f"{args.file}: {check.mailboxes} mailboxes, intact")
    return EX_DATAERR if check.missing else 0


def run_restore(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EX_CONFIG
    try:
        restored = mailboxes_list.restore(settings, args.file, force=args.force)
    except AdminError as exc:
        return report("mailboxes restore", exc, sys.stderr)
    _describe(restored.check, args.file)
    kept = f"; the list it replaced is {restored.kept}" if restored.kept else ""
    print(f"restored {restored.check.mailboxes} mailboxes from {args.file}{kept}")
    return 0
