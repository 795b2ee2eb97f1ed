"""The program and file delivery agents: run ``|command`` and append to ``/file`` *as* an identity.

:class:`ProgramDelivery` is their :class:`~posthouse.mta.agents.transaction.DeliveryAgent`
(recipients: :class:`ProgramCall` and :class:`FileCall`): each recipient is run, one after
the other in a worker thread, by a :class:`~posthouse.mta.agents.local_runner.LocalRunner`
(in this process, or in the root helper of a daemon that gave up root), which calls
:func:`run_program` and :func:`append_to_file` below.

This module owns how a program or file destination is delivered once expansion has
decided who it runs as (an :class:`~posthouse.mta.identity.Identity`, from
:mod:`posthouse.mta.trusted_files` for ``.forward``/``:include:`` files, or the aliases
file's default user, config ``[aliases] default_user``).  Both return ``None`` on success
or a protocol-neutral :class:`~posthouse.mta.errors.MailError`.

Who may be become (:func:`check_identity`, applied to both agents):

* an identity with ``shell_checked`` must have its login shell in ``/etc/shells``,
  otherwise ``5.7.1 ... user has no valid shell`` (sendmail's rule, for programs *and*
  files named in a ``.forward`` or ``:include:`` file);
* when this process runs as root, the child switches to the identity before exec:
  ``setgroups`` (the identity's supplementary groups, never root's), ``setregid``,
  ``setreuid`` (subprocess's ``extra_groups``/``group``/``user``);
* when it does not run as root it cannot change identity, so it runs a destination only
  if the identity's uid is its own (the unprivileged single-user install, where every
  file was written by the account running posthouse); any other identity is refused with
  the temporary ``4.3.5`` (a configuration to fix, not a reason to bounce).  The caller
  decides which identity an aliases-file destination gets when not root (see
  :func:`aliases_identity`).

Programs (:func:`run_program`): ``/bin/sh -c COMMAND`` (sendmail's ``prog`` mailer) in a
new session, environment exactly ``HOME USER LOGNAME SHELL PATH=/usr/bin:/bin SENDER``
plus the caller's extras (which cannot replace those six), working directory the
identity's home (``/`` when that is not a directory), umask 022, standard input the
message (copied to an unlinked temporary file, so the program cannot seek into the queue
file), standard output discarded, the last line of standard error kept for the error
text.  Exit 0 is success, 75 (``EX_TEMPFAIL``) a temporary failure, any other status a
permanent one; death by a signal and the timeout (the whole process group is killed) are
temporary.

Files (:func:`append_to_file`): the message is formatted by the parent as an mboxrd entry
(``From_`` line, quoted content, blank line; :mod:`posthouse.store.mbox.mboxrd`) into an
unlinked temporary file, and appended by a forked child (no exec: the interpreter may not
be readable by the identity, e.g. one under ``/root``; the child makes only system calls
before ``os._exit``) that first becomes the identity: :func:`append_entry` opens with
``O_WRONLY|O_APPEND|O_CREAT|O_NOFOLLOW|O_NONBLOCK`` (new files 0600), refuses anything
but a regular file with one link and no execute bit (sendmail's defaults: no
``FileDeliveryToSymlink``/``FileDeliveryToHardLink``), takes ``lockf`` on the whole file
(no dot-lock: sendmail's file mailer does not take one either), writes, calls ``fsync`` and
truncates back after a failed write.  ``/dev/null`` is accepted without writing anything.
The file is thus written with exactly the identity's permissions: a file it cannot write
fails with ``5.3.0 ... Permission denied``; a refusal of the file itself is ``5.3.0``, a
full disk or a timeout ``4.3.0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import select
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from posthouse.mta.agents.transaction import (
    MessageBody,
    MessageEnvelope,
    RecipientResult,
    TransactionBase,
)
from posthouse.mta.errors import MailError
from posthouse.mta.identity import SHELLS_FILE, Identity, valid_shell
from posthouse.mta.pseudodomains import NativeAddress
from posthouse.store.mbox.mboxrd import MboxrdEncoder, mbox_from_line

if TYPE_CHECKING:
    from posthouse.mta.agents.local_runner import LocalRunner

__all__ = [
    "DEFAULT_TIMEOUT",
    "PATH",
    "FileCall",
    "ProgramCall",
    "ProgramDelivery",
    "aliases_identity",
    "append_entry",
    "append_to_file",
    "check_identity",
    "program_environment",
    "run_program",
]

DEFAULT_TIMEOUT = 300.0
PATH = "/usr/bin:/bin"
EX_TEMPFAIL = 75
EX_CANTCREAT = 73
_CHUNK = 64 * 1024
_FIXED_ENV = ("HOME", "USER", "LOGNAME", "SHELL", "PATH", "SENDER")

Message = bytes | BinaryIO


@dataclass(frozen=True)
class ProgramCall:
    """Run ``command`` as ``run_as`` (a token of :mod:`posthouse.mta.user_files`); ``native``:
    the mapped address when it is a gateway's transport program (12.2.3.2)."""

    command: str
    run_as: str
    native: NativeAddress | None = None


