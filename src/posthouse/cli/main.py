"""The ``posthouse`` command: one sub-command per administrative tool.

Each tool lives in its own module under ``posthouse.cli`` and exposes
``add_parser(subparsers)``, which registers the sub-command and sets
``func`` (a callable taking the parsed namespace and returning an exit code); the init-script
commands (start, stop, restart, status, reload) share one module, ``posthouse.cli.daemon``.
Every tool, and every action of a tool, takes ``--config FILE`` before or after its
name; every tool answers ``--help`` with its usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any

TOOL_MODULES: tuple[str, ...] = (
    "serve",
    "start",
    "stop",
    "restart",
    "status",
    "reload",
    "user",
    "newaliases",
    "sendmail",
    "mailauth",
    "popcv",
    "mailcv",
    "deliver",
    "mailusradm",
    "mailq",
    "mailstats",
    "setup",
    "imapquota",
)

#: Tools whose module has another name (one module registers them all).
MODULE_OF = {name: "daemon" for name in ("start", "stop", "restart", "status", "reload")}


class ToolParser(argparse.ArgumentParser):
    """A parser that takes the global options (``--config FILE``) itself.

    Sub-parsers are made of the class of their parent, so every tool and every action of a
    tool (``posthouse user add``) takes them too: before or after the sub-command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--config",
            metavar="FILE",
            default=argparse.SUPPRESS,  # a sub-command's default never hides the tool's value
            help="TOML configuration file (default: $POSTHOUSE_CONFIG, else built-in defaults)",
        )


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
    parser = ToolParser(prog="posthouse", description="posthouse mail system")
    parser.set_defaults(config=None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [MODULE_OF.get(name, name) for name in (TOOL_MODULES if only is None else (only,))]
    for module in dict.fromkeys(modules):
        import_module(f"posthouse.cli.{module}").add_parser(subparsers)
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
    args, unrecognized = parser.parse_known_args(arguments)
    if unrecognized:  # a tool may ask for its own status (deliver: sysexits EX_USAGE)
        parser.print_usage(sys.stderr)
        message = f"posthouse: error: unrecognized arguments: {' '.join(unrecognized)}\n"
        parser.exit(getattr(args, "usage_status", 2), message)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = func(args)
    return result
