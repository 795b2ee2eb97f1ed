"""Talking to the running daemon: start, stop, restart, status and reload as an init script
does (the chapter's ``/sbin/init.d/sendmail start|stop|restart``, 12.8), a user's own mail
password and the queue listing for ordinary users.

Everything goes through the daemon's control socket (``DATA_DIR/run/control.sock``, see
:mod:`posthouse.server.control`), whose answers are authorised by the caller's uid; the pid
file (``DATA_DIR/posthouse.pid``) only tells a dead daemon from one that never ran.  Results
carry the exit codes of LSB init scripts: for ``status`` 0 running, 1 dead but the pid file
exists, 3 not running, 4 unknown; for the actions 0 done (also: start when running, stop when
stopped), 1 failed, 4 not permitted, 6 not configured, 7 not running.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from posthouse.admin.errors import NotPermitted, StorageFailure, Unavailable
from posthouse.config.load import DEFAULTS_SOURCE
from posthouse.config.schema import Settings
from posthouse.server.control import ControlError, request
from posthouse.server.records import read_records

__all__ = [
    "LSB_FAILED",
    "LSB_NOT_CONFIGURED",
    "LSB_NOT_PERMITTED",
    "LSB_NOT_RUNNING",
    "LSB_OK",
    "STATUS_DEAD_WITH_PID_FILE",
    "STATUS_NOT_RUNNING",
    "STATUS_UNKNOWN",
    "Result",
    "change_own_mail_password",
    "connection_listing",
    "daemon_status",
    "queue_listing",
    "reload_daemon",
    "restart_daemon",
    "start_daemon",
    "stop_daemon",
]

LSB_OK = 0
LSB_FAILED = 1
LSB_NOT_PERMITTED = 4
LSB_NOT_CONFIGURED = 6
LSB_NOT_RUNNING = 7
STATUS_DEAD_WITH_PID_FILE = 1
STATUS_NOT_RUNNING = 3
STATUS_UNKNOWN = 4

START_TIMEOUT = 60.0  # seconds for a started daemon to answer on its control socket
STOP_EXTRA = 30.0  # seconds beyond shutdown_grace_seconds that stop waits for the process
EX_CONFIG = 78  # what `posthouse serve` exits with for a bad configuration


@dataclass(frozen=True)
class Result:
    """An action's outcome: its LSB exit code, what to tell the user, the daemon's pid."""

    code: int
    message: str
    pid: int | None = None


def _pid_from_file(settings: Settings) -> int | None:
    try:
        return int(settings.paths.pid_file.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Whether *pid* is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def daemon_status(settings: Settings) -> Result:
    """Whether the daemon serving *settings*' data directory runs (LSB status codes)."""
    try:
        answer = request(settings.paths.control_socket, "status", timeout=10)
    except ControlError:
        pid = _pid_from_file(settings)
        if pid is None:
            return Result(STATUS_NOT_RUNNING, "posthouse is not running")
        if process_alive(pid):
            return Result(
                STATUS_UNKNOWN, f"process {pid} is alive but does not answer on its control socket"
            )
        return Result(
            STATUS_DEAD_WITH_PID_FILE,
            f"posthouse is not running, but {settings.paths.pid_file} names process {pid}",
        )
    fields = answer.fields
    pid = int(fields["pid"])
    return Result(
        LSB_OK,
        f"posthouse is running (pid {pid}, configuration {fields.get('config')}, "
        f"generation {fields.get('generation')}, {fields.get('sessions')} session(s))",
        pid,
    )


def connection_listing(settings: Settings) -> str:
    """The live connections of every worker process (chapter 12.5.5's proc directory): one
    line each with the process, protocol, client, user and selected mailbox.

    NotPermitted for an account other than root and the daemon's: the records are 0700."""
    try:
        connections = read_records(settings.paths.proc_dir)
    except PermissionError:
        raise NotPermitted(
            f"only root and the daemon's account may read {settings.paths.proc_dir}"
        ) from None
    lines = [f"{'PID':>7}  {'PROTOCOL':<10} {'CLIENT':<24} {'USER':<16} MAILBOX"]
    for c in connections:
        user, mailbox = c.user or "-", c.mailbox or "-"
        lines.append(f"{c.pid:>7}  {c.protocol:<10} {c.client:<24} {user:<16} {mailbox}")
    return "\n".join(lines)


