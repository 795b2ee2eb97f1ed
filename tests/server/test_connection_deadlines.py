"""The per-unit deadlines of a connection and the connection limiter's exemptions."""

from __future__ import annotations

import asyncio
import socket

import pytest

from posthouse.server.connection import Connection, DeadlineExceeded, Deadlines, Peer
from posthouse.server.limits import ConnectionLimiter, Slot
from posthouse.server.records import ConnectionRecord


async def pair(deadlines: Deadlines) -> tuple[Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    connection = Connection(
        reader,
        writer,
        peer=Peer("", 0),
        idle_timeout=30.0,
        record=ConnectionRecord("smtp", "t"),
        deadlines=deadlines,
    )
    theirs.setblocking(False)
    return connection, theirs


def test_a_trickled_command_line_ends_at_the_command_deadline() -> None:
    async def scenario() -> None:
        connection, client = await pair(Deadlines(command_timeout=0.3))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeadlineExceeded):
            while True:  # one byte every 0.05 s: never idle, never done
                loop.call_later(0.05, client.send, b"x")
                await connection.read()
        assert 0.3 <= loop.time() - started < 1.0
        await connection.close()
        client.close()

    asyncio.run(scenario())


def test_each_finished_command_starts_a_new_clock() -> None:
    async def scenario() -> None:
        connection, client = await pair(Deadlines(command_timeout=0.3))
        loop = asyncio.get_running_loop()
        for _ in range(10):  # 1 s in all, each command 0.1 s
            loop.call_later(0.1, client.send, b"NOOP\r\n")
            assert await connection.read() == b"NOOP\r\n"
            connection.unit_done()
        await connection.close()
        client.close()

    asyncio.run(scenario())


def test_a_transfer_must_keep_the_minimum_rate() -> None:
    async def scenario() -> None:
        deadlines = Deadlines(data_timeout=0.2, min_rate=1000.0)
        connection, client = await pair(deadlines)
        loop = asyncio.get_running_loop()
        # Fast enough: 200 bytes per 0.05 s (4,000 B/s) for 0.5 s.
        connection.start_transfer()
        for _ in range(10):
            loop.call_later(0.05, client.send, b"y" * 200)
            assert len(await connection.read()) == 200
        connection.unit_done()
        # Too slow: 10 bytes per 0.05 s (200 B/s): ends soon after 0.2 s + 10 ms per read.
        connection.start_transfer()
        started = loop.time()
        with pytest.raises(DeadlineExceeded):
            while True:
                loop.call_later(0.05, client.send, b"z" * 10)
                await connection.read()
        assert 0.2 <= loop.time() - started < 1.0
        await connection.close()
        client.close()

    asyncio.run(scenario())


def test_trusted_and_authenticated_clients_are_exempt_from_the_per_client_limit() -> None:
    limiter = ConnectionLimiter(10, 2, exempt=lambda client: client.startswith("10."))
    slots = [limiter.admit("192.0.2.1"), limiter.admit("192.0.2.1")]
    assert limiter.admit("192.0.2.1") == "too many connections from 192.0.2.1"
    trusted = [limiter.admit("10.0.0.1") for _ in range(5)]
    assert all(isinstance(slot, Slot) for slot in trusted)
    first = slots[0]
    assert isinstance(first, Slot)
    limiter.exempt(first)  # it authenticated
    assert isinstance(limiter.admit("192.0.2.1"), Slot)
    assert limiter.count("192.0.2.1") == 2
    limiter.release(first)
    assert limiter.count("192.0.2.1") == 2  # released once, not twice
    assert limiter.total == 7
    assert all(isinstance(limiter.admit(f"10.0.0.{n}"), Slot) for n in range(3))
    assert limiter.admit("10.0.0.9") == "too many connections"  # the total still holds
