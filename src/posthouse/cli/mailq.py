"""``posthouse mailq`` (also ``sendmail -bp``): list the mail queue.

Prints the listing of :mod:`posthouse.mta.queue.listing` as it is produced (the queue is never
loaded into memory as a whole, and data files are not opened).  ``-v`` adds, per message, the client
address, HELO name, authenticated user and protocol, delivered recipients, and the attempts
and next attempt time of each recipient.  A queue directory that does not exist is an empty
queue (``mailq`` does not create it).  An ordinary user, who may not read the queue's control
files, gets the listing from the running daemon over its control socket (12.7: general users
can monitor the queue); without a daemon, what the user may read.  Exit status 0, or a
sysexits code if the queue cannot be read.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from posthouse.admin.daemon import queue_listing
from posthouse.admin.errors import AdminError
from posthouse.cli.configured import settings_for
from posthouse.config.schema import Settings
from posthouse.mta.queue.listing import EMPTY_QUEUE, list_queue
from posthouse.mta.queue.store import QueueStore

WRITE_LINES = 4096  # lines per write: the listing streams, in large pieces
EX_IOERR = 74
EX_NOPERM = 77
EX_CONFIG = 78


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("mailq", help="list the mail queue")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show client, HELO, auth user and attempts"
    )
    parser.set_defaults(func=lambda args: mailq(args.config, verbose=args.verbose))


def print_queue(settings: Settings, *, verbose: bool = False, out: TextIO | None = None) -> int:
    """Write the listing of the configured queue to ``out`` (standard output); exit code."""
    stream = sys.stdout if out is None else out
    queue_dir = settings.paths.queue_dir
    try:
        if not queue_dir.is_dir():
            stream.write(EMPTY_QUEUE + "\n")
        elif (lines := _from_daemon(settings, verbose)) is not None:
            _write(lines, stream)
        else:
            store = QueueStore(queue_dir)
            try:
                _write(list_queue(store, verbose=verbose), stream)
            finally:
                store.close()
        stream.flush()
    except BrokenPipeError:
        # The reader (``mailq | head``) went away: that is not an error.
        if out is None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 0
    except PermissionError as exc:
        print(f"mailq: {queue_dir}: {exc.strerror}", file=sys.stderr)
        return EX_NOPERM
    except OSError as exc:
        print(f"mailq: {queue_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EX_IOERR
    return 0


def _from_daemon(settings: Settings, verbose: bool) -> Iterator[str] | None:
    """The daemon's listing, for a user who cannot read the queue's files (not root, not the
    queue's owner); None when reading them here will do, or no daemon answers."""
    queue_dir = settings.paths.queue_dir
    if os.geteuid() == 0 or queue_dir.stat().st_uid == os.geteuid():
        return None
    try:
        return queue_listing(settings, verbose=verbose)
    except AdminError:
        return None


def _write(lines: Iterator[str], stream: TextIO) -> None:
    while chunk := list(itertools.islice(lines, WRITE_LINES)):
        stream.write("\n".join(chunk) + "\n")


def mailq(config: str | None, *, verbose: bool = False, out: TextIO | None = None) -> int:
    settings = settings_for("mailq", config)
    if settings is None:
        return EX_CONFIG
    return print_queue(settings, verbose=verbose, out=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailq")
    parser.add_argument("--config", "-C", metavar="FILE")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    return mailq(args.config, verbose=args.verbose)
