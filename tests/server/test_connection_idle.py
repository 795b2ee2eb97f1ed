"""The connection's idle timeout: a read that waits too long raises IdleTimeout, others don't."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from posthouse.server.connection import Connection, IdleTimeout, Peer
from posthouse.server.records import ConnectionRecord

IDLE = 30.0  # seconds of the loop's clock, which the tests move by hand


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when the test says so: timers (the idle
    watchdog) fire exactly when their time is reached, however loaded the machine."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        return self.now


async def advance(seconds: float) -> None:
    """Move the clock forward and let every callback that came due run."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop)
    for _ in range(20):  # tasks just created start (and read the clock) first
        await asyncio.sleep(0)
    loop.now += seconds
    for _ in range(20):
        await asyncio.sleep(0)


async def pair(idle: float = IDLE) -> tuple[Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    connection = Connection(
        reader, writer, peer=Peer("", 0), idle_timeout=idle, record=ConnectionRecord("smtp", "t")
    )
    theirs.setblocking(False)
    return connection, theirs


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        runner.run(scenario())


async def arrives(connection: Connection, client: socket.socket, data: bytes) -> bytes:
    """Send ``data`` and read it (the read is already waiting or starts now)."""
    client.send(data)
    return await connection.read()


def test_a_read_with_nothing_arriving_times_out() -> None:
    async def scenario() -> None:
        connection, client = await pair()
        reading = asyncio.create_task(connection.read())
        await advance(IDLE * 0.99)
        assert not reading.done()
        await advance(IDLE * 0.02)
        assert reading.done()
        with pytest.raises(IdleTimeout):
            await reading
        await connection.close()
        client.close()

    run(scenario)


async def settle(condition: Callable[[], bool]) -> None:
    """Let the loop run (the clock standing still) until ``condition`` holds."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def test_every_read_gets_the_whole_period() -> None:
    """Data arriving after 0.6 of the period, five times: no timeout, though the watchdog set
    by the first read comes due while a later read is waiting."""

    async def scenario() -> None:
        connection, client = await pair()
        got: list[bytes | IdleTimeout] = []

        async def session() -> None:  # one task reads everything, as a session does
            while True:
                try:
                    got.append(await connection.read())
                except IdleTimeout as exc:
                    got.append(exc)
                    return

        reader = asyncio.create_task(session())
        for n in range(5):
            await advance(IDLE * 0.6)
            assert len(got) == n
            client.send(b"line %d\r\n" % n)
            await settle(lambda n=n: len(got) == n + 1)  # type: ignore[misc]
            assert got[n] == b"line %d\r\n" % n
        await advance(IDLE * 0.99)
        assert len(got) == 5
        await advance(IDLE * 0.02)  # and the period still ends a silent client
        await settle(reader.done)
        assert isinstance(got[5], IdleTimeout)
        await connection.close()
        client.close()

    run(scenario)


def test_time_spent_between_reads_does_not_count() -> None:
    async def scenario() -> None:
        connection, client = await pair()
        assert await arrives(connection, client, b"first\r\n") == b"first\r\n"
        await advance(IDLE * 1.5)  # the session is busy (delivering, say), not idle
        assert await arrives(connection, client, b"second\r\n") == b"second\r\n"
        await connection.close()
        client.close()

    run(scenario)


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def scenario() -> None:
        connection, client = await pair(idle=30.0)
        reading = asyncio.create_task(connection.read())
        await asyncio.sleep(0)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        await connection.close()
        client.close()

    run(scenario)
