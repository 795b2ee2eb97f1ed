"""``posthouse mailstats``: show the mail statistics per delivery agent.

Without options, prints sendmail's ``mailstats`` table (messages and kilobytes received from
and sent to each delivery agent, rejected and discarded messages, and a total line).
``-P`` prints the program-readable form instead; ``-p`` prints it and resets the counters in
the same locked step (as sendmail's ``mailstats -p``).  ``-f FILE`` reads another statistics
file.  Reset by hand: truncate the file (``cp /dev/null`` it), see :mod:`posthouse.mta.stats`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from posthouse.cli.configured import settings_for
from posthouse.mta.stats import CorruptStatistics, Statistics, format_stats, format_stats_program

EX_DATAERR = 65
EX_IOERR = 74
EX_NOPERM = 77
EX_CONFIG = 78


def _options(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "-p",
        dest="mode",
        action="store_const",
        const="reset",
        help="program-readable output, and reset the statistics",
    )
    mode.add_argument(
        "-P", dest="mode", action="store_const", const="program", help="program-readable output"
    )
    parser.add_argument("-f", "--file", metavar="FILE", help="statistics file to read")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("mailstats", help="show mail statistics per delivery agent")
    _options(parser)
    parser.set_defaults(
        func=lambda args: mailstats(args.config, mode=args.mode, stats_file=args.file)
    )


def show(path: Path, *, mode: str | None = None, out: TextIO | None = None) -> int:
    """Print the statistics in ``path``; ``mode`` is None, ``"program"`` or ``"reset"``."""
    stream = sys.stdout if out is None else out
    stats = Statistics(path)
    try:
        reset = mode == "reset" and path.exists()
        table = stats.read_and_reset() if reset else stats.read()
    except CorruptStatistics as exc:
        print(f"mailstats: {path}: {exc}", file=sys.stderr)
        return EX_DATAERR
    except PermissionError as exc:
        print(f"mailstats: {path}: {exc.strerror}", file=sys.stderr)
        return EX_NOPERM
    except OSError as exc:
        print(f"mailstats: {path}: {exc.strerror or exc}", file=sys.stderr)
        return EX_IOERR
    lines = format_stats(table) if mode is None else format_stats_program(table)
    for line in lines:
        stream.write(line + "\n")
    stream.flush()
    return 0


def mailstats(
    config: str | None,
    *,
    mode: str | None = None,
    stats_file: str | None = None,
    out: TextIO | None = None,
) -> int:
    if stats_file is not None:
        path = Path(stats_file)
    else:
        settings = settings_for("mailstats", config)
        if settings is None:
            return EX_CONFIG
        path = settings.paths.stats_file
    return show(path, mode=mode, out=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailstats")
    parser.add_argument("--config", "-C", metavar="FILE")
    _options(parser)
    args = parser.parse_args(argv)
    return mailstats(args.config, mode=args.mode, stats_file=args.file)
