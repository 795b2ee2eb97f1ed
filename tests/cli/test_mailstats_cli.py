"""Tests for ``posthouse mailstats`` (posthouse.cli.mailstats)."""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import pytest

from posthouse.cli import mailstats as mailstats_cli
from posthouse.config.load import load_settings
from posthouse.mta.stats import Statistics


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posthouse.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    return path


def _stats_file(config: Path) -> Path:
    path = load_settings(config).paths.stats_file
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _run(config: Path, mode: str | None = None, stats_file: str | None = None) -> list[str]:
    out = io.StringIO()
    assert mailstats_cli.mailstats(str(config), mode=mode, stats_file=stats_file, out=out) == 0
    return out.getvalue().splitlines()


def _record(path: Path) -> None:
    with Statistics(path, flush_interval=0) as stats:
        for _ in range(12):
            stats.record_received("local", 2900)
        for _ in range(10):
            stats.record_sent("local", 3000)
        stats.record_rejected("local")
        stats.record_sent("esmtp", 100)


def test_no_statistics_yet(config: Path) -> None:
    lines = _run(config)
    assert lines[0].startswith("Statistics from ")
    assert lines[1] == " M   msgsfr  bytes_from   msgsto    bytes_to  msgsrej msgsdis  Mailer"
    assert lines[2] == " " + "=" * 60
    assert lines[3] == " T        0          0K        0          0K        0       0"


def test_table(config: Path) -> None:
    _record(_stats_file(config))
    lines = _run(config)
    assert re.fullmatch(r"Statistics from \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", lines[0])
    assert lines[2:] == [
        " 0       12         34K       10         30K        1       0  local",
        " 1        0          0K        1          1K        0       0  esmtp",
        " " + "=" * 60,
        " T       12         34K       11         30K        1       0",
    ]


def test_program_readable_and_reset(config: Path) -> None:
    path = _stats_file(config)
    _record(path)
    shown = _run(config, mode="program")
    assert re.fullmatch(r"\d+ \d+", shown[0])
    assert shown[1] == " 0       12       34       10       30        1        0  local"
    assert _run(config, mode="program")[1:] == shown[1:]  # -P does not reset
    assert _run(config, mode="reset")[1:] == shown[1:]  # -p prints, then resets
    assert path.stat().st_size == 0
    assert _run(config, mode="program")[1:] == [
        " T        0        0        0        0        0        0"
    ]


def test_reset_of_missing_file_creates_nothing(config: Path) -> None:
    _run(config, mode="reset")
    assert not load_settings(config).paths.stats_file.exists()


def test_other_file_and_corrupt_file(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.st"
    _record(other)
    assert _run(config, stats_file=str(other))[2].endswith("  local")
    other.write_bytes(b"\x00garbage")
    assert mailstats_cli.mailstats(None, stats_file=str(other)) == 65
    assert "not a statistics file" in capsys.readouterr().err


def test_subcommand_options(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _record(_stats_file(config))
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    mailstats_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["--config", str(config), "mailstats", "-P"])
    assert args.mode == "program"
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("  local")
    with pytest.raises(SystemExit):
        parser.parse_args(["mailstats", "-p", "-P"])
    capsys.readouterr()
    assert mailstats_cli.main(["--config", str(config)]) == 0
    assert " T       12" in capsys.readouterr().out


def test_configuration_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mailstats_cli.mailstats(str(tmp_path / "absent.toml")) == 78
    assert "configuration error" in capsys.readouterr().err
