"""The one session loop every protocol uses: read, feed the engine, act on its events, write.

`SessionDriver` runs a connection (connection.py: idle timeout, deadlines, TLS upgrade)
against a sans-I/O engine (``protocols/engine_base.EngineCore``)::

    while the engine is open:
        next event?  none: flush the output, then read (or end the session: shutdown,
                     idle timeout, deadline) and feed the bytes or the end of stream;
                     an event: mark the unit for the deadlines, let the protocol act on it
    flush

A protocol plugs in with a `SessionLogic` (server/smtp.py, server/pop3.py): ``busy`` (a
shutdown lets the session finish what is in flight, and only an idle one may be
interrupted), ``unit(event)`` (which events complete a command or start a transfer, for
the deadlines), ``handle(event)`` (answer it, usually through the domain layers) and
``ended(why)`` (log it).  The driver never words a reply: the last words of a session it
ends (`Ending`: shutdown, idle timeout, deadline) are the engine's typed replies
(``engine.end``).  Output is sent when the engine needs input, so a pipelining client gets
its replies in one write; long responses go out in pieces of ``OUTPUT_FLUSH`` octets
(``send_soon``).  ``start_tls`` sends the engine's go-ahead, runs the handshake and
tells the engine.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from typing import Final, Generic, Protocol, TypeVar

from posthouse.protocols.engine_base import NEED_DATA, PAUSED, Ending, Signal
from posthouse.server.connection import Connection, DeadlineExceeded, IdleTimeout

OUTPUT_FLUSH: Final = 256 * 1024  # gathered output beyond this is written at once

EventT = TypeVar("EventT")
EventT_co = TypeVar("EventT_co", covariant=True)
EventT_contra = TypeVar("EventT_contra", contravariant=True)


class Unit(enum.Enum):
    """What an event means for the deadlines of the connection (connection.py)."""

    DONE = "done"  # a command or a transfer is complete: the next byte starts a new clock
    TRANSFER = "transfer"  # content begins: the transfer deadline applies until DONE
    CONTINUES = "continues"  # part of the transfer in progress


class Engine(Protocol[EventT_co]):
    """What the driver needs of a sans-I/O engine (``engine_base.EngineCore`` has it)."""

    @property
    def closed(self) -> bool: ...

    def receive_data(self, data: bytes) -> None: ...

    def receive_eof(self) -> None: ...

    def next_event(self) -> EventT_co | Signal: ...

    def data_to_send(self) -> bytes: ...

    def tls_started(self) -> None: ...

    def end(self, why: Ending) -> None: ...


class SessionLogic(Protocol[EventT_contra]):
    """What a protocol's session gives the driver (see the module docstring)."""

    @property
    def busy(self) -> bool:
        """Something is in flight (a transaction, an open maildrop): a shutdown waits."""
        ...

    def unit(self, event: EventT_contra) -> Unit: ...

    async def handle(self, event: EventT_contra) -> None: ...

    def ended(self, why: Ending) -> None:
        """The driver ends the session for ``why`` (the engine then says its last words)."""
        ...


class SessionDriver(Generic[EventT]):
    """Runs one connection's read-feed-act-write loop (see the module docstring)."""

    def __init__(
        self, connection: Connection, engine: Engine[EventT], stopping: asyncio.Event
    ) -> None:
        self.connection = connection
        self.engine = engine
        self.stopping = stopping
        self._output = bytearray()  # gathered by send_soon, written by flush

    async def run(self, logic: SessionLogic[EventT]) -> None:
        """Drive the session until the engine closes or the driver ends it."""
        engine, connection = self.engine, self.connection
        while not engine.closed:
            event = engine.next_event()
            if event is NEED_DATA:
                await self.flush()
                busy = logic.busy
                if self.stopping.is_set() and not busy:
                    await self._end(logic, Ending.SHUTDOWN)
                    return
                try:
                    data = await connection.read_unless_stopped(self.stopping, idle=not busy)
                except DeadlineExceeded:
                    await self._end(logic, Ending.DEADLINE)
                    return
                except IdleTimeout:
                    await self._end(logic, Ending.IDLE)
                    return
                if data is None:
                    await self._end(logic, Ending.SHUTDOWN)
                    return
                if data:
                    engine.receive_data(data)
                else:
                    engine.receive_eof()
            elif event is PAUSED:
                raise RuntimeError(f"{type(engine).__name__} paused without a pending decision")
            else:
                unit = logic.unit(event)
                if unit is Unit.DONE:
                    connection.unit_done()
                elif unit is Unit.TRANSFER:
                    connection.start_transfer()
                await logic.handle(event)
        await self.flush()

    async def _end(self, logic: SessionLogic[EventT], why: Ending) -> None:
        logic.ended(why)
        self.engine.end(why)
        await self.flush()

    async def flush(self) -> None:
        """Write everything gathered and queued by the engine."""
        data = self.engine.data_to_send()
        if self._output:
            self._output += data
            data = bytes(self._output)
            self._output.clear()
        await self.connection.write(data)

    async def send_soon(self) -> None:
        """Gather the engine's output; write once ``OUTPUT_FLUSH`` octets are waiting."""
        self._output += self.engine.data_to_send()
        if len(self._output) >= OUTPUT_FLUSH:
            await self.flush()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """The engine queued its TLS go-ahead: send it, run the handshake, tell the engine."""
        go_ahead = bytes(self._output) + self.engine.data_to_send()
        self._output.clear()
        await self.connection.upgrade_tls(context, go_ahead)
        self.engine.tls_started()