@dataclass(frozen=True)
class FileCall:
    """Append to the file ``path`` as ``run_as``."""

    path: str
    run_as: str


class ProgramDelivery:
    """The program and file agent (module docstring); ``runner`` None: this process runs
    neither (a temporary failure).  ``native_sender``: the sender as a gateway's transport
    program gets it in ``NATIVE_SENDER``."""

    def __init__(
        self,
        runner: LocalRunner | None,
        *,
        native_sender: Callable[[str], str] = lambda sender: sender,
    ) -> None:
        self.runner = runner
        self.native_sender = native_sender

    def start(self, envelope: MessageEnvelope) -> ProgramTransaction:
        return ProgramTransaction(envelope, agent=self)


class ProgramTransaction(TransactionBase[ProgramCall | FileCall]):
    """One message for programs and files, each run in turn."""

    def __init__(self, envelope: MessageEnvelope, *, agent: ProgramDelivery) -> None:
        super().__init__(envelope)
        self._agent = agent

    async def commit(self) -> list[RecipientResult[ProgramCall | FileCall]]:
        body = self._begin_commit()
        results = []
        for recipient in self.recipients:
            error = await asyncio.to_thread(self._run, recipient, body)
            results.append(RecipientResult(recipient, error))
        return results

    def _run(self, recipient: ProgramCall | FileCall, body: MessageBody) -> MailError | None:
        runner = self._agent.runner
        envelope = self.envelope
        if runner is None:
            what = (
                "programs are not delivered"
                if isinstance(recipient, ProgramCall)
                else ("files are not written")
            )
            return MailError("4.3.5", f"{what} by this process")
        name = repr(recipient.command) if isinstance(recipient, ProgramCall) else recipient.path
        try:
            with body.open() as stream:  # a real file: the root helper is passed its descriptor
                if isinstance(recipient, FileCall):
                    return runner.append_file(
                        recipient.path,
                        recipient.run_as,
                        envelope.return_path,
                        stream,
                        sender=envelope.sender,
                        received=envelope.received,
                    )
                return runner.run_program(
                    recipient.command,
                    recipient.run_as,
                    stream,
                    sender=envelope.sender,
                    env=self._environment(recipient.native),
                )
        except OSError as exc:
            return MailError("4.3.0", f"cannot read the message for {name}: {exc}")

    def _environment(self, native: NativeAddress | None) -> dict[str, str]:
        env = {"QUEUE_ID": self.envelope.queue_id}
        if native is not None:
            # A gateway transport (12.2.3.2, routing "direct") gets the mapped address.
            env.update(
                NATIVE=native.native,
                NODE=native.next_hop,
                NATIVE_USER=native.user,
                PROTOCOL=native.protocol,
                NATIVE_SENDER=self._agent.native_sender(self.envelope.sender),
            )
        return env


def aliases_identity(
    default_user: str, *, may_run_as_self: bool, daemon_user: str = ""
) -> Identity | MailError:
    """Who programs and files from the aliases file (and root-owned include files) run as.

    As root: ``default_user`` (config ``[aliases] default_user``, sendmail's
    ``DefaultUser``; its shell is not checked), refused when it is root or the daemon's
    own account ``daemon_user`` (config ``[server] run_as``).  Not as root: this process
    itself, but only when ``may_run_as_self`` -- the caller passes True when posthouse was
    never root (an unprivileged install, whose aliases file its own account wrote) and
    False for a daemon that dropped root for ``server.run_as``, whose account holds the
    keys and must never run such destinations.
    """
    if os.geteuid() == 0:
        identity = Identity.for_user(default_user, shell_checked=False)
        if identity is None:
            return MailError("4.3.5", f"aliases.default_user {default_user!r}: no such account")
        if identity.uid == 0:
            return MailError("4.3.5", "aliases.default_user must not be root")
        daemon = Identity.for_user(daemon_user) if daemon_user else None
        if daemon is not None and daemon.uid == identity.uid:
            return MailError(
                "4.3.5", "aliases.default_user must not be the daemon's account (server.run_as)"
            )
        return identity
    if may_run_as_self:
        return Identity.current()
    return MailError(
        "4.3.5",
        f"cannot run as {default_user}: posthouse dropped root privileges before delivery",
    )


