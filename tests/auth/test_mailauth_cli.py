"""``posthouse mailauth``, ``popcv`` and ``mailusradm``, run in-process with explicit paths."""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from posthouse.auth.mailauth import MailAuthDatabase, crypt_available, crypt_hash
from posthouse.auth.users import ServiceType, UserDatabase
from posthouse.cli import mailauth as mailauth_cli
from posthouse.cli import mailusradm as mailusradm_cli
from posthouse.cli import popcv as popcv_cli
from posthouse.cli.mailauth import MailAuthFiles

pytestmark = pytest.mark.usefixtures("cheap_hashes")


class TtyInput(io.StringIO):
    def isatty(self) -> bool:
        return True


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="posthouse")
    parser.add_argument("--config")
    sub = parser.add_subparsers(dest="command")
    for module in (mailauth_cli, popcv_cli, mailusradm_cli):
        module.add_parser(sub)
    return parser.parse_args(list(argv))


@pytest.fixture
def files(tmp_path: Path) -> MailAuthFiles:
    return MailAuthFiles(tmp_path / "mailauth.db", tmp_path / "mailauth.key", tmp_path / "u.db")


class Run:
    def __init__(self, files: MailAuthFiles) -> None:
        self.files = files
        self.out = self.err = ""
        self.prompts: list[str] = []

    def _answers(self, answers: list[str] | None) -> Callable[[str], str]:
        pending = iter(answers or [])

        def prompt(text: str) -> str:
            self.prompts.append(text)
            return next(pending)

        return prompt

    def mailauth(
        self, *argv: str, stdin: io.StringIO | None = None, answers: list[str] | None = None
    ) -> int:
        out, err = io.StringIO(), io.StringIO()
        code = mailauth_cli.run_mailauth(
            self.files,
            parse("mailauth", *argv),
            stdin=stdin or io.StringIO(),
            stdout=out,
            stderr=err,
            prompt=self._answers(answers),
            current_user=lambda: "alice",
        )
        self.out, self.err = out.getvalue(), err.getvalue()
        return code

    def mailusradm(
        self, *argv: str, stdin: io.StringIO | None = None, answers: list[str] | None = None
    ) -> int:
        out, err = io.StringIO(), io.StringIO()
        code = mailusradm_cli.run_mailusradm(
            self.files,
            parse("mailusradm", *argv),
            stdin=stdin or io.StringIO(),
            stdout=out,
            stderr=err,
            prompt=self._answers(answers),
        )
        self.out, self.err = out.getvalue(), err.getvalue()
        return code

    def popcv(self, source: Path, *, clear: bool = False) -> int:
        out, err = io.StringIO(), io.StringIO()
        code = popcv_cli.run_popcv(self.files, str(source), clear=clear, stdout=out, stderr=err)
        self.out, self.err = out.getvalue(), err.getvalue()
        return code

    def db(self) -> MailAuthDatabase:
        return MailAuthDatabase(self.files.database, self.files.key)


@pytest.fixture
def run(files: MailAuthFiles) -> Run:
    with UserDatabase(files.users_db) as users:
        users.add("alice", "alice-login")
        users.add("bob", "bob-login", ServiceType.IMAP)
    return Run(files)


def test_parser_accepts_single_dash_long_options() -> None:
    assert parse("mailauth", "-init").init is True
    assert parse("mailauth", "--init").init is True
    assert parse("mailauth", "-convert").convert == "-"
    assert parse("mailauth", "-convert", "dump.txt").convert == "dump.txt"
    assert parse("mailauth", "--convert", "dump.txt").convert == "dump.txt"
    assert parse("mailauth", "carol").user == "carol"
    with pytest.raises(SystemExit):
        parse("mailauth", "-init", "-convert")


def test_init_twice(run: Run, files: MailAuthFiles) -> None:
    assert run.mailauth("-init") == 0
    assert "new key" in run.out
    key = files.key.read_bytes()
    assert run.mailauth("--init") == 0
    assert "key kept" in run.out
    assert files.key.read_bytes() == key


def test_commands_before_init_exit_78(run: Run, tmp_path: Path) -> None:
    assert run.mailauth("-convert", stdin=io.StringIO("a:b\n")) == 78
    assert "mailauth -init" in run.err
    assert run.mailauth("--password-stdin", stdin=io.StringIO("alice-login\nnew\n")) == 78
    (tmp_path / "POP").write_text("x::x:pw::::::0\n")
    assert run.popcv(tmp_path / "POP", clear=True) == 78
    assert run.mailusradm("set", "alice", "pop-mailpass", "--password-stdin") == 78


