"""``posthouse user``: in-process through run_user_command and main, and as a subprocess."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.auth.passwords import verify_password
from posthouse.auth.users import ServiceType, UserDatabase
from posthouse.cli import user as user_cli

pytestmark = pytest.mark.usefixtures("cheap_hashes")


class TtyInput(io.StringIO):
    def isatty(self) -> bool:
        return True


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="posthouse")
    parser.add_argument("--config")
    user_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


class Runner:
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.out = ""
        self.err = ""

    def __call__(
        self, *argv: str, stdin: io.StringIO | None = None, prompts: list[str] | None = None
    ) -> int:
        out, err = io.StringIO(), io.StringIO()
        answers = iter(prompts or [])
        code = user_cli.run_user_command(
            self.db_path,
            parse("user", *argv),
            stdin=stdin if stdin is not None else io.StringIO(),
            stdout=out,
            stderr=err,
            prompt=lambda _text: next(answers),
        )
        self.out, self.err = out.getvalue(), err.getvalue()
        return code

    def password_ok(self, name: str, password: str) -> bool:
        with UserDatabase(self.db_path) as db:
            user = db.get(name)
        assert user is not None and user.password_hash is not None
        return verify_password(user.password_hash, password)


@pytest.fixture
def run(tmp_path: Path) -> Runner:
    return Runner(tmp_path / "etc" / "users.db")


def test_func_is_set() -> None:
    assert parse("user", "list").func is user_cli.main


def test_add_list_del(run: Runner) -> None:
    assert run("add", "Alice", "--password", "pw1", "--type", "imap") == 0
    assert run("add", "bob", "--password", "pw2") == 0
    assert run("list") == 0
    lines = run.out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "SOURCE"]
    assert [line.split() for line in lines[1:]] == [
        ["alice", "imap", "posthouse"],
        ["bob", "unix", "posthouse"],
    ]
    assert run("list", "a*") == 0
    assert [line.split()[0] for line in run.out.splitlines()[1:]] == ["alice"]
    assert run("del", "ALICE") == 0
    assert run("list") == 0
    assert [line.split()[0] for line in run.out.splitlines()[1:]] == ["bob"]
    assert run.password_ok("bob", "pw2")


def test_every_service_type_accepted(run: Runner) -> None:
    for i, service_type in enumerate(ServiceType):
        assert run("add", f"u{i}", "--no-password", "--type", service_type.value) == 0
    with UserDatabase(run.db_path) as db:
        assert [u.service_type for u in db.list()] == list(ServiceType)


def test_unknown_type_is_usage_error(run: Runner) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("add", "x", "--password", "pw", "--type", "smtp")
    assert exit_info.value.code == 2  # argparse's own usage exit


def test_add_existing_is_73(run: Runner) -> None:
    assert run("add", "carol", "--password", "pw") == 0
    assert run("add", "CAROL", "--password", "pw") == 73
    assert "exists" in run.err


def test_missing_user_is_67(run: Runner) -> None:
    assert run("del", "nobody") == 67
    assert run("passwd", "nobody", "--password", "pw") == 67


def test_invalid_name_is_64(run: Runner) -> None:
    assert run("add", "--password", "pw", "--", "-bad") == 64
    assert run("add", "bad name", "--password", "pw") == 64
    assert "invalid user name" in run.err
    assert run("del", "bad/name") == 64
    assert run("add", "alice.lock", "--password", "pw") == 64
    assert "must not end in .lock" in run.err


def test_passwd_from_option_and_stdin(run: Runner) -> None:
    assert run("add", "dave", "--password", "old") == 0
    assert run("passwd", "dave", "--password", "new") == 0
    assert run.password_ok("dave", "new")
    assert run("passwd", "dave", "--password-stdin", stdin=io.StringIO("from stdin\r\n")) == 0
    assert run.password_ok("dave", "from stdin")
    assert not run.password_ok("dave", "from stdin\r")


def test_add_password_stdin(run: Runner) -> None:
    assert run("add", "erin", "--password-stdin", stdin=io.StringIO("s3cret\nignored\n")) == 0
    assert run.password_ok("erin", "s3cret")


def test_empty_passwords_refused(run: Runner) -> None:
    assert run("add", "frank", "--password", "") == 64
    assert run("add", "frank", "--password-stdin", stdin=io.StringIO("\n")) == 64
    assert run("add", "frank", "--password-stdin", stdin=io.StringIO("")) == 64
    assert "empty password" in run.err
    assert run("add", "frank", "--password", "pw") == 0
    assert run("passwd", "frank", "--password", "") == 64
    assert run("passwd", "frank", "--password-stdin", stdin=io.StringIO("\n")) == 64
    assert run.password_ok("frank", "pw")


def test_no_password_without_tty_is_usage_error(run: Runner) -> None:
    assert run("add", "gina") == 64
    assert "no password given" in run.err
    assert run("add", "gina", "--no-password") == 0
    assert run("passwd", "gina") == 64


def test_prompts_on_a_tty(run: Runner) -> None:
    assert run("add", "hank", stdin=TtyInput(), prompts=["pw", "pw"]) == 0
    assert run.password_ok("hank", "pw")
    assert run("passwd", "hank", stdin=TtyInput(), prompts=["new", "new"]) == 0
    assert run.password_ok("hank", "new")
    assert run("passwd", "hank", stdin=TtyInput(), prompts=["one", "two"]) == 64
    assert "do not match" in run.err
    assert run("passwd", "hank", stdin=TtyInput(), prompts=[""]) == 64
    assert run.password_ok("hank", "new")


def test_password_options_are_exclusive(run: Runner) -> None:
    with pytest.raises(SystemExit):
        run("add", "ivy", "--password", "pw", "--password-stdin")


def test_list_empty_database(run: Runner) -> None:
    assert run("list") == 0
    assert run.out.split() == ["NAME", "TYPE", "SOURCE"]


def test_unusable_database_path_is_74(tmp_path: Path, run: Runner) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    run.db_path = blocker / "users.db"
    assert run("list") == 74


# -- through main(), which reads the configuration ------------------------------


@pytest.fixture
def config_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "posthouse.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    yield path


def test_main_uses_configured_database(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("--config", str(config_file), "user", "add", "jack", "--password", "pw")
    assert args.func(args) == 0
    with UserDatabase(tmp_path / "data" / "etc" / "users.db") as db:
        assert db.get("jack") is not None
    args = parse("--config", str(config_file), "user", "list")
    assert args.func(args) == 0
    assert "jack" in capsys.readouterr().out


def test_main_config_error_is_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    args = parse("--config", str(bad), "user", "list")
    assert args.func(args) == 78
    assert "bad.toml" in capsys.readouterr().err


# -- end to end: python -m posthouse user ... ---------------------------------------


def test_end_to_end_subprocess(config_file: Path, tmp_path: Path) -> None:
    env = {**os.environ, "POSTHOUSE_HOME": str(tmp_path / "unused")}

    def posthouse(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "posthouse", "--config", str(config_file), "user", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    assert (
        posthouse("add", "kate", "--password-stdin", "--type", "pop", stdin="pw\n").returncode == 0
    )
    assert posthouse("add", "kate", "--password", "pw").returncode == 73
    listing = posthouse("list", "k*")
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[1].split() == ["kate", "pop", "posthouse"]
    assert posthouse("passwd", "kate", "--password-stdin", stdin="new\n").returncode == 0
    assert posthouse("passwd", "kate").returncode == 64  # no tty, no password option
    assert posthouse("del", "kate").returncode == 0
    assert posthouse("del", "kate").returncode == 67
