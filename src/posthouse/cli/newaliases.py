"""``posthouse newaliases`` (also ``posthouse-newaliases`` and ``sendmail -bi``).

Rebuilds the indexed aliases database from the aliases(5) file.  The running
daemon notices the new database at its next lookup, without a restart.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from posthouse.cli.configured import settings_for
from posthouse.config.schema import Settings
from posthouse.mta.aliasdb import build_alias_database
from posthouse.mta.aliases import AliasSyntaxError

EX_CONFIG = 78
EX_NOINPUT = 66
EX_CANTCREAT = 73


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("newaliases", help="rebuild the aliases database")
    parser.set_defaults(func=lambda args: newaliases(args.config))


def rebuild(settings: Settings) -> int:
    """Build the database; prints what sendmail prints and returns a sysexits code."""
    paths = settings.paths
    if not paths.aliases_file.exists():
        print(f"newaliases: {paths.aliases_file}: no such file", file=sys.stderr)
        return EX_NOINPUT
    try:
        paths.aliases_db.parent.mkdir(parents=True, exist_ok=True)
        count = build_alias_database(paths.aliases_file, paths.aliases_db)
    except AliasSyntaxError as exc:
        print(f"newaliases: {exc}", file=sys.stderr)
        return EX_CONFIG
    except OSError as exc:
        print(f"newaliases: cannot write {paths.aliases_db}: {exc.strerror}", file=sys.stderr)
        return EX_CANTCREAT
    print(f"{paths.aliases_file}: {count} aliases")
    return 0


def newaliases(config: str | None) -> int:
    settings = settings_for("newaliases", config)
    if settings is None:
        return EX_CONFIG
    return rebuild(settings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="newaliases")
    parser.add_argument("--config", "-C", metavar="FILE")
    args = parser.parse_args(argv)
    return newaliases(args.config)