def test_convert_from_stdin_and_file(run: Run, tmp_path: Path) -> None:
    run.mailauth("-init")
    dump = "# popauth\nalice:alice mail\nbroken\nbob bob-mail\n"
    assert run.mailauth("-convert", stdin=io.StringIO(dump)) == 0
    assert "imported 2 users, skipped 1 lines" in run.out
    assert "(stdin):3: skipped" in run.err
    source = tmp_path / "dump.txt"
    source.write_text("carol:c-pw\n")
    assert run.mailauth("-convert", str(source)) == 0
    assert f"{source}" not in run.err
    with run.db() as db:
        assert db.users() == ["alice", "bob", "carol"]
        assert db.verify("bob", "bob-mail")
    assert run.mailauth("-convert", str(tmp_path / "missing")) == 66
    assert run.mailauth("-init", "alice") == 64


def test_change_own_password_first_time_uses_login_password(run: Run) -> None:
    run.mailauth("-init")
    stdin = TtyInput()
    assert run.mailauth(stdin=stdin, answers=["alice-login", "mail-1", "mail-1"]) == 0
    assert run.prompts == [
        "Current login password for alice: ",
        "New mail password for alice: ",
        "Retype new mail password: ",
    ]
    run.prompts.clear()
    assert run.mailauth(stdin=stdin, answers=["mail-1", "mail-2", "mail-2"]) == 0
    assert run.prompts[0] == "Current mail password for alice: "
    with run.db() as db:
        assert db.verify("alice", "mail-2")


def test_change_password_failures(run: Run) -> None:
    run.mailauth("-init")
    assert run.mailauth("--password-stdin", stdin=io.StringIO("wrong\nnew\n")) == 77
    assert run.mailauth("bob", "--password-stdin", stdin=io.StringIO("bob-login\n\n")) == 64
    same = io.StringIO("bob-login\nbob-login\n")
    assert run.mailauth("bob", "--password-stdin", stdin=same) == 64
    assert "differ from the login password" in run.err
    assert run.mailauth(stdin=TtyInput(), answers=["alice-login", "one", "two"]) == 64
    assert "do not match" in run.err
    assert run.mailauth(stdin=io.StringIO()) == 64  # no terminal, no --password-stdin
    assert run.mailauth("nobody", "--password-stdin", stdin=io.StringIO("x\ny\n")) == 67
    assert run.mailauth("Bad/Name") == 64
    with run.db() as db:
        assert db.users() == []
    assert run.mailauth("bob", "--password-stdin", stdin=io.StringIO("bob-login\nb-mail\n")) == 0
    assert "changed for bob" in run.out


def test_popcv_with_crypt_hashes(run: Run, tmp_path: Path) -> None:
    if not crypt_available():
        pytest.skip("no crypt(3)")
    run.mailauth("-init")
    hashed = crypt_hash("jake-pop", "xy")
    pop_file = tmp_path / "POP"
    pop_file.write_text(
        f"jake::jake:{hashed}::::::0\n"
        f"alice::alice:{crypt_hash('alice-pop', 'ab')}::::::0\n"
        f"bob::bob:{crypt_hash('bob-pop', 'cd')}::bob@host::::0\n"
        "mrose::mrose:::::::0\n"
        "dis::dis:*::::::0\n"
        "short:line\n"
        "\n"
    )
    assert run.popcv(pop_file) == 0
    assert "imported 3 POP users (1 added, 1 switched to pop-mailpass), skipped 3 lines" in run.out
    assert f"{pop_file}:4: skipped: mrose: empty password" in run.err
    with UserDatabase(run.files.users_db) as users:
        jake = users.get("jake")
        assert jake is not None and jake.service_type is ServiceType.POP_MAILPASS
        assert jake.password_hash is None
        alice = users.get("alice")
        assert alice is not None and alice.service_type is ServiceType.POP_MAILPASS
        bob = users.get("bob")
        assert bob is not None and bob.service_type is ServiceType.IMAP  # left alone
    with run.db() as db:
        assert db.verify("jake", "jake-pop")
        assert not db.verify("alice", "alice-login")
        assert db.verify("alice", "alice-pop")
    assert run.popcv(tmp_path / "nope") == 66


