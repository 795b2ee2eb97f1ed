"""The daemon's control socket: one small protocol for reload, stop, status, users' own mail
passwords and the queue listing.

A unix-domain stream socket (``DATA_DIR/run/control.sock``, mode 0666 so every local user can
connect) carries one request per connection: a single line holding a JSON object with an
``op`` and its arguments, at most :data:`MAX_REQUEST` bytes.  The reply is one line holding a
JSON object (``ok``, ``message`` and the operation's fields), optionally followed by plain text
lines until the server closes the connection (the queue listing).

Who asks is taken from the kernel, never from the request: ``SO_PEERCRED`` gives the peer's
uid, gid and pid.  Each operation is registered with whether it is privileged: privileged ones
(reload, stop) are served to root and to the daemon's own account only; the others get the
caller's identity and act for that user alone (their own mail password, the queue listing).

:class:`ControlServer` serves the socket with a table of :class:`Operation`; :func:`request`
is the client side the tools use.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("posthouse.control")

MAX_REQUEST = 64 * 1024  # bytes in the request line: a password change is far smaller
REQUEST_TIMEOUT = 10.0  # seconds to send the request line
MAX_CLIENTS = 16  # control connections served at once; more wait for a turn
LINES_PER_WRITE = 1024  # text lines after a reply are sent in pieces of this many
SOCKET_MODE = 0o666  # every local user may connect; each request is authorised by its uid


class ControlError(Exception):
    """The daemon could not be reached, or its reply could not be read."""


@dataclass(frozen=True)
class Caller:
    """The process at the other end of a control connection, as the kernel reports it."""

    pid: int
    uid: int
    gid: int

    @property
    def privileged(self) -> bool:
        """Root, or the account the daemon itself runs as."""
        return self.uid in (0, os.geteuid())


@dataclass
class Reply:
    """One reply: its JSON fields and, optionally, text lines sent after them."""

    ok: bool
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    lines: Iterable[str] | None = None

    def header(self) -> bytes:
        data = {"ok": self.ok, "message": self.message, **self.fields}
        return json.dumps(data, separators=(",", ":")).encode("utf-8") + b"\n"


Handler = Callable[[Caller, dict[str, Any]], Awaitable[Reply]]


@dataclass(frozen=True)
class Operation:
    """One operation of the control protocol: its handler and who may call it."""

    handler: Handler
    privileged: bool = False


def bind_control_socket(path: Path) -> socket.socket:
    """Open the control socket at ``path``, mode 0666: a socket file left there by a daemon
    that is gone is replaced; one a daemon still listens on is not (``EADDRINUSE``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)  # reachable by every user; only the daemon writes in it
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            if _answers(path):
                raise OSError(errno.EADDRINUSE, "a running daemon serves this data directory")
            path.unlink()  # left by a daemon that is gone
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, SOCKET_MODE)
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _answers(path: Path) -> bool:
    """Whether a process listens on the unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def peer_credentials(sock: socket.socket) -> Caller:
    """The peer's pid, uid and gid (Linux ``SO_PEERCRED``, ``struct ucred``)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Caller(pid, uid, gid)


class ControlServer:
    """Serves control requests on a bound unix socket with a table of operations."""

    def __init__(self, sock: socket.socket, operations: Mapping[str, Operation]) -> None:
        self.sock = sock
        self.operations = operations
        self._turns = asyncio.Semaphore(MAX_CLIENTS)
        self._acceptor: asyncio.Task[None] | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._acceptor = asyncio.create_task(self._accept())

    async def close(self) -> None:
        """Stop accepting; requests being answered get a few seconds, then are cut."""
        if self._acceptor is not None:
            self._acceptor.cancel()
            await asyncio.gather(self._acceptor, return_exceptions=True)
        if self._clients:
            _done, pending = await asyncio.wait(set(self._clients), timeout=5)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _accept(self) -> None:
        """Accept a connection whenever one of the :data:`MAX_CLIENTS` turns is free (the
        others wait in the kernel's backlog)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._turns.acquire()
            try:
                conn, _address = await loop.sock_accept(self.sock)
            except BaseException:
                self._turns.release()
                raise
            task = asyncio.create_task(self._serve(conn))
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)

    async def _serve(self, conn: socket.socket) -> None:
        try:
            caller = peer_credentials(conn)
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_REQUEST + 2)
        except BaseException:
            conn.close()
            self._turns.release()
            raise
        try:
            reply = await self._answer(caller, reader)
            writer.write(reply.header())
            if reply.lines is not None:
                lines = iter(reply.lines)
                # Produced in a thread (the queue listing reads files), in pieces.
                while chunk := await asyncio.to_thread(_take, lines, LINES_PER_WRITE):
                    writer.write(
                        "".join(f"{line}\n" for line in chunk).encode("utf-8", "surrogateescape")
                    )
                    await writer.drain()
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._turns.release()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, caller: Caller, reader: asyncio.StreamReader) -> Reply:
        try:
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
        except ValueError:
            return Reply(False, f"request longer than {MAX_REQUEST} bytes")
        try:
            request = json.loads(line)
        except ValueError:
            return Reply(False, "the request is not one line of JSON")
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return Reply(False, 'the request is not a JSON object with an "op"')
        op = request["op"]
        operation = self.operations.get(op)
        if operation is None:
            return Reply(False, f"unknown operation {op!r}")
        if operation.privileged and not caller.privileged:
            log.warning("control: %s refused to uid %d (pid %d)", op, caller.uid, caller.pid)
            return Reply(False, f"{op}: permission denied (root only)", {"denied": True})
        try:
            return await operation.handler(caller, request)
        except Exception as exc:
            log.exception("control: %s failed", op)
            return Reply(False, f"{op} failed: {exc}")


def _take(lines: Iterator[str], count: int) -> list[str]:
    return list(itertools.islice(lines, count))


@dataclass
class Answer:
    """A reply as the client reads it."""

    fields: dict[str, Any]
    lines: Iterator[str]

    @property
    def ok(self) -> bool:
        return bool(self.fields.get("ok"))

    @property
    def message(self) -> str:
        return str(self.fields.get("message", ""))


def request(
    path: Path, op: str, timeout: float = 60.0, *, stream: bool = False, **arguments: Any
) -> Answer:
    """Send one request to the daemon's control socket at ``path`` and read the reply.

    Raises :class:`ControlError` when no daemon answers there (no socket, nobody listening,
    a broken reply).  The text lines after the reply are read with it, or with ``stream``
    as they arrive (the connection closes when they are read to the end)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    reader = None
    try:
        sock.connect(str(path))
        sock.sendall(json.dumps({"op": op, **arguments}).encode("utf-8") + b"\n")
        reader = sock.makefile("rb")
        header = reader.readline(MAX_REQUEST)
        fields = json.loads(header)
    except (OSError, ValueError) as exc:
        if reader is not None:
            reader.close()
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ControlError(f"no answer from the daemon at {path}: {reason}") from exc
    if not isinstance(fields, dict):
        reader.close()
        sock.close()
        raise ControlError(f"unreadable reply from the daemon at {path}")

    def lines() -> Iterator[str]:
        try:
            for raw in reader:
                yield raw.decode("utf-8", "surrogateescape").removesuffix("\n")
        finally:
            reader.close()
            sock.close()

    if stream:
        return Answer(fields, lines())
    return Answer(fields, iter(list(lines())))
