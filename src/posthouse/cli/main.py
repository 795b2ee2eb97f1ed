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
from typing import Any

TOOL_MODULES: tuple[str, ...] = (
    "serve",
    "user",
    "newaliases",
    "sendmail",
    "mailauth",
    "popcv",
    "mailusradm",
    "mailq",
    "mailstats",
    "setup",
)


class _Subcommands:
    """Adds the common options (``--config``) to every tool's sub-parser."""

    def __init__(self, actions: Any, common: argparse.ArgumentParser) -> None:
        self._actions = actions
        self._common = common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs["parents"] = [*kwargs.get("parents", []), self._common]
        parser: argparse.ArgumentParser = self._actions.add_parser(name, **kwargs)
        return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posthouse", description="posthouse mail system")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML configuration file"
    )
    subparsers = _Subcommands(parser.add_subparsers(dest="command", metavar="COMMAND"), common)
    for name in TOOL_MODULES:
        import_module(f"posthouse.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if "sendmail" in arguments:
        # sendmail keeps its own traditional command line: hand it everything after the name.
        at = arguments.index("sendmail")
        parser = argparse.ArgumentParser(prog="posthouse", add_help=False)
        parser.add_argument("--config", metavar="FILE")
        leading, unknown = parser.parse_known_args(arguments[:at])
        if not unknown:
            from posthouse.cli.sendmail import sendmail

            return sendmail(arguments[at + 1 :], default_config=leading.config)
    parser = build_parser()
    args = parser.parse_args(arguments)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = func(args)
    return result