def test_popcv_clear_passwords(run: Run, tmp_path: Path) -> None:
    run.mailauth("-init")
    pop_file = tmp_path / "POP"
    pop_file.write_text("# kept in clear\ncarol::carol:c pw::::::0\n")
    assert run.popcv(pop_file, clear=True) == 0
    with run.db() as db:
        assert db.apop_secret("carol") == "c pw"


def test_mailusradm_list(run: Run) -> None:
    assert run.mailusradm("list") == 0  # works before -init: nobody has a mail password
    assert run.out.splitlines()[1:] == ["alice  unix  no", "bob    imap  no"]
    run.mailauth("-init")
    with run.db() as db:
        db.set_password("bob", "bob-mail")
    assert run.mailusradm("list", "B*") == 0
    assert run.out.splitlines() == ["NAME  TYPE  MAIL PASSWORD", "bob   imap  yes"]


def test_mailusradm_set_prompts_when_needed(run: Run) -> None:
    run.mailauth("-init")
    tty = TtyInput()
    assert run.mailusradm("set", "alice", "pop", stdin=tty) == 0
    assert run.prompts == []
    assert run.mailusradm("set", "alice", "pop-mailpass", stdin=tty, answers=["m1", "m1"]) == 0
    assert run.prompts == ["New mail password for alice: ", "Retype new mail password: "]
    run.prompts.clear()
    assert run.mailusradm("set", "alice", "imap-mailpass", stdin=tty) == 0  # has one already
    assert run.prompts == []
    with UserDatabase(run.files.users_db) as users:
        alice = users.get("alice")
        assert alice is not None and alice.service_type is ServiceType.IMAP_MAILPASS
    with run.db() as db:
        assert db.verify("alice", "m1")


def test_mailusradm_set_apop_needs_a_recoverable_secret(run: Run) -> None:
    run.mailauth("-init")
    with run.db() as db:
        db.set_legacy_crypt("bob", "xyAAAAAAAAAAA")
    stdin = io.StringIO("bob-apop\n")
    assert run.mailusradm("set", "bob", "apop-mailpass", "--password-stdin", stdin=stdin) == 0
    with run.db() as db:
        assert db.apop_secret("bob") == "bob-apop"


def test_mailusradm_set_password_stdin_replaces_the_mail_password(run: Run) -> None:
    run.mailauth("-init")
    stdin = io.StringIO("first-mail\n")
    assert run.mailusradm("set", "alice", "pop-mailpass", "--password-stdin", stdin=stdin) == 0
    stdin = io.StringIO("second-mail\n")
    assert run.mailusradm("set", "alice", "apop-mailpass", "--password-stdin", stdin=stdin) == 0
    with run.db() as db:
        assert db.verify("alice", "second-mail")
        assert not db.verify("alice", "first-mail")
        assert db.apop_secret("alice") == "second-mail"


def test_mailusradm_set_errors(run: Run) -> None:
    run.mailauth("-init")
    assert run.mailusradm("set", "nobody", "pop") == 67
    assert run.mailusradm("set", "alice", "pop-mailpass") == 64  # no terminal
    assert (
        run.mailusradm("set", "alice", "pop-mailpass", stdin=TtyInput(), answers=["a", "b"]) == 64
    )
    with UserDatabase(run.files.users_db) as users:
        alice = users.get("alice")
        assert alice is not None and alice.service_type is ServiceType.UNIX  # unchanged
    with pytest.raises(SystemExit):
        parse("mailusradm", "set", "alice", "bogus")


def test_entry_points_report_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.toml")
    assert mailauth_cli.main(parse("--config", missing, "mailauth", "-init")) == 78
    assert popcv_cli.main(parse("--config", missing, "popcv")) == 78
    assert mailusradm_cli.main(parse("--config", missing, "mailusradm", "list")) == 78
    assert "missing.toml" in capsys.readouterr().err


def test_mailauth_files_from_config(tmp_path: Path) -> None:
    config = tmp_path / "posthouse.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    files = mailauth_cli.mailauth_files(str(config))
    assert files.database == tmp_path / "data" / "etc" / "mailauth.db"
    assert files.key == tmp_path / "data" / "etc" / "mailauth.key"
    assert files.users_db == tmp_path / "data" / "etc" / "users.db"
