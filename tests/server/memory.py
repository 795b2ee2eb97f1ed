"""Test helper: sessions over an in-memory connection, on an event loop with a virtual clock.

`MemoryClient` gives a session a `Connection` whose reader is an `asyncio.StreamReader`
the test feeds and whose writer records every write (so a test sees how replies were
batched), and reads the replies back line by line.

`virtual_clock` runs a coroutine on a fresh event loop whose clock only moves when the
loop has nothing to do: it then jumps to the next timer instead of sleeping.  Idle
timeouts and deadlines of any length expire at once, at exactly their virtual time.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

from posthouse.server.connection import Connection, Deadlines, Peer
from posthouse.server.records import ConnectionRecord

T = TypeVar("T")
NEVER = 1e9  # virtual seconds: "no reply before this" means the session hangs


class _VirtualSelector(selectors.DefaultSelector):
    """A selector that never sleeps: a wait for ``timeout`` moves the clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self.now += timeout
        return ready


def virtual_clock(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on an event loop with a virtual clock (see the module docstring)."""
    selector = _VirtualSelector()
    loop = asyncio.SelectorEventLoop(selector)
    loop.time = lambda: selector.now  # type: ignore[method-assign]
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


class _Transport:
    """The part of a transport `Connection` uses."""

    def get_write_buffer_size(self) -> int:
        return 0


class _Writer:
    """Records what the session writes, one entry per write."""

    def __init__(self, written: asyncio.Condition, writes: list[bytes]) -> None:
        self.transport = _Transport()
        self._written = written
        self._writes = writes
        self.closed = False

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._written:
            self._written.notify_all()

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass


class MemoryClient:
    """The client end of an in-memory connection."""

    def __init__(
        self,
        *,
        idle_timeout: float = 300.0,
        deadlines: Deadlines | None = None,
        peer: Peer | None = None,
    ) -> None:
        self.reader = asyncio.StreamReader()
        self.writes: list[bytes] = []
        self._written = asyncio.Condition()
        self._seen = 0  # octets of output already returned by reply()/line()
        self.connection = Connection(
            self.reader,
            cast(asyncio.StreamWriter, _Writer(self._written, self.writes)),
            peer=peer or Peer("192.0.2.7", 40000),
            idle_timeout=idle_timeout,
            record=ConnectionRecord("test", "memory"),
            deadlines=deadlines,
        )

    @property
    def output(self) -> bytes:
        return b"".join(self.writes)

    def send(self, data: bytes) -> None:
        self.reader.feed_data(data)

    def eof(self) -> None:
        self.reader.feed_eof()

    async def line(self) -> bytes:
        """The next line the session wrote (CRLF included); waits for it."""

        def complete() -> bool:
            return self.output.find(b"\n", self._seen) >= 0

        async with self._written:
            await asyncio.wait_for(self._written.wait_for(complete), NEVER)
        end = self.output.index(b"\n", self._seen) + 1
        line, self._seen = self.output[self._seen : end], end
        return line

    async def reply(self) -> bytes:
        """The next SMTP reply (all its lines)."""
        data = b""
        while True:
            line = await self.line()
            data += line
            if line[3:4] != b"-":
                return data

    async def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return await self.reply()
