"""``posthouse mailauth`` run as root hands the files to the daemon's account (issue 8, item 4).

The daemon runs as ``server.run_as``; files created by root with mode 0600 would lock it
out of the mail passwords.  Tests marked ``needs_root`` use ``nobody`` as that account
(CI runs as root).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.auth.mailauth import MailAuthDatabase, MailAuthError
from posthouse.cli import mailauth as mailauth_cli
from posthouse.cli.mailauth import MailAuthFiles

pytestmark = pytest.mark.usefixtures("cheap_hashes")
NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to hand files to another account (CI runs as root)"
)


def mailauth(files: MailAuthFiles, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="posthouse")
    parser.add_argument("--config")
    mailauth_cli.add_parser(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    code = mailauth_cli.run_mailauth(
        files,
        parser.parse_args(["mailauth", *argv]),
        stdin=io.StringIO(stdin),
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory other accounts can reach (``tmp_path`` is below a 0700 directory)."""
    directory = Path(tempfile.mkdtemp(prefix="posthouse-mailauth-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def files_in(base: Path, daemon: str) -> MailAuthFiles:
    etc = base / "etc"
    return MailAuthFiles(
        etc / "mailauth.db", etc / "mailauth.key", base / "u.db", False, 1000, daemon
    )


def test_without_a_daemon_account_files_stay_with_their_creator(tmp_path: Path) -> None:
    files = files_in(tmp_path, "")
    assert mailauth(files, "-init")[0] == 0
    for path in (files.database, files.key):
        st = path.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o600)


@needs_root
def test_init_as_root_gives_the_daemon_read_access(base: Path) -> None:
    files = files_in(base, "nobody")
    code, out, _err = mailauth(files, "-init")
    assert code == 0 and "now belong to nobody" in out
    code, _out, err = mailauth(files, "-convert", stdin="alice:secret\n")
    assert code == 0, err
    for path in (files.database, files.key, files.database.parent):
        assert path.stat().st_uid == NOBODY, path
    for path in (files.database, files.key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The daemon's account opens the database and decrypts a secret (a forked child that
    # becomes nobody: the interpreter itself may not be readable by nobody).
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 2
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with MailAuthDatabase(files.database, files.key) as db:
                code = 0 if db.apop_secret("alice") == "secret" else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@needs_root
def test_existing_directory_is_not_handed_over(base: Path) -> None:
    (base / "etc").mkdir()
    files = files_in(base, "nobody")
    assert mailauth(files, "-init")[0] == 0
    assert (base / "etc").stat().st_uid == 0
    assert files.key.stat().st_uid == NOBODY


@needs_root
def test_hard_link_planted_as_the_key_is_not_chowned(base: Path) -> None:
    files = files_in(base, "nobody")
    assert mailauth(files, "-init")[0] == 0
    precious = base / "precious"
    precious.write_bytes(b"root's\n")
    files.key.unlink()
    os.link(precious, files.key)
    with pytest.raises(MailAuthError, match="one link"):
        MailAuthDatabase(files.database, files.key).hand_over(NOBODY, NOBODY)
    assert precious.stat().st_uid == 0


@needs_root
def test_symlink_planted_as_the_key_is_refused(base: Path) -> None:
    files = files_in(base, "nobody")
    assert mailauth(files, "-init")[0] == 0
    precious = base / "precious"
    precious.write_bytes(b"root's\n")
    files.key.unlink()
    files.key.symlink_to(precious)
    with pytest.raises(MailAuthError, match="cannot hand over"):
        MailAuthDatabase(files.database, files.key).hand_over(NOBODY, NOBODY)
    assert precious.stat().st_uid == 0


@needs_root
def test_unknown_daemon_account_is_a_configuration_error(base: Path) -> None:
    code, _out, err = mailauth(files_in(base, "no-such-account-here"), "-init")
    assert code == 78 and "server.run_as: no such account" in err


@needs_root
@pytest.mark.parametrize("tool", ["mailusradm", "popcv"])
def test_other_writing_tools_hand_the_files_over_too(base: Path, tool: str) -> None:
    from posthouse.auth.users import UserDatabase
    from posthouse.cli import mailusradm as mailusradm_cli
    from posthouse.cli import popcv as popcv_cli
    from posthouse.cli.main import build_parser

    assert mailauth(files_in(base, ""), "-init")[0] == 0  # made by root, kept by root
    files = files_in(base, "nobody")
    assert files.database.stat().st_uid == 0
    with UserDatabase(files.users_db) as users:
        users.add("alice", "alice-login")
    out, err = io.StringIO(), io.StringIO()
    if tool == "mailusradm":
        args = build_parser().parse_args(
            ["mailusradm", "set", "alice", "pop-mailpass", "--password-stdin"]
        )
        code = mailusradm_cli.run_mailusradm(
            files, args, stdin=io.StringIO("mail-secret\n"), stdout=out, stderr=err
        )
    else:
        pop_file = base / "pop"
        pop_file.write_text("alice:mail-secret\n")
        code = popcv_cli.run_popcv(files, str(pop_file), stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert "now belong to nobody" in out.getvalue()
    for path in (files.database, files.key):
        assert path.stat().st_uid == NOBODY, path
