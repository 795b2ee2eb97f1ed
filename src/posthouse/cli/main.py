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


def requested_tool(arguments: Sequence[str]) -> str | None:
    """The tool named on the command line (the first operand, skipping ``--config FILE``)."""
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--config":
            skip = True
        elif not argument.startswith("-"):
            return argument if argument in TOOL_MODULES else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every tool, or for ``only`` (which then imports nothing else: a
    ``posthouse mailq`` does not pay for loading the server)."""
    parser = argparse.ArgumentParser(prog="posthouse", description="posthouse mail system")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML configuration file"
    )
    subparsers = _Subcommands(parser.add_subparsers(dest="command", metavar="COMMAND"), common)
    for name in TOOL_MODULES if only is None else (only,):
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
    parser = build_parser(requested_tool(arguments))
    args = parser.parse_args(arguments)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = func(args)
    return result
