"""The ``posthouse`` command line: which tool is asked for, and loading only that one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from posthouse.cli.main import TOOL_MODULES, build_parser, requested_tool


@pytest.mark.parametrize(
    ("arguments", "tool"),
    [
        (["mailq", "-v"], "mailq"),
        (["--config", "/etc/posthouse.toml", "mailq"], "mailq"),
        (["--config", "mailq", "mailstats"], "mailstats"),  # a config file named like a tool
        (["--help"], None),
        ([], None),
        (["no-such-tool"], None),
    ],
)
def test_the_requested_tool_is_the_first_operand(arguments: list[str], tool: str | None) -> None:
    assert requested_tool(arguments) == tool


def test_a_parser_for_one_tool_parses_it_like_the_full_one() -> None:
    only = build_parser("mailq").parse_args(["--config", "x.toml", "mailq", "-v"])
    full = build_parser().parse_args(["--config", "x.toml", "mailq", "-v"])
    assert (only.command, only.verbose, only.config) == (full.command, full.verbose, full.config)


def test_help_lists_every_tool() -> None:
    text = build_parser().format_help()
    assert all(name in text for name in TOOL_MODULES)


def test_mailq_does_not_load_the_server() -> None:
    probe = (
        "import sys; from posthouse.cli.main import main;"
        "main(['--config', '/nonexistent.toml', 'mailq']);"
        "print('posthouse.app' in sys.modules, 'dns.resolver' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip().splitlines()[-1] == "False False"
