"""Running program and file destinations as their identities, also in a daemon that gave up root.

This module owns *where* the program and file agents (:mod:`posthouse.mta.agents.program`)
run.  Delivery hands a :class:`LocalRunner` a request: a command or a path, the ``run_as``
token expansion attached to it (:mod:`posthouse.mta.user_files`), and the message.

* :class:`DirectRunner` runs the agent in this process: for a process that is root
  (``sendmail -q`` run by root) or that runs as itself (an unprivileged install, where the
  only identity available is its own).
* A daemon started as root drops to ``server.run_as`` (the account that holds the keys)
  before it serves anyone, and must never run users' programs as that account.  Before it
  drops root it starts a **helper** (:func:`start_helper`): a forked child that stays root,
  reads nothing but requests from a socket pair only the daemon holds, and runs each
  request with :class:`DirectRunner` in a thread, so each program or file runs as its
  own identity (never root: :class:`~posthouse.mta.user_files.IdentityResolver` refuses
  uid 0).  :class:`HelperClient` is the daemon's side.  It is Postfix's split between
  the unprivileged queue manager and the ``local`` delivery agent that runs as root.

Protocol: the control socket is ``SOCK_SEQPACKET``; per request the client makes a stream
socket pair and passes one end over the control socket (``SCM_RIGHTS``).  On that pair it
sends one JSON request with the message's descriptor attached (the helper reads the data
from the descriptor's current offset, after ``prefix``), and reads one JSON reply:
``{"error": null}`` or ``{"error": [status, message]}``.  The helper exits when the
control socket closes (the daemon is gone).
"""

from __future__ import annotations

import array
import contextlib
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from posthouse.mta.agents import program
from posthouse.mta.errors import MailError
from posthouse.mta.identity import Identity

__all__ = ["DirectRunner", "HelperClient", "LocalRunner", "PrefixedReader", "start_helper"]

log = logging.getLogger("posthouse.mta.agents.local_runner")

_MAX_REQUEST = 1024 * 1024


class LocalRunner(Protocol):
    """Runs program and file destinations (see the module docstring)."""

    def run_program(
        self,
        command: str,
        run_as: str,
        data: BinaryIO,
        *,
        sender: str,
        env: Mapping[str, str],
    ) -> MailError | None: ...

    def append_file(
        self,
        path: str,
        run_as: str,
        prefix: bytes,
        data: BinaryIO,
        *,
        sender: str,
        received: datetime,
    ) -> MailError | None: ...


class PrefixedReader:
    """A binary reader that yields ``prefix`` and then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size < 0 or size >= len(self._prefix):
                head, self._prefix = self._prefix, b""
                rest = self._stream.read(size - len(head) if size >= 0 else -1)
                return head + rest
            head, self._prefix = self._prefix[:size], self._prefix[size:]
            return head
        return self._stream.read(size)


@dataclass
class DirectRunner:
    """Runs the agents in this process; ``identity_for`` resolves ``run_as`` tokens."""

    identity_for: Callable[[str], Identity | MailError]
    timeout: float = program.DEFAULT_TIMEOUT

    def _identity(self, run_as: str) -> Identity | MailError:
        identity = self.identity_for(run_as)
        if isinstance(identity, Identity) and identity.uid == 0:
            return MailError("5.3.0", "programs and files never run as root")
        return identity

    def run_program(
        self,
        command: str,
        run_as: str,
        data: BinaryIO,
        *,
        sender: str,
        env: Mapping[str, str],
    ) -> MailError | None:
        identity = self._identity(run_as)
        if isinstance(identity, MailError):
            return identity
        return program.run_program(
            command, identity, data, sender=sender, extra_env=env, timeout=self.timeout
        )

    def append_file(
        self,
        path: str,
        run_as: str,
        prefix: bytes,
        data: BinaryIO,
        *,
        sender: str,
        received: datetime,
    ) -> MailError | None:
        identity = self._identity(run_as)
        if isinstance(identity, MailError):
            return identity
        message: Any = PrefixedReader(prefix, data)
        return program.append_to_file(
            Path(path), identity, message, sender=sender, received=received, timeout=self.timeout
        )


@dataclass
class HelperClient:
    """The daemon's side of the root helper (module docstring)."""

    control: socket.socket
    pid: int
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run_program(
        self,
        command: str,
        run_as: str,
        data: BinaryIO,
        *,
        sender: str,
        env: Mapping[str, str],
    ) -> MailError | None:
        request = {"op": "program", "command": command, "run_as": run_as, "sender": sender}
        return self._call({**request, "env": dict(env)}, data)

    def append_file(
        self,
        path: str,
        run_as: str,
        prefix: bytes,
        data: BinaryIO,
        *,
        sender: str,
        received: datetime,
    ) -> MailError | None:
        request = {
            "op": "file",
            "path": path,
            "run_as": run_as,
            "sender": sender,
            "received": received.isoformat(),
            "prefix": prefix.decode("utf-8", "surrogateescape"),
        }
        return self._call(request, data)

    def _call(self, request: dict[str, Any], data: BinaryIO) -> MailError | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:  # one record per request; the socket is shared by threads
                _send_fds(self.control, b"C", [theirs.fileno()])
            theirs.close()
            payload = json.dumps(request, ensure_ascii=False).encode("utf-8", "surrogateescape")
            _send_fds(ours, payload, [data.fileno()])
            ours.shutdown(socket.SHUT_WR)
            reply = _read_all(ours)
        except OSError as exc:
            return MailError("4.3.0", f"local delivery helper unavailable: {exc.strerror or exc}")
        finally:
            theirs.close()
            ours.close()
        try:
            error = json.loads(reply)["error"]
        except (ValueError, KeyError, TypeError):
            return MailError("4.3.0", "local delivery helper gave no answer")
        return None if error is None else MailError(str(error[0]), str(error[1]))

    def close(self) -> None:
        self.control.close()


