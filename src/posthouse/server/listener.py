"""Listening sockets and the accept path shared by every protocol.

``bind_socket`` opens a TCP or unix-domain listening socket (done before any
privilege drop and before workers fork, so all workers share it).
``ListenerGroup`` serves sockets with a protocol's session handler, applies
the connection limits, keeps connection records, implicit TLS, and drains the
sessions in flight on shutdown.

Connections are counted against the limits as soon as they are accepted: implicit TLS
is not left to asyncio's server (which would handshake first and count later) but done
here, after admission and within the handshake deadline, so a flood of connections that
never finish their handshake is cut to the per-client limit at once and dropped at the
deadline.  A refused implicit-TLS client is simply closed (it could not read a plaintext
reply); others get the protocol engine's refusal reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from posthouse.server.connection import Connection, Deadlines, Peer, peer_of, start_tls
from posthouse.server.limits import ConnectionLimiter, Slot
from posthouse.server.records import ConnectionRegistry

SessionHandler = Callable[[Connection], Awaitable[None]]


class BindError(Exception):
    """A listening socket could not be opened."""


def bind_socket(address: str, port: int, path: str = "") -> socket.socket:
    """Open a listening socket: unix-domain when ``path`` is set, else TCP."""
    if path:
        return _bind_unix(Path(path))
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {address}:{port}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def _bind_unix(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o660)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {path}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def socket_port(sock: socket.socket) -> int:
    """The port a TCP socket is bound to (0 for unix sockets)."""
    name = sock.getsockname()
    return int(name[1]) if isinstance(name, tuple) else 0


@dataclass(frozen=True)
class ServiceSpec:
    """How to serve one listening socket."""

    name: str
    sock: socket.socket
    handler: SessionHandler
    idle_timeout: float
    refusal: Callable[[str], bytes]  # a refused client's reply: the engine's `refusal`, encoded
    implicit_tls: ssl.SSLContext | None = None
    deadlines: Deadlines = field(default_factory=Deadlines)


class ListenerGroup:
    """Serves a set of sockets and tracks every live session for a clean shutdown."""

    def __init__(self, limiter: ConnectionLimiter, registry: ConnectionRegistry) -> None:
        self.limiter = limiter
        self.registry = registry
        self.stopping = asyncio.Event()
        self._servers: dict[int, asyncio.AbstractServer] = {}  # by socket file descriptor
        self._specs: dict[int, ServiceSpec] = {}  # by socket file descriptor
        self._sessions: dict[asyncio.Task[None], Connection | None] = {}

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def sessions_now(self) -> set[asyncio.Task[None]]:
        """The sessions running (or starting) now."""
        return set(self._sessions)

    def replace(self, spec: ServiceSpec) -> None:
        """Serve new connections on ``spec.sock`` with ``spec`` (a reload); sessions already
        running keep the handler they started with."""
        self._specs[spec.sock.fileno()] = spec

    async def start(self, spec: ServiceSpec) -> None:
        key = spec.sock.fileno()
        self._specs[key] = spec

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._sessions[task] = None
            try:
                await self._run_session(self._specs[key], reader, writer, task)
            finally:
                self._sessions.pop(task, None)

        if spec.sock.family == socket.AF_UNIX:
            server = await asyncio.start_unix_server(on_connect, sock=spec.sock)
        else:
            # Implicit TLS is started in _run_session, after the connection was admitted.
            server = await asyncio.start_server(on_connect, sock=spec.sock, limit=1 << 20)
        self._servers[key] = server

    async def stop_serving(self, sock: socket.socket) -> None:
        """Stop accepting on *sock* and close it (a listener taken out by a reload); its
        sessions go on."""
        key = sock.fileno()
        server = self._servers.pop(key, None)
        self._specs.pop(key, None)
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def _run_session(
        self,
        spec: ServiceSpec,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        task: asyncio.Task[None],
    ) -> None:
        peer: Peer = peer_of(writer)
        slot = self.limiter.admit(peer.address)
        if not isinstance(slot, Slot):
            with contextlib.suppress(Exception):
                if spec.implicit_tls is None:
                    writer.write(spec.refusal(slot))
                    await asyncio.wait_for(writer.drain(), 5)
                writer.close()
            return
        record = self.registry.open(spec.name, str(peer))
        connection = Connection(
            reader,
            writer,
            peer=peer,
            idle_timeout=spec.idle_timeout,
            record=record,
            deadlines=spec.deadlines,
            on_authenticated=lambda: self.limiter.exempt(slot),
        )
        self._sessions[task] = connection
        try:
            if spec.implicit_tls is not None:
                await start_tls(writer, spec.implicit_tls, spec.deadlines.handshake_timeout)
                connection.tls_active = True
            await spec.handler(connection)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
        finally:
            self.limiter.release(slot)
            await connection.close()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let sessions finish what they are doing, then cancel the rest."""
        self.stopping.set()
        for server in self._servers.values():
            server.close()
        for task, connection in list(self._sessions.items()):
            if connection is not None and connection.interruptible:
                task.cancel()
        if self._sessions:
            _done, pending = await asyncio.wait(set(self._sessions), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for server in self._servers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
