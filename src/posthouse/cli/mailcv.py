"""``posthouse mailcv``: convert an MH POP3 folder into a user's mailbox (§12.4.2.1 step 5),
or a user's mbox mail folder into their IMAP mailbox (§12.5.3).

::

    posthouse mailcv -Q -f INPUT [NEWNAME]
    posthouse mailcv -I -f FOLDER [SUBFOLDER]

As the chapter runs it from the MH POP3 directory (``cd /usr/spool/mail/POP``): INPUT is
the user's MH POP3 folder (a directory of numbered message files), NEWNAME the user whose
spool mailbox receives the messages (default: INPUT's last name, "typically the same as the
POP user's username").  The messages are appended in their numbered order, locked and made
durable as local delivery does; the folder is left as it was.  What the conversion does is
:mod:`posthouse.admin.mailcv`'s; this module parses the command line and reports.

With ``-I``, as the chapter runs it from the spool directory (``cd /usr/spool/mail``):
FOLDER is the user's mbox mail folder, whose file name is the user's name; its messages
are appended to the user's IMAP INBOX, or to ``INBOX.SUBFOLDER`` (created when missing),
with their dates and Status/X-Status flags, and the folder is emptied once all are in the
store; a delivery meanwhile waits for the folder's lock, so no mail is lost
(:mod:`posthouse.admin.mbox_to_imap`).  On a terminal a progress bar shows how far it is.

Exit codes follow sysexits: 0 ok, 64 usage, 66 no such folder, 67 no IMAP INBOX for the
user (-I), 74 the mailbox could not be written (with -Q nothing was appended; with -I the
folder is kept whole), 78 configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from posthouse.admin.errors import AdminError, InvalidRequest
from posthouse.admin.mailcv import convert_mh_folder
from posthouse.admin.mbox_to_imap import convert_spool_to_imap
from posthouse.cli.configured import settings_for
from posthouse.cli.exits import EX_CONFIG, EX_OK, report
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
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "-Q", dest="mh_pop", action="store_true", help="the input is an MH POP3 folder"
    )
    kind.add_argument(
        "-I",
        dest="imap",
        action="store_true",
        help="convert the user's mbox mail folder into their IMAP mailbox (12.5.3)",
    )
    parser.add_argument(
        "-f",
        dest="input",
        metavar="INPUT",
        required=True,
        help="the user's MH POP3 folder (-Q) or mbox mail folder (-I)",
    )
    parser.add_argument(
        "newname",
        metavar="NEWNAME|SUBFOLDER",
        nargs="?",
        help="-Q: the user (default: INPUT's name); -I: the IMAP subfolder to fill",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point set as ``func``."""
    settings = settings_for(TOOL, args.config)
    if settings is None:
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
    try:
        if args.imap:
            user = folder.resolve().name
            bar = ProgressBar(stderr) if stderr.isatty() else None
            converted = convert_spool_to_imap(
                settings, folder, user, args.newname, progress=bar.show if bar else None
            )
            if bar is not None:
                bar.done()
            print(
                f"{folder}: {converted.messages} messages appended to {user}'s {converted.mailbox}",
                file=stdout,
            )
            return EX_OK
        if not args.mh_pop:
            raise InvalidRequest("give -Q -f INPUT (MH POP3) or -I -f FOLDER (IMAP)")
        result = convert_mh_folder(settings, folder, args.newname or folder.resolve().name)
    except AdminError as exc:
        return report(TOOL, exc, stderr)
    print(f"{folder}: {result.messages} messages appended to {result.mailbox}", file=stdout)
    return EX_OK


class ProgressBar:
    """``[#####.....]  120/500 messages`` redrawn in place on a terminal."""

    WIDTH = 40

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def show(self, done: int, total: int) -> None:
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self._out.write(f"\r[{bar}] {done}/{total} messages")
        self._out.flush()

    def done(self) -> None:
        self._out.write("\n")
        self._out.flush()
