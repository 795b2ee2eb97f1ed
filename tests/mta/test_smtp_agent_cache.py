"""The SMTP client agent's connection cache, slot waiting and memory of failing hops."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from posthouse.mta.agents.smtp import DestinationBusy, OutboundMessage
from tests.mta.smtp_sink import Behaviour, SMTPSink
from tests.mta.test_smtp_agent import agent, errors, hop_to, message, run


async def until(condition: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    """Wait (polling the event loop) until ``condition`` holds; fail after ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


def test_a_cached_connection_carries_the_next_delivery() -> None:
    async def scenario() -> None:
        async with SMTPSink() as sink:
            client = agent()
            client.keep_connections(asyncio.get_running_loop())
            first = await client.deliver(hop_to(sink), [message("Q1")])
            second = await client.deliver(hop_to(sink), [message("Q2")])
            assert errors(first["Q1"]) == {"bob@there.test": None}
            assert errors(second["Q2"]) == {"bob@there.test": None}
            assert sink.connections == 1
            assert "RSET" in sink.commands and "QUIT" not in sink.commands
            await client.close_idle()
            await until(lambda: "QUIT" in sink.commands, "QUIT on close_idle")
            assert len(sink.messages) == 2

    run(scenario)


def test_without_the_servers_loop_connections_are_not_kept() -> None:
    async def scenario() -> None:
        async with SMTPSink() as sink:
            client = agent()
            await client.deliver(hop_to(sink), [message("Q1")])
            await client.deliver(hop_to(sink), [message("Q2")])
            assert sink.connections == 2
            assert sink.commands.count("QUIT") == 2

    run(scenario)


def test_an_idle_connection_is_closed_with_quit_when_its_time_is_up() -> None:
    async def scenario() -> None:
        async with SMTPSink() as sink:
            client = agent(idle_seconds=0.05)
            client.keep_connections(asyncio.get_running_loop())
            await client.deliver(hop_to(sink), [message("Q1")])
            await until(lambda: "QUIT" in sink.commands, "QUIT after the idle time")
            await client.deliver(hop_to(sink), [message("Q2")])
            assert sink.connections == 2
            await client.close_idle()

    run(scenario)


def test_a_cached_connection_the_server_dropped_is_replaced_without_loss() -> None:
    async def scenario() -> None:
        async with SMTPSink(Behaviour(close_after_messages=1)) as sink:
            client = agent()
            client.keep_connections(asyncio.get_running_loop())
            await client.deliver(hop_to(sink), [message("Q1")])
            await until(lambda: sink.connections == 1 and not sink._writers, "server closed")
            second = await client.deliver(hop_to(sink), [message("Q2")])
            assert errors(second["Q2"]) == {"bob@there.test": None}
            assert [m.data for m in sink.messages] == [message("Q1").open_data().read()] * 2
            assert sink.connections == 2
            await client.close_idle()

    run(scenario)


def test_a_busy_destination_is_refused_after_the_wait_and_nothing_is_sent() -> None:
    async def scenario() -> None:
        async with SMTPSink(Behaviour(hang_after_data=True)) as sink:
            client = agent(max_connections_per_destination=1)
            stuck = asyncio.create_task(client.deliver(hop_to(sink), [message("Q1")]))
            await sink.data_started.wait()
            with pytest.raises(DestinationBusy):
                await client.deliver(hop_to(sink), [message("Q2")], wait=0.05)
            assert sink.commands.count("DATA") == 1
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck

    run(scenario)


def test_a_hop_nobody_answers_for_is_remembered_as_failing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

        async def scenario() -> None:
            async with SMTPSink() as sink:
                client = agent()
                down = hop_to(sink)
                down = type(down)("127.0.0.1", port, use_mx=False)
                results = await client.deliver(down, [message("Q1")])
                assert results["Q1"][0].error is not None
                assert client.failing(down, within=60.0)
                assert not client.failing(down, within=0.0)
                assert not client.failing(hop_to(sink), within=60.0)
                await client.deliver(hop_to(sink), [message("Q2")])
                assert not client.failing(hop_to(sink), within=60.0)

        run(scenario)


@pytest.mark.parametrize(
    "content",
    [
        b"Subject: x\r\n\r\n.leading dot\r\nbare\nlf\rcr\r\n..two\r\nno final newline",
        b"Subject: y\r\n\r\nplain\r\n",
    ],
)
def test_a_message_in_memory_goes_out_as_the_same_bytes_as_from_a_file(content: bytes) -> None:
    async def scenario() -> list[bytes]:
        async with SMTPSink() as sink:
            client = agent()
            from_file = message("Q1", data=content)
            in_memory = OutboundMessage(
                queue_id="Q2",
                sender=from_file.sender,
                recipients=from_file.recipients,
                open_data=from_file.open_data,
                size=len(content),
                content=content,
            )
            await client.deliver(hop_to(sink), [from_file])
            await client.deliver(hop_to(sink), [in_memory])
            return [m.data for m in sink.messages]

    file_copy, memory_copy = run(scenario)
    assert memory_copy == file_copy
    assert file_copy.endswith(b"\r\n") and b"\n" not in file_copy.replace(b"\r\n", b"")
