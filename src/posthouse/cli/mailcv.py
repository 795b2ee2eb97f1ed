"""``posthouse mailcv``: convert an MH POP3 folder into a user's mailbox (§12.4.2.1 step 5).

::

    posthouse mailcv -Q -f INPUT [NEWNAME]

As the chapter runs it from the MH POP3 directory (``cd /usr/spool/mail/POP``): INPUT is
the user's MH POP3 folder (a directory of numbered message files), NEWNAME the user whose
spool mailbox receives the messages (default: INPUT's last name, "typically the same as the
POP user's username").  The messages are appended in their numbered order, locked and made
durable as local delivery does; the folder is left as it was.  What the conversion does is
:mod:`posthouse.admin.mailcv`'s; this module parses the command line and reports.

Exit codes follow sysexits: 0 ok, 64 usage, 66 no such folder, 74 the mailbox could not be
written (nothing was appended), 78 configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from posthouse.admin.errors import AdminError, InvalidRequest
from posthouse.admin.mailcv import convert_mh_folder
from posthouse.cli.exits import EX_CONFIG, EX_OK, report
from posthouse.config.load import ConfigError, load_settings
from posthouse.config.schema import Settings

__all__ = ["add_parser", "run_mailcv"]

TOOL = "posthouse mailcv"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``mailcv`` sub-command."""
    parser = subparsers.add_parser(
        "mailcv",
        help="convert an MH POP3 folder into a user's mailbox",
        description="Append the numbered messages of an MH POP3 folder to a user's spool "
        "mailbox (12.4.2.1 step 5), locked and durable as local delivery.",
    )
    parser.add_argument(
        "-Q", dest="mh_pop", action="store_true", help="the input is an MH POP3 folder"
    )
    parser.add_argument(
        "-f", dest="input", metavar="INPUT", required=True, help="the user's MH POP3 folder"
    )
    parser.add_argument(
        "newname", metavar="NEWNAME", nargs="?", help="the user (default: INPUT's name)"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point set as ``func``."""
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"{TOOL}: {exc}", file=sys.stderr)
        return EX_CONFIG
    return run_mailcv(settings, args)


def run_mailcv(
    settings: Settings,
    args: argparse.Namespace,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the parsed command against the loaded configuration ``settings``."""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    folder = Path(args.input)
    user = args.newname or folder.resolve().name
    try:
        if not args.mh_pop:
            raise InvalidRequest("only -Q (MH POP3 folders) is supported: give -Q -f INPUT")
        result = convert_mh_folder(settings, folder, user)
    except AdminError as exc:
        return report(TOOL, exc, stderr)
    print(f"{folder}: {result.messages} messages appended to {result.mailbox}", file=stdout)
    return EX_OK