def start_daemon(settings: Settings, *, timeout: float = START_TIMEOUT) -> Result:
    """Start ``posthouse serve`` in the background and wait until it answers.

    Its output (and its log, when ``server.log_file`` is empty) goes to
    ``DATA_DIR/posthouse.log``."""
    status = daemon_status(settings)
    if status.code == LSB_OK:
        return Result(LSB_OK, f"posthouse is already running (pid {status.pid})", status.pid)
    settings.paths.data_dir.mkdir(parents=True, exist_ok=True)
    output = settings.paths.data_dir / "posthouse.log"
    command = [sys.executable, "-m", "posthouse", "serve"]
    if settings.source != DEFAULTS_SOURCE:
        command += ["--config", os.path.abspath(settings.source)]
    pid = _spawn_detached(command, output)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended, wait_status = os.waitpid(pid, os.WNOHANG)
        if ended:
            code = os.waitstatus_to_exitcode(wait_status)
            tail = _tail(output)
            status_code = LSB_NOT_CONFIGURED if code == EX_CONFIG else LSB_FAILED
            return Result(status_code, f"posthouse did not start (exit status {code}):\n{tail}")
        status = daemon_status(settings)
        if status.code == LSB_OK and status.pid == pid:
            return Result(LSB_OK, f"posthouse started (pid {pid}); output in {output}", pid)
        time.sleep(0.1)
    return Result(LSB_FAILED, f"posthouse (pid {pid}) did not answer within {timeout:.0f}s")


def _spawn_detached(command: list[str], output: Path) -> int:
    """Run *command* in a session of its own, standard input from /dev/null and its output
    appended to *output*; returns its pid (it outlives this process)."""
    out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        return os.posix_spawn(
            command[0],
            command,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0),
                (os.POSIX_SPAWN_DUP2, out, 1),
                (os.POSIX_SPAWN_DUP2, out, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(out)
        os.close(null)


def _tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_daemon(settings: Settings, *, timeout: float | None = None) -> Result:
    """Ask the daemon to stop and wait until it has: it finishes the sessions in flight for up
    to ``server.shutdown_grace_seconds``, then cancels the rest."""
    if timeout is None:
        timeout = settings.config.server.shutdown_grace_seconds + STOP_EXTRA
    try:
        answer = request(settings.paths.control_socket, "stop", timeout=10)
    except ControlError:
        status = daemon_status(settings)
        if status.code == STATUS_UNKNOWN:
            return Result(LSB_FAILED, status.message)
        return Result(LSB_OK, "posthouse is not running")
    if not answer.ok:
        denied = bool(answer.fields.get("denied"))
        return Result(LSB_NOT_PERMITTED if denied else LSB_FAILED, answer.message)
    pid = int(answer.fields["pid"])
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            return Result(LSB_FAILED, f"posthouse (pid {pid}) still running after {timeout:.0f}s")
        time.sleep(0.1)
    return Result(LSB_OK, f"posthouse stopped (pid {pid}; {answer.message})", pid)


def restart_daemon(settings: Settings, *, timeout: float | None = None) -> Result:
    """Stop the daemon (waiting for it) and start it again with the configuration file.

    A configuration the new daemon would refuse (an NFS client's mailbox directory not
    mounted from its mailbox server) does not stop the running one."""
    # Imported here: mailq and the other light commands use this module without the server.
    from posthouse.app import mailbox_directory_problem

    problem = mailbox_directory_problem(settings)
    if problem is not None:
        return Result(
            LSB_NOT_CONFIGURED,
            f"not restarted, the new configuration cannot start: {problem}; "
            "the running daemon keeps the old configuration",
        )
    stopped = stop_daemon(settings, timeout=timeout)
    if stopped.code != LSB_OK:
        return stopped
    return start_daemon(settings)


def reload_daemon(settings: Settings) -> Result:
    """Have the daemon re-read its configuration; the message names what needs a restart."""
    try:
        answer = request(settings.paths.control_socket, "reload", timeout=60)
    except ControlError:
        return Result(LSB_NOT_RUNNING, "posthouse is not running")
    if answer.ok:
        return Result(LSB_OK, answer.message)
    denied = bool(answer.fields.get("denied"))
    return Result(LSB_NOT_PERMITTED if denied else LSB_FAILED, answer.message)


def change_own_mail_password(control_socket: Path, current: str, new: str) -> str:
    """Change the calling user's mail password through the daemon (which knows the caller
    by its uid); returns the daemon's message.  :class:`NotPermitted` for a wrong current
    password or a refused new one, :class:`Unavailable` when no daemon answers."""
    try:
        answer = request(control_socket, "mailauth", current=current, new=new)
    except ControlError as exc:
        raise Unavailable(f"the mail system is not running ({exc}); ask the administrator") from exc
    if not answer.ok:
        raise NotPermitted(answer.message)
    return answer.message


def queue_listing(settings: Settings, *, verbose: bool = False) -> Iterator[str]:
    """The queue listing as the daemon produces it (for users who cannot read the queue's
    control files).  :class:`Unavailable` when no daemon answers."""
    try:
        answer = request(settings.paths.control_socket, "mailq", stream=True, verbose=verbose)
    except ControlError as exc:
        raise Unavailable(str(exc)) from exc
    if not answer.ok:
        raise StorageFailure(answer.message)
    return answer.lines
