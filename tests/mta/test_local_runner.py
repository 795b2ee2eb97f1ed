"""The root helper that runs program and file destinations for a daemon that gave up root.

The helper is forked from the test process (root in CI) exactly as ``posthouse serve`` forks
it; the test then talks to it through :class:`HelperClient` and checks, by the uid each
program prints and each file's owner, who the destination ran as.
"""

from __future__ import annotations

import io
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posthouse.mta.agents.local_runner import DirectRunner, HelperClient, start_helper
from posthouse.mta.user_files import IdentityResolver

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the helper switches accounts: root")

NOBODY = pwd.getpwnam("nobody").pw_uid
WHEN = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


@pytest.fixture
def out() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="posthouse-runner-", dir="/srv"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def helper() -> Iterator[HelperClient]:
    resolver = IdentityResolver(default_user="nobody", daemon_user="mail")
    client = start_helper(DirectRunner(resolver, timeout=30))
    yield client
    client.close()
    _, status = os.waitpid(client.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # it ends when the daemon's end closes


def message(text: bytes) -> io.BufferedReader:
    """The message as a real file, positioned after a header the helper must not see."""
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes the reader
    handle.write(b"CONTROL LINE\n" + text)
    handle.seek(len(b"CONTROL LINE\n"))
    return io.BufferedReader(handle)  # type: ignore[arg-type]


def test_program_runs_as_the_default_user_with_the_message_on_stdin(
    helper: HelperClient, out: Path
) -> None:
    with message(b"Subject: hi\r\n\r\nbody\r\n") as data:
        error = helper.run_program(
            f"(/usr/bin/id -u; /bin/cat) > {out}/prog",
            "",
            data,
            sender="a@remote.test",
            env={"QUEUE_ID": "q1"},
        )
    assert error is None
    uid, rest = (out / "prog").read_bytes().split(b"\n", 1)
    assert int(uid) == NOBODY
    assert rest.replace(b"\r\n", b"\n") == b"Subject: hi\n\nbody\n"


def test_program_failure_comes_back_with_its_sysexits_meaning(helper: HelperClient) -> None:
    with message(b"x\r\n") as data:
        temporary = helper.run_program("exit 75", "", data, sender="", env={})
    with message(b"x\r\n") as data:
        permanent = helper.run_program("echo no >&2; exit 1", "", data, sender="", env={})
    assert temporary is not None and temporary.temporary
    assert permanent is not None and not permanent.temporary and "no" in permanent.message


def test_file_is_written_as_the_default_user(helper: HelperClient, out: Path) -> None:
    with message(b"Subject: kept\r\n\r\nbody\r\n") as data:
        error = helper.append_file(
            str(out / "copy"),
            "",
            b"Return-Path: <a@remote.test>\r\n",
            data,
            sender="a@remote.test",
            received=WHEN,
        )
    assert error is None
    written = (out / "copy").read_bytes()
    assert written.startswith(b"From a@remote.test ")
    assert b"\nReturn-Path: <a@remote.test>\nSubject: kept\n\nbody\n" in written
    assert (out / "copy").stat().st_uid == NOBODY


@pytest.mark.parametrize("run_as", ["root", "#0:0"])
def test_root_is_never_an_identity(helper: HelperClient, out: Path, run_as: str) -> None:
    with message(b"x\r\n") as data:
        error = helper.run_program(f"touch {out}/ran", run_as, data, sender="", env={})
    assert error is not None and "root" in error.message
    assert not (out / "ran").exists()


def test_the_daemons_own_account_is_refused_as_default_user(out: Path) -> None:
    runner = DirectRunner(IdentityResolver(default_user="mail", daemon_user="mail"))
    error = runner.run_program(f"touch {out}/ran", "", io.BytesIO(b"x"), sender="", env={})  # type: ignore[arg-type]
    assert error is not None and "run_as" in error.message
    assert not (out / "ran").exists()


def test_concurrent_requests_are_answered_each_with_its_own_result(
    helper: HelperClient, out: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def run(index: int) -> object:
        with message(b"x\r\n") as data:
            return helper.run_program(
                f"echo {index} > {out}/r{index}; exit {0 if index % 2 else 1}",
                "",
                data,
                sender="",
                env={},
            )

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(16)))
    assert [r is None for r in results] == [bool(i % 2) for i in range(16)]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"r{i}" for i in range(16))