def check_identity(identity: Identity, *, shells_file: Path = SHELLS_FILE) -> MailError | None:
    """Whether this process may run a destination as ``identity`` (module docstring)."""
    if identity.shell_checked and not valid_shell(identity.shell, shells_file):
        return MailError(
            "5.7.1", f"{identity.describe()}: user has no valid shell ({identity.shell or '-'})"
        )
    euid = os.geteuid()
    if euid != 0 and identity.uid != euid:
        return MailError(
            "4.3.5",
            f"cannot act as {identity.describe()}: posthouse is not running as root (uid {euid})",
        )
    return None


def program_environment(
    identity: Identity, sender: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of a program destination (module docstring)."""
    env = {
        name: value
        for name, value in (extra or {}).items()
        if name not in _FIXED_ENV and name and "=" not in name and "\0" not in name + value
    }
    env.update(
        HOME=identity.home,
        USER=identity.user,
        LOGNAME=identity.user,
        SHELL=identity.shell or "/bin/sh",
        PATH=PATH,
        SENDER=sender,
    )
    return env


def run_program(
    command: str,
    identity: Identity,
    message: Message,
    *,
    sender: str,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    shells_file: Path = SHELLS_FILE,
) -> MailError | None:
    """Run ``/bin/sh -c command`` as ``identity`` with ``message`` on its standard input."""
    refused = check_identity(identity, shells_file=shells_file)
    if refused is not None:
        return refused
    home = identity.home if identity.home and os.path.isdir(identity.home) else "/"
    try:
        with tempfile.TemporaryFile() as stdin:
            _copy(message, stdin)
            status, detail = _spawn(
                ["/bin/sh", "-c", command],
                identity,
                stdin=stdin,
                env=program_environment(identity, sender, extra_env),
                cwd=home,
                umask=0o022,
                timeout=timeout,
            )
    except OSError as exc:
        return MailError("4.3.0", f"cannot run {command!r}: {exc.strerror or exc}")
    if status == 0:
        return None
    if status is None:
        return MailError("4.3.0", f"program {command!r} timed out after {timeout:g} s")
    if status < 0:
        return MailError("4.3.0", f"program {command!r} died with signal {-status}")
    reason = detail or f"exit status {status}"
    return MailError(
        "4.3.0" if status == EX_TEMPFAIL else "5.3.0", f"program {command!r} failed: {reason}"
    )


def append_to_file(
    path: Path,
    identity: Identity,
    message: Message,
    *,
    sender: str,
    received: datetime,
    timeout: float = DEFAULT_TIMEOUT,
    shells_file: Path = SHELLS_FILE,
) -> MailError | None:
    """Append ``message`` as one mboxrd entry to ``path``, written as ``identity``."""
    if not path.is_absolute():
        return MailError("5.3.0", f"file destination {path} is not an absolute path")
    refused = check_identity(identity, shells_file=shells_file)
    if refused is not None:
        return refused
    if str(path) == os.devnull:
        return None
    try:
        with tempfile.TemporaryFile() as entry:
            entry.write(mbox_from_line(sender, received))
            encoder = MboxrdEncoder()
            for chunk in _chunks(message):
                entry.write(encoder.feed(chunk))
            entry.write(encoder.finish())
            entry.flush()
            status, detail = _write_as(identity, path, entry.fileno(), timeout)
    except OSError as exc:
        return MailError("4.3.0", f"cannot write {path}: {exc.strerror or exc}")
    if status == 0:
        return None
    if status is None:
        return MailError("4.3.0", f"writing {path} timed out after {timeout:g} s")
    reason = detail or f"file writer exit status {status}"
    return MailError("5.3.0" if status == EX_CANTCREAT else "4.3.0", f"{path}: {reason}")


def _chunks(message: Message) -> Iterator[bytes]:
    if isinstance(message, bytes | bytearray | memoryview):
        yield bytes(message)
        return
    while chunk := message.read(_CHUNK):
        yield chunk


def _copy(message: Message, out: IO[bytes]) -> None:
    for chunk in _chunks(message):
        out.write(chunk)
    out.flush()
    out.seek(0)


def _spawn(
    argv: list[str],
    identity: Identity,
    *,
    stdin: IO[bytes],
    env: dict[str, str],
    cwd: str,
    umask: int,
    timeout: float,
) -> tuple[int | None, str]:
    """Run ``argv`` as ``identity``; (exit status or -signal, or None on timeout; stderr)."""
    switch: dict[str, Any] = {}
    if _switch_needed(identity):
        switch = {
            "user": identity.uid,
            "group": identity.gid,
            "extra_groups": list(identity.supplementary_groups()),
        }
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=cwd,
            umask=umask,
            start_new_session=True,
            close_fds=True,
            **switch,
        )
        try:
            status: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = None
        if status is None:
            # Not reaped yet, so the group id is still ours: the session's other processes
            # (a pipeline, a background job) go too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        stderr.seek(max(0, os.fstat(stderr.fileno()).st_size - 2048))
        lines = stderr.read().decode("utf-8", "replace").strip().splitlines()
    return status, lines[-1].strip() if lines else ""


def _switch_needed(identity: Identity) -> bool:
    return os.geteuid() == 0 and (identity.uid, identity.gid) != (os.geteuid(), os.getegid())


def _write_as(
    identity: Identity, path: Path, entry_fd: int, timeout: float
) -> tuple[int | None, str]:
    """Fork; the child becomes ``identity`` and appends the file ``entry_fd`` to ``path``.

    A fork without exec: the interpreter may not be readable by the identity (one under
    ``/root``), and the child only makes system calls (no locks of other threads, no
    logging) before ``os._exit``.  Returns (exit status or -signal, or None on timeout;
    the child's reason)."""
    groups = list(identity.supplementary_groups()) if _switch_needed(identity) else None
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork in threaded processes
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (its effects are what the tests check)
        code = 70  # EX_SOFTWARE
        try:
            os.close(read_end)
            if groups is not None:
                os.setgroups(groups)
                os.setgid(identity.gid)
                os.setuid(identity.uid)
            os.umask(0o077)
            code, reason = append_entry(path, entry_fd)
            os.write(write_end, reason.encode("utf-8", "replace")[:1024])
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        reason, finished = _read_until_eof(read_end, time.monotonic() + timeout)
    finally:
        os.close(read_end)
    if not finished:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, wait_status = os.waitpid(pid, 0)
    if not finished:
        return None, ""
    return os.waitstatus_to_exitcode(wait_status), reason


def _read_until_eof(fd: int, deadline: float) -> tuple[str, bool]:
    data = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "", False
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return "", False
        chunk = os.read(fd, 4096)
        if not chunk:
            return data.decode("utf-8", "replace").strip(), True
        data += chunk[: max(0, 4096 - len(data))]


def append_entry(path: Path, entry_fd: int) -> tuple[int, str]:
    """Append the whole of ``entry_fd`` (read with ``pread`` from offset 0) to ``path`` with
    this process's rights; (sysexits code, reason).  What the file agent's child runs."""
    flags = os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, os.O_RDWR | flags, 0o600)
            readable = True
        except PermissionError:
            fd = os.open(path, os.O_WRONLY | flags, 0o600)
            readable = False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return EX_CANTCREAT, "is a symbolic link"
        temporary = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN)
        return (EX_TEMPFAIL if temporary else EX_CANTCREAT), f"cannot open: {exc.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return EX_CANTCREAT, "not a regular file"
        if st.st_nlink != 1:
            return EX_CANTCREAT, f"has {st.st_nlink} hard links"
        if st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
            return EX_CANTCREAT, "is executable"
        fcntl.lockf(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        try:
            tail = os.pread(fd, 2, max(0, size - 2)) if readable and size else b"\n\n"
            if size == 0 or tail.endswith(b"\n\n") or tail == b"\n":
                lead = b""
            else:
                lead = b"\n" if tail.endswith(b"\n") else b"\n\n"
            _write_all(fd, lead)
            offset = 0
            while chunk := os.pread(entry_fd, _CHUNK, offset):
                _write_all(fd, chunk)
                offset += len(chunk)
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            return EX_TEMPFAIL, f"cannot write: {exc.strerror}"
        return 0, ""
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
