"""One client connection as every protocol sees it: read, write, upgrade to TLS, close.

Wraps an asyncio stream pair with the idle timeout and the connection record,
so protocol sessions contain only the read-feed-write loop of their engine.

The idle timeout is a lazy deadline rather than an ``asyncio.timeout`` per read
(which costs a timer in the loop's heap, its cancellation and a task lookup at
every read, about a tenth of a busy SMTP server's event loop): a read only
notes when it started, and one timer per connection, due ``idle_timeout``
after the oldest read still waiting could have started, checks when it fires
and either cancels the waiting read (which then raises :class:`IdleTimeout`)
or sets itself again for the read that is waiting now.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from dataclasses import dataclass

from posthouse.server.records import ConnectionRecord

READ_SIZE = 65536
WRITE_BUFFER_HIGH = 256 * 1024  # beyond this much unsent output, wait for the client


class IdleTimeout(Exception):
    """The client sent nothing for longer than the idle timeout."""


@dataclass(frozen=True)
class Peer:
    """The remote end; ``address`` is '' for unix-socket clients."""

    address: str
    port: int

    @property
    def is_loopback(self) -> bool:
        if not self.address:
            return True  # unix socket: a local process
        try:
            return ipaddress.ip_address(self.address).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if self.address else "local"


class Connection:
    """A client connection with an idle timeout and a live record."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer: Peer,
        idle_timeout: float,
        record: ConnectionRecord,
        tls_active: bool = False,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.idle_timeout = idle_timeout
        self.record = record
        self.tls_active = tls_active
        # True while the session waits for a client with nothing in flight: shutdown may end it.
        self.interruptible = False
        self._waiting_since: float | None = None  # loop time the pending read started
        self._reader_task: asyncio.Task[object] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._expired = False

    async def read(self) -> bytes:
        """Bytes from the client, ``b''`` at end of stream; raises IdleTimeout when nothing
        arrived for ``idle_timeout`` seconds."""
        loop = asyncio.get_running_loop()
        self._waiting_since = now = loop.time()
        if self._reader_task is None:
            self._reader_task = asyncio.current_task()
        if self._watchdog is None:
            self._watchdog = loop.call_at(now + self.idle_timeout, self._check_idle)
        try:
            return await self.reader.read(READ_SIZE)
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                raise IdleTimeout from None
            raise
        finally:
            self._waiting_since = None

    def _check_idle(self) -> None:
        """The watchdog: cancel a read that has waited too long, else look again later."""
        self._watchdog = None
        since = self._waiting_since
        if since is None:
            return  # no read pending: the next read sets the watchdog again
        loop = asyncio.get_running_loop()
        if loop.time() - since >= self.idle_timeout and self._reader_task is not None:
            self._expired = True
            self._reader_task.cancel()
        else:
            self._watchdog = loop.call_at(since + self.idle_timeout, self._check_idle)

    async def write(self, data: bytes) -> None:
        """Send ``data``; waits (bounded by the idle timeout) only while the client lags."""
        if not data:
            return
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
            async with asyncio.timeout(self.idle_timeout):
                await self.writer.drain()

    async def read_unless_stopped(self, stopping: asyncio.Event, *, idle: bool) -> bytes | None:
        """Read from the client; None when the server stops while this session is ``idle``.

        An idle session (nothing in flight) may be cancelled by the shutdown; a busy one is
        left to finish what it is doing.
        """
        self.interruptible = idle
        try:
            return await self.read()
        except asyncio.CancelledError:
            if idle and stopping.is_set():
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # handled: the session ends politely instead
                return None
            raise
        finally:
            self.interruptible = False

    async def upgrade_tls(self, context: ssl.SSLContext, go_ahead: bytes) -> None:
        """Send the go-ahead reply (STARTTLS/STLS) and switch to TLS.

        Reading stops before the go-ahead is sent: otherwise the client's first
        handshake bytes could be read into the plaintext buffer and the handshake stall.
        Anything the client pipelined after the command was sent in plaintext and is
        thrown away, never read as commands once TLS is up (RFC 3207 §4.2, CVE-2011-0411);
        asyncio has no public way to empty a StreamReader, hence the private attribute.
        """
        transport = self.writer.transport
        if isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()
        await self.write(go_ahead)
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()
        await asyncio.wait_for(self.writer.start_tls(context), self.idle_timeout)
        self.tls_active = True

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self.record.remove()
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)


def peer_of(writer: asyncio.StreamWriter) -> Peer:
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return Peer(str(info[0]), int(info[1]))
    return Peer("", 0)
