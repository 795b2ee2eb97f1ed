"""``posthouse popcv``: move POP subscribers from an MH POP file to the mailauth database.

::

    posthouse popcv [FILE] [--clear]

§12.4.2.1 step 4.  FILE (default ``/usr/spool/pop/POP``) is MH's POP database, pop(4):
one subscriber per line, colon-separated fields in the BBoards layout::

    name:aliases:primary_file:encrypted_passwd:leader:network_address:...:0
    mrose::mrose:9X5/m4yWHvhCc::mrose@nrtc-isc::::0

Only the name (field 1) and the password (field 4, a ``crypt(3)`` hash; with ``--clear``
the clear password) are used; missing users are added as ``pop-mailpass`` and ``unix`` or
``pop`` users switched to it.  What the conversion does is
:mod:`posthouse.admin.popcv`'s; this module parses the command line and reports.  The
mailauth database must exist (``posthouse mailauth -init``).

Exit codes follow sysexits: 0 ok (even with skipped lines), 66 no input file,
74 I/O error, 78 mailauth database not initialised.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from posthouse.admin.errors import AdminError
from posthouse.admin.popcv import DEFAULT_POP_FILE, import_pop_file
from posthouse.cli.configured import configured
from posthouse.cli.exits import EX_CONFIG, EX_OK, report
from posthouse.cli.mailauth import MailAuthFiles, announce_handover, mailauth_files

__all__ = ["add_parser", "run_popcv"]

TOOL = "posthouse popcv"


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
    files = configured("posthouse popcv", args.config, mailauth_files)
    if files is None:
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
        result = import_pop_file(files, Path(source), clear=clear)
    except AdminError as exc:
        return report(TOOL, exc, stderr)
    for number, reason in result.skipped:
        print(f"{source}:{number}: skipped: {reason}", file=stderr)
    print(
        f"imported {result.imported} POP users ({result.created} added, "
        f"{result.switched} switched to pop-mailpass), skipped {len(result.skipped)} lines",
        file=stdout,
    )
    announce_handover(result.handed_to, stdout)
    return EX_OK
