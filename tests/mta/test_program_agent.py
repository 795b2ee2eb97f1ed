"""The program and file agents: run and write as an identity (issue 8, item 2).

Tests marked ``needs_root`` really switch to ``nobody`` (uid 65534) and check what the
child saw (its uid, groups, environment, working directory); CI runs as root.  The
others run as the current account.
"""

from __future__ import annotations

import fcntl
import io
import os
import pwd
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posthouse.mta.agents import program
from posthouse.mta.agents.program import (
    aliases_identity,
    append_to_file,
    check_identity,
    program_environment,
    run_program,
)
from posthouse.mta.errors import MailError
from posthouse.mta.identity import Identity, valid_shell

NOBODY = 65534
WHEN = datetime(2026, 11, 26, 0, 1, 29, tzinfo=UTC)
MESSAGE = b"Subject: hi\r\n\r\nFrom the start\r\nbody\r\n"
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to switch to another uid (CI runs as root)"
)


@pytest.fixture
def shells(tmp_path: Path) -> Path:
    path = tmp_path / "shells"
    path.write_text("# valid login shells\n/bin/sh\n/bin/bash\n")
    return path


@pytest.fixture
def me(tmp_path: Path) -> Identity:
    home = tmp_path / "me"
    home.mkdir()
    current = Identity.current()
    return Identity(current.uid, current.gid, current.user, str(home), "/bin/sh")


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory ``nobody`` owns and can reach (``tmp_path`` is below a 0700 directory)."""
    base = Path(tempfile.mkdtemp(prefix="posthouse-runas-"))
    try:
        base.chmod(0o755)
        directory = base / "nobody"
        directory.mkdir()
        os.chown(directory, NOBODY, NOBODY)
        yield directory
    finally:
        shutil.rmtree(base)


def nobody(home: Path, *, shell: str = "/bin/sh", checked: bool = True) -> Identity:
    return Identity(NOBODY, NOBODY, "nobody", str(home), shell, shell_checked=checked)


# --- identities and shells -------------------------------------------------------------------


def test_valid_shell(shells: Path, tmp_path: Path) -> None:
    assert valid_shell("/bin/bash", shells)
    assert valid_shell("", shells)  # empty means /bin/sh
    assert not valid_shell("/usr/sbin/nologin", shells)
    assert not valid_shell("# valid login shells", shells)
    assert valid_shell("/bin/sh", tmp_path / "missing")  # built-in list


def test_user_without_a_valid_shell_runs_nothing(shells: Path, tmp_path: Path) -> None:
    identity = Identity(os.geteuid(), os.getegid(), "x", str(tmp_path), "/usr/sbin/nologin")
    marker = tmp_path / "ran"
    error = run_program(f"touch {marker}", identity, b"", sender="a@b", shells_file=shells)
    assert isinstance(error, MailError) and error.status == "5.7.1"
    assert "user has no valid shell" in error.message
    assert not marker.exists()
    error = append_to_file(
        tmp_path / "f", identity, b"x", sender="a@b", received=WHEN, shells_file=shells
    )
    assert error is not None and "user has no valid shell" in error.message
    assert not (tmp_path / "f").exists()


def test_not_root_refuses_other_identities(
    monkeypatch: pytest.MonkeyPatch, shells: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    other = Identity(1001, 1001, "bob", str(tmp_path), "/bin/sh")
    error = check_identity(other, shells_file=shells)
    assert error is not None and error.status == "4.3.5" and error.temporary
    assert "not running as root" in error.message
    assert check_identity(Identity(1000, 5, "me", "/", "/bin/sh"), shells_file=shells) is None


def test_aliases_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    found = aliases_identity("nobody", may_run_as_self=False)
    assert isinstance(found, Identity) and found.uid == NOBODY and not found.shell_checked
    for name, daemon, words in [
        ("root", "", "must not be root"),
        ("no-such-account-here", "", "no such account"),
        ("nobody", "nobody", "daemon's account"),
    ]:
        error = aliases_identity(name, may_run_as_self=False, daemon_user=daemon)
        assert isinstance(error, MailError) and words in error.message, name
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    error = aliases_identity("nobody", may_run_as_self=False, daemon_user="mail")
    assert isinstance(error, MailError) and error.status == "4.3.5"
    found = aliases_identity("nobody", may_run_as_self=True)
    assert isinstance(found, Identity) and found.uid == 1000


def test_environment_is_restricted_and_fixed_names_win() -> None:
    identity = Identity(5, 6, "alice", "/home/alice", "/bin/bash")
    env = program_environment(
        identity, "a@b.example", {"HOME": "/tmp", "PATH": "/evil", "QUEUE_ID": "Q1", "A=B": "x"}
    )
    assert env == {
        "HOME": "/home/alice",
        "USER": "alice",
        "LOGNAME": "alice",
        "SHELL": "/bin/bash",
        "PATH": "/usr/bin:/bin",
        "SENDER": "a@b.example",
        "QUEUE_ID": "Q1",
    }


# --- programs as the current account -----------------------------------------------------------


def test_program_gets_the_message_environment_and_home(
    me: Identity, shells: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTHOUSE_SECRET", "do-not-leak")
    out = tmp_path / "out"
    command = f"cat > {out}.msg; env | sort > {out}.env; pwd > {out}.cwd"
    stream = io.BytesIO(b"skipped" + MESSAGE)
    stream.seek(len(b"skipped"))
    error = run_program(
        command, me, stream, sender="a@b", extra_env={"QUEUE_ID": "Q1"}, shells_file=shells
    )
    assert error is None
    assert Path(f"{out}.msg").read_bytes() == MESSAGE
    env = dict(line.split("=", 1) for line in Path(f"{out}.env").read_text().splitlines())
    assert "POSTHOUSE_SECRET" not in env
    assert env["SENDER"] == "a@b" and env["QUEUE_ID"] == "Q1" and env["HOME"] == me.home
    assert env["PATH"] == "/usr/bin:/bin"
    assert Path(f"{out}.cwd").read_text().strip() == os.path.realpath(me.home)


def test_program_without_a_home_runs_in_root(shells: Path, tmp_path: Path) -> None:
    identity = Identity(os.geteuid(), os.getegid(), "x", str(tmp_path / "gone"), "/bin/sh")
    error = run_program(f"pwd > {tmp_path / 'cwd'}", identity, b"", sender="", shells_file=shells)
    assert error is None and (tmp_path / "cwd").read_text() == "/\n"


@pytest.mark.parametrize(
    ("command", "status", "words"),
    [
        ("echo first >&2; echo 'no such user' >&2; exit 67", "5.3.0", "no such user"),
        ("exit 75", "4.3.0", "exit status 75"),
        ("kill -TERM $$", "4.3.0", "died with signal 15"),
    ],
)
def test_program_exit_status(
    me: Identity, shells: Path, command: str, status: str, words: str
) -> None:
    error = run_program(command, me, b"", sender="", shells_file=shells)
    assert error is not None and error.status == status
    assert words in error.message


def test_program_timeout_kills_its_process_group(me: Identity, shells: Path) -> None:
    started = time.monotonic()
    error = run_program("sleep 60 & sleep 60", me, b"", sender="", timeout=0.3, shells_file=shells)
    assert error is not None and error.status == "4.3.0" and "timed out" in error.message
    assert time.monotonic() - started < 30


# --- files as the current account ----------------------------------------------------------------


def test_file_is_appended_as_mbox_entries(me: Identity, shells: Path, tmp_path: Path) -> None:
    target = tmp_path / "archive"
    assert (
        append_to_file(target, me, MESSAGE, sender="a@b", received=WHEN, shells_file=shells) is None
    )
    target.write_bytes(target.read_bytes() + b"no newline")  # a damaged tail gets separated
    assert (
        append_to_file(
            target, me, io.BytesIO(b"x\n"), sender="c@d", received=WHEN, shells_file=shells
        )
        is None
    )
    assert target.read_bytes() == (
        b"From a@b Thu Nov 26 00:01:29 2026\nSubject: hi\n\n>From the start\nbody\n\n"
        b"no newline\n\nFrom c@d Thu Nov 26 00:01:29 2026\nx\n\n"
    )
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "executable", "directory"])
def test_unsafe_file_destinations_are_refused(
    me: Identity, shells: Path, tmp_path: Path, kind: str
) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"")
    target = tmp_path / "target"
    words = {
        "symlink": "symbolic link",
        "hardlink": "hard links",
        "executable": "executable",
        "directory": "",
    }[kind]
    if kind == "symlink":
        target.symlink_to(real)
    elif kind == "hardlink":
        os.link(real, target)
    elif kind == "executable":
        target.write_bytes(b"")
        target.chmod(0o755)
    else:
        target.mkdir()
    error = append_to_file(target, me, b"x", sender="", received=WHEN, shells_file=shells)
    assert error is not None and error.status == "5.3.0", error
    assert words in error.message
    assert real.read_bytes() == b""


def test_dev_null_and_relative_paths(me: Identity, shells: Path) -> None:
    assert append_to_file(Path("/dev/null"), me, b"x", sender="", received=WHEN) is None
    error = append_to_file(Path("rel"), me, b"x", sender="", received=WHEN, shells_file=shells)
    assert error is not None and "absolute" in error.message


# --- as another account (root) -------------------------------------------------------------------


@needs_root
def test_forward_program_runs_as_its_owner(nobody_dir: Path, shells: Path) -> None:
    out = nobody_dir / "id"
    command = f"id -u > {out}; id -g >> {out}; id -G >> {out}; cat >> {out}"
    error = run_program(
        command, nobody(nobody_dir), b"the message\n", sender="", shells_file=shells
    )
    assert error is None
    uid, gid, groups, body = out.read_text().splitlines()
    assert (uid, gid, body) == ("65534", "65534", "the message")
    assert "0" not in groups.split(), "kept root's supplementary groups"
    assert out.stat().st_uid == NOBODY


@needs_root
def test_aliases_program_runs_as_the_default_user(nobody_dir: Path) -> None:
    identity = aliases_identity("nobody", may_run_as_self=False, daemon_user="mail")
    assert isinstance(identity, Identity)
    assert pwd.getpwnam("nobody").pw_shell  # nologin: not checked for the default user
    out = nobody_dir / "uid"
    assert run_program(f"id -u > {out}", identity, b"", sender="") is None
    assert out.read_text() == f"{NOBODY}\n"


@needs_root
def test_file_is_written_with_the_owners_permissions_only(nobody_dir: Path, shells: Path) -> None:
    created = nobody_dir / "new"
    error = append_to_file(
        created, nobody(nobody_dir), b"x\n", sender="", received=WHEN, shells_file=shells
    )
    assert error is None
    assert (created.stat().st_uid, stat.S_IMODE(created.stat().st_mode)) == (NOBODY, 0o600)
    roots = nobody_dir.parent / "roots"
    roots.write_bytes(b"")
    roots.chmod(0o644)
    error = append_to_file(
        roots, nobody(nobody_dir), b"x\n", sender="", received=WHEN, shells_file=shells
    )
    assert error is not None and error.status == "5.3.0"
    assert "Permission denied" in error.message
    assert roots.read_bytes() == b""


@needs_root
def test_program_refuses_on_bad_shell_even_as_root(nobody_dir: Path, shells: Path) -> None:
    identity = nobody(nobody_dir, shell="/usr/sbin/nologin")
    error = run_program(f"touch {nobody_dir / 'x'}", identity, b"", sender="", shells_file=shells)
    assert error is not None and "user has no valid shell" in error.message
    assert not (nobody_dir / "x").exists()


def test_module_exports() -> None:
    assert set(program.__all__) >= {"run_program", "append_to_file", "aliases_identity"}


def test_file_locked_by_another_writer_times_out(
    me: Identity, shells: Path, tmp_path: Path
) -> None:
    target = tmp_path / "locked"
    target.write_bytes(b"")
    with open(target, "r+b") as held:
        fcntl.lockf(held.fileno(), fcntl.LOCK_EX)
        error = append_to_file(
            target, me, b"x", sender="", received=WHEN, timeout=0.3, shells_file=shells
        )
    assert error is not None and error.status == "4.3.0" and "timed out" in error.message
    assert target.read_bytes() == b""
