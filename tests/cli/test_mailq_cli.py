"""Tests for ``posthouse mailq`` (posthouse.cli.mailq) against a configured queue."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from posthouse.cli import mailq as mailq_cli
from posthouse.config.load import load_settings
from posthouse.mta.queue.store import QueueStore, RecipientState


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posthouse.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    return path


def _queue(config: Path) -> QueueStore:
    return QueueStore(load_settings(config).paths.queue_dir)


def _run(config: Path, *, verbose: bool = False) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = mailq_cli.mailq(str(config), verbose=verbose, out=out)
    return code, out.getvalue().splitlines()


def test_missing_queue_directory_is_empty_and_not_created(config: Path) -> None:
    assert _run(config) == (0, ["Mail queue is empty"])
    assert not load_settings(config).paths.queue_dir.exists()


def test_lists_the_queue(config: Path) -> None:
    store = _queue(config)
    try:
        rcpt = RecipientState(
            "corcoran@host1.corp.com", status="deferred", last_error="Connection refused"
        )
        with store.new_message(
            "blaise@example.com",
            [rcpt],
            client_address="192.0.2.9",
            helo="client.example.com",
            auth_user="blaise",
        ) as msg:
            msg.write(b"Subject: hello\r\n\r\nbody\r\n")
            qid = msg.commit_blocking()
    finally:
        store.close()
    code, lines = _run(config)
    assert code == 0
    assert lines[0].strip() == "Mail Queue (1 request)"
    assert lines[2].startswith(qid + " ")
    assert lines[2].endswith(" <blaise@example.com>")
    assert lines[3].strip() == "(Deferred: Connection refused)"
    assert lines[4].strip() == "<corcoran@host1.corp.com>"
    assert lines[-1] == "-- 1 Kbytes in 1 request."
    assert not any("192.0.2.9" in line for line in lines)
    code, verbose = _run(config, verbose=True)
    assert code == 0
    assert verbose[3].strip() == (
        "Client: 192.0.2.9  HELO: client.example.com  Auth: blaise  Protocol: ESMTP"
    )


def test_subcommand_and_standalone_entry(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    mailq_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["--config", str(config), "mailq", "-v"])
    assert args.verbose is True
    assert args.func(args) == 0
    assert capsys.readouterr().out == "Mail queue is empty\n"
    assert mailq_cli.main(["--config", str(config)]) == 0
    assert capsys.readouterr().out == "Mail queue is empty\n"


def test_configuration_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mailq_cli.mailq(str(tmp_path / "absent.toml")) == 78
    assert "mailq: configuration error" in capsys.readouterr().err


def test_queue_path_not_a_directory(config: Path) -> None:
    queue_dir = load_settings(config).paths.queue_dir
    queue_dir.parent.mkdir(parents=True)
    queue_dir.write_text("not a directory")  # is_dir() is false: treated as no queue
    assert _run(config) == (0, ["Mail queue is empty"])


def test_broken_pipe_is_not_an_error(config: Path) -> None:
    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError

    assert mailq_cli.mailq(str(config), out=Closed()) == 0
