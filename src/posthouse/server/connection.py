"""One client connection as every protocol sees it: read, write, upgrade to TLS, close.

Wraps an asyncio stream pair with the idle timeout and the connection record; the
session driver (session.py) runs every protocol's read-feed-write loop on it.

The idle timeout is a lazy deadline rather than an ``asyncio.timeout`` per read
(which costs a timer in the loop's heap, its cancellation and a task lookup at
every read, about a tenth of a busy SMTP server's event loop): a read only
notes when it started, and one timer per connection, due ``idle_timeout``
after the oldest read still waiting could have started, checks when it fires
and either cancels the waiting read (which then raises :class:`IdleTimeout`)
or sets itself again for the read that is waiting now.

The same timer enforces the deadlines that stop a slow client from holding a slot (issue 8,
Postfix's ``smtpd_timeout`` with a rate floor, like Apache's ``mod_reqtimeout``):

* a **command line** must be complete within ``command_timeout`` of its first byte, however
  the bytes trickle in (the session calls :meth:`Connection.unit_done` whenever the engine
  finishes a command, and the next byte that arrives starts the next line's clock);
* a **transfer** (DATA or BDAT, from :meth:`Connection.start_transfer` to ``unit_done``)
  must be complete by ``data_timeout + bytes_so_far / min_rate`` after it began, i.e. after
  a grace period it must average ``min_rate`` bytes per second;
* a **TLS handshake** (implicit TLS or STARTTLS) must finish within ``handshake_timeout``.

A deadline that passes while a read is waiting ends it with :class:`DeadlineExceeded`, an
:class:`IdleTimeout`, so sessions answer it the same way (``421``, POP3 ``-ERR``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from posthouse.server.records import ConnectionRecord

READ_SIZE = 65536
WRITE_BUFFER_HIGH = 256 * 1024  # beyond this much unsent output, wait for the client


class IdleTimeout(Exception):
    """The client sent nothing for longer than the idle timeout."""


class DeadlineExceeded(IdleTimeout):
    """A command line or a transfer took longer than its deadline allows."""


@dataclass(frozen=True)
class Deadlines:
    """The per-unit deadlines of a connection (see the module docstring); ``inf``: none."""

    command_timeout: float = math.inf
    data_timeout: float = math.inf
    min_rate: float = 0.0  # bytes per second; 0: a transfer has no deadline of its own
    handshake_timeout: float = 10.0


@dataclass(frozen=True)
class Peer:
    """The remote end; ``address`` is '' for unix-socket clients."""

    address: str
    port: int

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(self.address)

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if self.address else "local"


@functools.lru_cache(maxsize=1024)
def _is_loopback(address: str) -> bool:
    if not address:
        return True  # unix socket: a local process
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


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
        deadlines: Deadlines | None = None,
        on_authenticated: Callable[[], None] | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.idle_timeout = idle_timeout
        self.record = record
        self.tls_active = tls_active
        self.deadlines = deadlines or Deadlines()
        self._on_authenticated = on_authenticated
        # The unit (command line or transfer) being received: when it began, bytes so far.
        self._unit_start: float | None = None
        self._unit_bytes = 0
        self._transfer = False
        self._deadline_passed = False
        # True while the session waits for a client with nothing in flight: shutdown may end it.
        self.interruptible = False
        self._waiting_since: float | None = None  # loop time the pending read started
        self._reader_task: asyncio.Task[object] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._expired = False

    def start_transfer(self) -> None:
        """DATA or BDAT begins: from now the transfer deadline applies (until unit_done)."""
        self._transfer = True
        self._unit_start = asyncio.get_running_loop().time()
        self._unit_bytes = 0

    def unit_done(self) -> None:
        """A command line or a transfer is complete: the next byte starts a new clock."""
        self._transfer = False
        self._unit_start = None
        self._unit_bytes = 0

    def authenticated(self) -> None:
        """The client logged in: it stops counting against its address's connection limit."""
        if self._on_authenticated is not None:
            self._on_authenticated()
            self._on_authenticated = None

    def _unit_due(self) -> float:
        """When the unit being received must be complete (``inf`` when nothing is due)."""
        start = self._unit_start
        if start is None:
            return math.inf
        deadlines = self.deadlines
        if not self._transfer:
            return start + deadlines.command_timeout
        if deadlines.min_rate <= 0:
            return math.inf
        return start + deadlines.data_timeout + self._unit_bytes / deadlines.min_rate

    async def read(self) -> bytes:
        """Bytes from the client, ``b''`` at end of stream; raises IdleTimeout when nothing
        arrived for ``idle_timeout`` seconds, DeadlineExceeded when the command line or
        transfer being received is past its deadline."""
        loop = asyncio.get_running_loop()
        self._waiting_since = now = loop.time()
        if self._reader_task is None:
            self._reader_task = asyncio.current_task()
        due = min(now + self.idle_timeout, self._unit_due())
        if due <= now:
            self._waiting_since = None
            raise DeadlineExceeded
        watchdog = self._watchdog
        if watchdog is None or watchdog.when() > due:
            if watchdog is not None:
                watchdog.cancel()
            self._watchdog = loop.call_at(due, self._check_idle)
        try:
            data = await self.reader.read(READ_SIZE)
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                if self._deadline_passed:
                    self._deadline_passed = False
                    raise DeadlineExceeded from None
                raise IdleTimeout from None
            raise
        finally:
            self._waiting_since = None
        if self._unit_start is None:
            self._unit_start = loop.time()
        self._unit_bytes += len(data)
        return data

    def _check_idle(self) -> None:
        """The watchdog: cancel a read that has waited too long, else look again later."""
        self._watchdog = None
        since = self._waiting_since
        if since is None:
            return  # no read pending: the next read sets the watchdog again
        loop = asyncio.get_running_loop()
        now = loop.time()
        unit_due = self._unit_due()
        if (now - since >= self.idle_timeout or now >= unit_due) and self._reader_task is not None:
            self._expired = True
            self._deadline_passed = now >= unit_due
            self._reader_task.cancel()
        else:
            due = min(since + self.idle_timeout, unit_due)
            self._watchdog = loop.call_at(due, self._check_idle)

    async def write(self, data: bytes) -> None:
        """Send ``data``; waits (bounded by the idle timeout) only while the client lags."""
        if not data:
            return
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
            # A client that reads slowly holds its slot no longer than one that writes slowly.
            async with asyncio.timeout(min(self.idle_timeout, self.deadlines.command_timeout)):
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
        await start_tls(self.writer, context, self.deadlines.handshake_timeout)
        self.tls_active = True

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self.record.remove()
        with contextlib.suppress(Exception):
            self.writer.close()
            if self.tls_active or self.writer.transport.get_write_buffer_size():
                # A TLS shutdown or output a slow client has not read yet: wait, bounded.
                # Otherwise the socket is closed on the loop's next round, nothing to wait for.
                await asyncio.wait_for(self.writer.wait_closed(), 5)


async def start_tls(writer: asyncio.StreamWriter, context: ssl.SSLContext, timeout: float) -> None:
    """The server side of a TLS handshake on ``writer``, ended (TimeoutError) at ``timeout``."""
    async with asyncio.timeout(timeout):
        await writer.start_tls(context, ssl_handshake_timeout=timeout)


def peer_of(writer: asyncio.StreamWriter) -> Peer:
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return Peer(str(info[0]), int(info[1]))
    return Peer("", 0)
