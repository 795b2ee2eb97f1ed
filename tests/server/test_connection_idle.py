"""The connection's idle timeout: a read that waits too long raises IdleTimeout, others don't."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from posthouse.server.connection import Connection, IdleTimeout, Peer
from posthouse.server.records import ConnectionRecord

IDLE = 0.2


async def pair(idle: float = IDLE) -> tuple[Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    connection = Connection(
        reader, writer, peer=Peer("", 0), idle_timeout=idle, record=ConnectionRecord("smtp", "t")
    )
    theirs.setblocking(False)
    return connection, theirs


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_a_read_with_nothing_arriving_times_out() -> None:
    async def scenario() -> None:
        connection, client = await pair()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(IdleTimeout):
            await connection.read()
        assert IDLE <= loop.time() - started < IDLE * 5
        await connection.close()
        client.close()

    run(scenario)


def test_every_read_gets_the_whole_period() -> None:
    """Data arriving after 0.6 of the period, five times: no timeout, though the watchdog set
    by the first read comes due while a later read is waiting."""

    async def scenario() -> None:
        connection, client = await pair()
        loop = asyncio.get_running_loop()
        for n in range(5):
            loop.call_later(IDLE * 0.6, client.send, b"line %d\r\n" % n)
            assert await connection.read() == b"line %d\r\n" % n
        with pytest.raises(IdleTimeout):  # and the period still ends a silent client
            await connection.read()
        await connection.close()
        client.close()

    run(scenario)


def test_time_spent_between_reads_does_not_count() -> None:
    async def scenario() -> None:
        connection, client = await pair()
        client.send(b"first\r\n")
        assert await connection.read() == b"first\r\n"
        await asyncio.sleep(IDLE * 1.5)  # the session is busy (delivering, say), not idle
        client.send(b"second\r\n")
        assert await connection.read() == b"second\r\n"
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
