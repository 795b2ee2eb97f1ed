"""``posthouse imapquota [-f] [ROOT...]``: report the IMAP store's quota roots, and with
``-f`` count their usage again from the mailboxes (chapter 12.5.5, 12.5.8).

::

       Quota   % Used     Used Root
        1000       45      450 user.hansen
    user.hansen.personnel: usage was 12, now 10

The report has Cyrus's ``quota`` columns: the limit in kilobytes, the percentage used, the
usage in kilobytes, and the root.  ROOT arguments are name prefixes (``user.h`` reports
``user.hansen`` and ``user.hilda``), as Cyrus's tool takes them; without any, every root.
With ``-f`` a line ``ROOT: usage was X, now Y`` (kilobytes) comes first for each root whose
recorded usage was wrong.  Run as root, the tool acts as the owner of the data directory.

Exit codes follow sysexits: 0 ok, 64 usage, 74 the store could not be read or written,
78 configuration.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from posthouse.admin.errors import AdminError
from posthouse.admin.imapquota import QuotaLine, quota_report
from posthouse.cli.configured import settings_for
from posthouse.cli.exits import EX_CONFIG, EX_OK, report
from posthouse.config.schema import Settings

__all__ = ["add_parser", "format_report", "run_imapquota"]

TOOL = "posthouse imapquota"
KB = 1024


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``imapquota`` sub-command."""
    parser = subparsers.add_parser(
        "imapquota",
        help="report (and with -f fix) the quota roots of the IMAP store",
        description="Report each quota root's limit and usage in kilobytes, like Cyrus's "
        "quota tool; with -f, count the usage again from the mailboxes' messages first.",
    )
    parser.add_argument(
        "-f",
        dest="fix",
        action="store_true",
        help="count each mailbox's bytes again from its messages and fix what its index kept",
    )
    parser.add_argument(
        "roots",
        metavar="ROOT",
        nargs="*",
        help="quota root name prefixes (default: every root)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point set as ``func``."""
    settings = settings_for(TOOL, args.config)
    if settings is None:
        return EX_CONFIG
    return run_imapquota(settings, args)


def run_imapquota(
    settings: Settings,
    args: argparse.Namespace,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the parsed command against the loaded configuration ``settings``."""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        lines = quota_report(settings, args.roots, fix=args.fix)
    except AdminError as exc:
        return report(TOOL, exc, stderr)
    stdout.write(format_report(lines))
    return EX_OK


def format_report(lines: list[QuotaLine]) -> str:
    """The fixes, then Cyrus's table (``Quota % Used Used Root``)."""
    out = [
        f"{line.usage.root}: usage was {(line.was_bytes or 0) // KB},"
        f" now {line.usage.used_bytes // KB}\n"
        for line in lines
        if line.fixed
    ]
    out.append(f"{'Quota':>8} {'% Used':>8} {'Used':>8} Root\n")
    for line in lines:
        usage = line.usage
        used_kb = usage.used_bytes // KB
        if usage.limit_kb is None:
            limit, percent = "", ""
        else:
            limit = str(usage.limit_kb)
            percent = str(used_kb * 100 // usage.limit_kb) if usage.limit_kb else "-"
        out.append(f"{limit:>8} {percent:>8} {used_kb:>8} {usage.root}\n")
    return "".join(out)