def start_helper(runner: DirectRunner) -> HelperClient:
    """Fork the root helper (module docstring); call before dropping root."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the helper process; the tests use it through the client
        code = 0
        try:
            parent_end.close()
            # A reload (SIGHUP) or ^C is the daemon's business; the helper ends with it.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _serve(child_end, runner)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    child_end.close()
    return HelperClient(parent_end, pid)


def _serve(control: socket.socket, runner: DirectRunner) -> None:
    while True:
        try:
            _, fds = _recv_fds(control, 16)
        except OSError:
            return
        if not fds:
            return  # the daemon closed its end
        for fd in fds[1:]:
            os.close(fd)
        conn = socket.socket(fileno=fds[0])
        threading.Thread(target=_handle, args=(conn, runner), daemon=True).start()


def _handle(conn: socket.socket, runner: DirectRunner) -> None:
    with conn:
        try:
            payload, fds = _recv_fds(conn, _MAX_REQUEST)
            error = _perform(runner, payload, fds)
        except Exception as exc:  # the helper stays up for the next request
            log.error("local delivery helper: %s", exc)
            error = MailError("4.3.0", f"local delivery helper failed: {exc}")
        reply = {"error": None if error is None else [error.status, error.message]}
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(reply).encode())


def _perform(runner: DirectRunner, payload: bytes, fds: list[int]) -> MailError | None:
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        return MailError("4.3.0", "local delivery helper: no message descriptor")
    with open(fds[0], "rb", closefd=True) as data:
        request = json.loads(payload.decode("utf-8", "surrogateescape"))
        match request.get("op"):
            case "program":
                env = {str(k): str(v) for k, v in dict(request.get("env", {})).items()}
                return runner.run_program(
                    str(request["command"]),
                    str(request["run_as"]),
                    data,
                    sender=str(request["sender"]),
                    env=env,
                )
            case "file":
                return runner.append_file(
                    str(request["path"]),
                    str(request["run_as"]),
                    str(request["prefix"]).encode("utf-8", "surrogateescape"),
                    data,
                    sender=str(request["sender"]),
                    received=datetime.fromisoformat(str(request["received"])),
                )
    return MailError("4.3.0", "local delivery helper: unknown request")


def _send_fds(sock: socket.socket, payload: bytes, fds: list[int]) -> None:
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
    sent = sock.sendmsg([payload], ancillary)
    if sent < len(payload):
        sock.sendall(payload[sent:])


def _recv_fds(sock: socket.socket, limit: int) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    payload, ancillary, _flags, _addr = sock.recvmsg(
        min(limit, 65536), socket.CMSG_SPACE(4 * fds.itemsize)
    )
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if sock.type == socket.SOCK_STREAM:
        rest = bytearray(payload)
        while len(rest) < limit and (chunk := sock.recv(65536)):
            rest += chunk
        payload = bytes(rest)
    return payload, list(fds)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
