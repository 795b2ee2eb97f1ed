"""The ``posthouse`` command: one sub-command per administrative tool.

Each tool lives in its own module under ``posthouse.cli`` and exposes
``add_parser(subparsers)``, which registers the sub-command and sets
``func`` (a callable taking the parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

TOOL_MODULES: tuple[str, ...] = (
    "serve",
    "user",
    "newaliases",
    "sendmail",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posthouse", description="posthouse mail system")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in TOOL_MODULES:
        import_module(f"posthouse.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = func(args)
    return result
