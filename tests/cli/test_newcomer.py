"""What a new user tries first, from the README: ``--help`` everywhere, ``--config`` anywhere."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from posthouse.cli import mailq, mailstats, newaliases, sendmail
from posthouse.cli.main import TOOL_MODULES, build_parser, main

# One command line per tool and per action of a tool (the global options go after them).
COMMAND_LINES = [
    ["serve"],
    ["serve", "--workers", "2"],
    ["start"],
    ["stop", "--timeout", "5"],
    ["restart"],
    ["status"],
    ["reload"],
    ["user", "add", "kate", "--password-stdin"],
    ["user", "del", "kate"],
    ["user", "list"],
    ["user", "passwd", "kate"],
    ["newaliases"],
    ["sendmail"],
    ["mailauth", "-init"],
    ["mailauth", "-convert"],
    ["mailauth", "kate"],
    ["popcv", "/tmp/POP"],
    ["mailcv", "-Q", "-f", "jake", "chuck"],
    ["mailcv", "-I", "-f", "jake", "business"],
    ["deliver", "-m", "work", "-f", "a@b.test", "jake"],
    ["mailusradm", "list"],
    ["mailusradm", "set", "kate", "pop"],
    ["mailq", "-v"],
    ["mailstats"],
    ["setup", "--role", "client"],
    ["imapquota", "-f", "user.hansen"],
]


def test_every_tool_has_a_command_line_here() -> None:
    assert {line[0] for line in COMMAND_LINES} == set(TOOL_MODULES)


@pytest.mark.parametrize("line", COMMAND_LINES, ids=" ".join)
def test_config_is_accepted_before_or_after_the_subcommand(line: list[str]) -> None:
    after = build_parser().parse_args([*line, "--config", "after.toml"])
    before = build_parser().parse_args(["--config", "before.toml", *line])
    equals = build_parser().parse_args([*line, "--config=equals.toml"])
    assert (after.config, before.config, equals.config) == (
        "after.toml",
        "before.toml",
        "equals.toml",
    )
    assert build_parser().parse_args(line).config is None


def test_user_add_with_config_after_it_uses_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "posthouse.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert main(["user", "add", "kate", "--password-stdin", "--config", str(config)]) == 0
    assert (tmp_path / "data" / "etc" / "users.db").exists()


def test_sendmail_takes_config_as_its_long_option() -> None:
    assert sendmail.parse_options(["--config", "a.toml", "bob"]).config == "a.toml"
    assert sendmail.parse_options(["--config=b.toml", "bob"]).config == "b.toml"
    assert sendmail.parse_options(["-Cc.toml", "bob"]).config == "c.toml"


@pytest.mark.parametrize("tool", TOOL_MODULES)
def test_every_tool_answers_help_with_its_usage(
    tool: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        status = main([tool, "--help"])
        raise SystemExit(status)  # sendmail's own parser returns instead of exiting
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "entry",
    [sendmail.main, newaliases.main, mailq.main, mailstats.main],
    ids=["posthouse-sendmail", "posthouse-newaliases", "mailq", "mailstats"],
)
def test_every_entry_point_answers_help(entry: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert callable(entry)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(entry(["--help"]))
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_sendmail_help_is_not_an_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert sendmail.sendmail(["--help"]) == 0
    out, err = capsys.readouterr()
    assert "-bs" in out and "--config" in out and err == ""


def test_workers_default_to_one_per_cpu() -> None:
    from posthouse.config.load import parse_config
    from posthouse.daemon import worker_count

    assert parse_config("", "x.toml").server.workers == "auto"
    assert parse_config('[server]\nworkers = "auto"\n', "x.toml").server.workers == "auto"
    assert parse_config("[server]\nworkers = 1\n", "x.toml").server.workers == 1
    assert worker_count("auto") == (os.cpu_count() or 1)
    assert worker_count(3) == 3
    assert build_parser().parse_args(["serve", "--workers", "auto"]).workers == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "0"])
