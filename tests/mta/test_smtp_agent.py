"""The outbound SMTP agent against a real (local) SMTP sink on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, BinaryIO, TypeVar

import pytest
import trustme

from posthouse.mta.agents import smtp as smtp_module
from posthouse.mta.agents.smtp import OutboundMessage, RecipientResult, SMTPClientAgent
from posthouse.mta.dns import LookupFailed, Resolver
from posthouse.mta.errors import MailError
from posthouse.mta.routing import NextHop
from tests.mta.smtp_sink import Behaviour, FakeDNS, SMTPSink

TIMEOUT = 5.0
#: For a next hop that hangs: long enough that every step before the hang finishes in time
#: on a loaded machine (they take milliseconds), short enough to keep the test quick.
HANG_TIMEOUT = 3.0
T = TypeVar("T")


def message(
    queue_id: str,
    *recipients: str,
    data: bytes = b"Subject: hi\r\n\r\nhello\r\n",
    sender: str = "alice@here.test",
    **kwargs: Any,
) -> OutboundMessage:
    return OutboundMessage(
        queue_id=queue_id,
        sender=sender,
        recipients=recipients or ("bob@there.test",),
        open_data=lambda: io.BytesIO(data),
        size=len(data),
        **kwargs,
    )


def agent(**kwargs: object) -> SMTPClientAgent:
    options: dict[str, object] = {
        "hostname": "client.here.test",
        "resolver": Resolver(FakeDNS()),
        "timeout": TIMEOUT,
    }
    options.update(kwargs)
    return SMTPClientAgent(**options)  # type: ignore[arg-type]


def hop_to(sink: SMTPSink) -> NextHop:
    return NextHop("127.0.0.1", sink.port, use_mx=False, reason="static route")


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def errors(results: list[RecipientResult]) -> dict[str, MailError | None]:
    return {r.recipient: r.error for r in results}


def status_of(result: RecipientResult) -> str | None:
    return None if result.error is None else result.error.status


def all_temporary(results: dict[str, list[RecipientResult]]) -> bool:
    return all(r.error is not None and r.error.temporary for rs in results.values() for r in rs)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def mapping_connector(ports: dict[str, int]) -> smtp_module.Connector:
    """Maps the fake DNS's documentation addresses to 127.0.0.1 ports (never elsewhere)."""

    async def connect(
        address: str, port: int, timeout: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await smtp_module.open_tcp("127.0.0.1", ports[address], timeout)

    return connect


# -- delivery ---------------------------------------------------------------------------


def test_several_messages_share_one_connection() -> None:
    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink() as sink:
            batch = [
                message("Q1", "a@there.test", "b@there.test", data=b"one\r\n"),
                message("Q2", "c@there.test", data=b"two\r\n"),
                message("Q3", "d@there.test", data=b"three\r\n", sender=""),
            ]
            results = await agent().deliver(hop_to(sink), batch)
        return results, sink

    results, sink = run(scenario)
    assert results == {
        "Q1": [RecipientResult("a@there.test", None), RecipientResult("b@there.test", None)],
        "Q2": [RecipientResult("c@there.test", None)],
        "Q3": [RecipientResult("d@there.test", None)],
    }
    assert sink.connections == 1
    assert [(m.sender, m.recipients, m.data) for m in sink.messages] == [
        ("alice@here.test", ["a@there.test", "b@there.test"], b"one\r\n"),
        ("alice@here.test", ["c@there.test"], b"two\r\n"),
        ("", ["d@there.test"], b"three\r\n"),
    ]
    verbs = [c.split(" ")[0] for c in sink.commands]
    assert verbs.count("EHLO") == 1 and verbs.count("RSET") == 2 and verbs[-1] == "QUIT"
    assert sink.commands[0] == "EHLO client.here.test"
    assert sink.messages[0].mail_params == ("SIZE=5",)


def test_per_recipient_results() -> None:
    behaviour = Behaviour(
        rcpt_replies={
            "gone@there.test": "550 5.1.1 no such user",
            "full@there.test": "452 4.2.2 mailbox full",
            "plain@there.test": "553 not here",
        }
    )

    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink(behaviour) as sink:
            batch = [
                message("Q1", "ok@there.test", "gone@there.test", "full@there.test"),
                message("Q2", "gone@there.test", "plain@there.test"),  # nobody accepted
                message("Q3", "ok2@there.test"),
            ]
            results = await agent().deliver(hop_to(sink), batch)
        return results, sink

    results, sink = run(scenario)
    q1 = errors(results["Q1"])
    assert q1["ok@there.test"] is None
    gone, full = q1["gone@there.test"], q1["full@there.test"]
    assert gone is not None and gone.status == "5.1.1" and not gone.temporary
    assert "550 5.1.1 no such user" in gone.message and "RCPT TO" in gone.message
    assert full is not None and full.status == "4.2.2" and full.temporary
    q2 = errors(results["Q2"])
    plain = q2["plain@there.test"]
    assert plain is not None and plain.status == "5.0.0"
    assert errors(results["Q3"]) == {"ok2@there.test": None}
    assert sink.connections == 1
    assert [m.recipients for m in sink.messages] == [["ok@there.test"], ["ok2@there.test"]]


@pytest.mark.parametrize("pipelining", [True, False])
def test_mail_from_refused_applies_to_every_recipient(pipelining: bool) -> None:
    extensions = ("PIPELINING",) if pipelining else ()
    behaviour = Behaviour(mail_reply="553 5.7.1 sender rejected", extensions=extensions)

    async def scenario() -> dict[str, list[RecipientResult]]:
        async with SMTPSink(behaviour) as sink:
            return await agent().deliver(hop_to(sink), [message("Q1", "a@t.test", "b@t.test")])

    results = run(scenario)
    for result in results["Q1"]:
        assert result.error is not None and result.error.status == "5.7.1"


def test_pipelining_sends_the_envelope_in_one_go() -> None:
    # The sink answers MAIL/RCPT/RSET only once DATA has arrived: a lock-step client would hang.
    behaviour = Behaviour(hold_replies_until_data=True)

    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink(behaviour) as sink:
            batch = [message("Q1", "a@t.test", "b@t.test"), message("Q2", "c@t.test")]
            return await agent().deliver(hop_to(sink), batch), sink

    results, sink = run(scenario)
    assert all(r.error is None for rs in results.values() for r in rs)
    assert len(sink.messages) == 2


def test_without_pipelining_commands_go_one_at_a_time_and_helo_is_the_fallback() -> None:
    behaviour = Behaviour(ehlo_reply="502 5.5.1 EHLO not implemented")

    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink(behaviour) as sink:
            batch = [message("Q1", "a@t.test"), message("Q2", "b@t.test")]
            return await agent().deliver(hop_to(sink), batch), sink

    results, sink = run(scenario)
    assert all(r.error is None for rs in results.values() for r in rs)
    assert [c.split(" ")[0] for c in sink.commands] == [
        "EHLO",
        "HELO",
        "MAIL",
        "RCPT",
        "DATA",
        "RSET",
        "MAIL",
        "RCPT",
        "DATA",
        "QUIT",
    ]
    assert sink.messages[0].mail_params == ()  # no SIZE without ESMTP


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 64 * 1024])
def test_data_is_streamed_with_crlf_and_dot_stuffing(
    chunk_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smtp_module, "CHUNK_SIZE", chunk_size)
    raw = b".first\nsecond\r\n.\r\n..two\rthird\r\r\n\n.last"
    expected = b".first\r\nsecond\r\n.\r\n..two\r\nthird\r\n\r\n\r\n.last\r\n"

    async def scenario() -> SMTPSink:
        async with SMTPSink() as sink:
            await agent().deliver(hop_to(sink), [message("Q1", data=raw)])
            return sink

    sink = run(scenario)
    assert [m.data for m in sink.messages] == [expected]
    # and what went over the wire was stuffed: the sink unstuffs exactly one dot per line


def test_large_message_round_trip() -> None:
    line = b"x" * 998 + b"\r\n"
    data = line * 5000 + b".\r\n" + line  # ~5 MB, one line needing a dot

    async def scenario() -> SMTPSink:
        async with SMTPSink() as sink:
            await agent().deliver(hop_to(sink), [message("Q1", data=data)])
            return sink

    sink = run(scenario)
    assert [m.data for m in sink.messages] == [data]


def test_esmtp_parameters() -> None:
    async def scenario() -> SMTPSink:
        async with SMTPSink() as sink:
            batch = [
                message("Q1", body_8bit=True),
                message("Q2", "b\u00e9b\u00e9@there.test", smtputf8=True),
            ]
            results = await agent().deliver(hop_to(sink), batch)
            assert all(r.error is None for rs in results.values() for r in rs)
            return sink

    sink = run(scenario)
    params = [m.mail_params for m in sink.messages]
    assert params[0][1:] == ("BODY=8BITMIME",)
    assert params[1][1:] == ("SMTPUTF8",)


@pytest.mark.parametrize(
    ("extensions", "kwargs", "status"),
    [
        (("SIZE 10",), {}, "5.3.4"),
        ((), {"body_8bit": True}, "5.6.3"),
        (("8BITMIME",), {"smtputf8": True}, "5.6.7"),
    ],
)
def test_messages_the_next_hop_cannot_take_fail_permanently_without_being_sent(
    extensions: tuple[str, ...], kwargs: dict[str, Any], status: str
) -> None:
    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink(Behaviour(extensions=extensions)) as sink:
            batch = [message("Q1", "a@t.test", **kwargs), message("Q2", data=b"ok\r\n")]
            return await agent().deliver(hop_to(sink), batch), sink

    results, sink = run(scenario)
    error = results["Q1"][0].error
    assert error is not None and error.status == status and not error.temporary
    assert results["Q2"][0].error is None
    assert [m.data for m in sink.messages] == [b"ok\r\n"]


def test_bad_addresses_are_refused_before_connecting() -> None:
    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink() as sink:
            batch = [
                message("Q1", "ok@t.test", "evil@t.test>\r\nRSET"),
                message("Q2", sender="x y@t.test"),
            ]
            return await agent().deliver(hop_to(sink), batch), sink

    results, sink = run(scenario)
    q1 = errors(results["Q1"])
    assert q1["ok@t.test"] is None
    assert q1["evil@t.test>\r\nRSET"] is not None
    assert q1["evil@t.test>\r\nRSET"].status == "5.1.3"
    assert results["Q2"][0].error is not None and results["Q2"][0].error.status == "5.1.7"
    assert [m.recipients for m in sink.messages] == [["ok@t.test"]]


def test_unreadable_message_data_is_temporary_and_the_rest_is_delivered() -> None:
    def broken() -> BinaryIO:
        raise OSError("data file vanished")

    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink() as sink:
            bad = OutboundMessage("Q1", "a@h.test", ("b@t.test",), broken, 10)
            return await agent().deliver(hop_to(sink), [bad, message("Q2")]), sink

    results, sink = run(scenario)
    error = results["Q1"][0].error
    assert error is not None and error.status == "4.3.0"
    assert results["Q2"][0].error is None and len(sink.messages) == 1


# -- hosts, MX fallback, TLS ----------------------------------------------------------------


def test_second_mx_is_used_when_the_first_refuses_connections(refused_port: int) -> None:
    fake = FakeDNS(
        mx={"there.test": [(10, "mx1.there.test"), (20, "mx2.there.test")]},
        a={"mx1.there.test": ["192.0.2.1"], "mx2.there.test": ["192.0.2.2"]},
    )

    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink() as sink:
            connector = mapping_connector({"192.0.2.1": refused_port, "192.0.2.2": sink.port})
            client = agent(resolver=Resolver(fake), connector=connector)
            hop = NextHop("there.test", 25, use_mx=True, reason="MX")
            return await client.deliver(hop, [message("Q1"), message("Q2")]), sink

    results, sink = run(scenario)
    assert all(r.error is None for rs in results.values() for r in rs)
    assert sink.connections == 1 and len(sink.messages) == 2


def test_next_host_after_a_421_greeting() -> None:
    fake = FakeDNS(
        mx={"there.test": [(10, "busy.there.test"), (20, "ok.there.test")]},
        a={"busy.there.test": ["192.0.2.1"], "ok.there.test": ["192.0.2.2"]},
    )

    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink, SMTPSink]:
        async with (
            SMTPSink(Behaviour(greeting="421 4.3.2 too busy")) as busy,
            SMTPSink() as ok,
        ):
            connector = mapping_connector({"192.0.2.1": busy.port, "192.0.2.2": ok.port})
            client = agent(resolver=Resolver(fake), connector=connector)
            results = await client.deliver(NextHop("there.test"), [message("Q1")])
            return results, busy, ok

    results, busy, ok = run(scenario)
    assert results["Q1"][0].error is None
    assert busy.connections == 1 and ok.connections == 1 and len(ok.messages) == 1


def test_every_host_refusing_is_temporary(refused_port: int) -> None:
    fake = FakeDNS(mx={"there.test": [(10, "mx1.there.test")]}, a={"mx1.there.test": ["192.0.2.1"]})

    async def scenario() -> dict[str, list[RecipientResult]]:
        connector = mapping_connector({"192.0.2.1": refused_port})
        client = agent(resolver=Resolver(fake), connector=connector)
        return await client.deliver(NextHop("there.test"), [message("Q1", "a@t.test", "b@t.test")])

    results = run(scenario)
    assert all_temporary(results)
    assert status_of(results["Q1"][0]) == "4.4.1"


def test_a_permanent_greeting_refusal_is_permanent() -> None:
    async def scenario() -> dict[str, list[RecipientResult]]:
        async with SMTPSink(Behaviour(greeting="554 5.7.1 go away")) as sink:
            return await agent().deliver(hop_to(sink), [message("Q1")])

    error = run(scenario)["Q1"][0].error
    assert error is not None and error.status == "5.7.1" and not error.temporary


@pytest.mark.parametrize(
    ("dns_error", "status"),
    [(LookupFailed("SERVFAIL"), "4.4.3"), (None, "5.1.2")],
)
def test_dns_failures_become_results(dns_error: Exception | None, status: str) -> None:
    fake = FakeDNS(mx={"there.test": dns_error} if dns_error else {})

    async def scenario() -> dict[str, list[RecipientResult]]:
        client = agent(resolver=Resolver(fake))
        return await client.deliver(NextHop("there.test"), [message("Q1", "a@t", "b@t")])

    results = run(scenario)
    assert [status_of(r) for r in results["Q1"]] == [status, status]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


def test_starttls_is_used_when_offered(ca: trustme.CA) -> None:
    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink(Behaviour(tls_context=server_context(ca))) as sink:
            client = agent(tls_context=client_context(ca))
            return await client.deliver(hop_to(sink), [message("Q1"), message("Q2")]), sink

    results, sink = run(scenario)
    assert all(r.error is None for rs in results.values() for r in rs)
    assert [m.tls for m in sink.messages] == [True, True]
    assert sink.connections == 1
    assert [c.split(" ")[0] for c in sink.commands][:3] == ["EHLO", "STARTTLS", "EHLO"]


def test_default_context_does_not_verify(ca: trustme.CA) -> None:
    async def scenario() -> SMTPSink:
        async with SMTPSink(Behaviour(tls_context=server_context(ca))) as sink:
            await agent().deliver(hop_to(sink), [message("Q1")])
            return sink

    sink = run(scenario)
    assert [m.tls for m in sink.messages] == [True]


def test_failed_handshake_is_retried_without_tls(ca: trustme.CA) -> None:
    other_ca = trustme.CA()

    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink(Behaviour(tls_context=server_context(ca))) as sink:
            client = agent(tls_context=client_context(other_ca))  # will not trust the sink
            return await client.deliver(hop_to(sink), [message("Q1")]), sink

    results, sink = run(scenario)
    assert results["Q1"][0].error is None
    assert sink.connections == 2
    assert [m.tls for m in sink.messages] == [False]
    assert "STARTTLS" not in sink.commands[sink.commands.index("STARTTLS") + 1 :]


def test_tls_none_never_starts_tls(ca: trustme.CA) -> None:
    async def scenario() -> SMTPSink:
        async with SMTPSink(Behaviour(tls_context=server_context(ca))) as sink:
            await agent(tls="none").deliver(hop_to(sink), [message("Q1")])
            return sink

    sink = run(scenario)
    assert "STARTTLS" not in sink.commands
    assert [m.tls for m in sink.messages] == [False]


# -- failure modes: temporary, never "sent" -----------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (Behaviour(hang_after_data=True), "4.4.2"),
        (Behaviour(garbage_after="MAIL"), "4.5.0"),
        (Behaviour(garbage_after="RCPT", extensions=()), "4.5.0"),
        (Behaviour(garbage_after="."), "4.4.2"),  # after the dot: status unknown
        (Behaviour(close_mid_data=True), "4.4.2"),
        (Behaviour(data_reply="451 4.3.0 disk trouble"), "4.3.0"),
        (Behaviour(data_reply="421 4.3.2 shutting down"), "4.4.2"),
        (Behaviour(greeting="421 4.3.2 busy"), "4.4.2"),
        (Behaviour(ehlo_reply="421 4.3.2 busy"), "4.4.2"),
        (Behaviour(greeting="this is no greeting"), "4.5.0"),
    ],
)
def test_failures_are_temporary_and_nothing_is_reported_sent(
    behaviour: Behaviour, status: str
) -> None:
    async def scenario() -> dict[str, list[RecipientResult]]:
        async with SMTPSink(behaviour) as sink:
            client = agent(timeout=HANG_TIMEOUT if behaviour.hang_after_data else TIMEOUT)
            batch = [message("Q1", "a@t.test", "b@t.test"), message("Q2", "c@t.test")]
            return await client.deliver(hop_to(sink), batch)

    results = run(scenario)
    assert set(results) == {"Q1", "Q2"}
    assert all_temporary(results)
    assert status_of(results["Q1"][0]) == status


def test_after_a_timeout_on_the_dot_later_messages_are_still_tried_elsewhere(
    refused_port: int,
) -> None:
    # mx1 swallows the first message and never answers; Q2 must not be lost with it.
    fake = FakeDNS(
        mx={"there.test": [(10, "mx1.there.test"), (20, "mx2.there.test")]},
        a={"mx1.there.test": ["192.0.2.1"], "mx2.there.test": ["192.0.2.2"]},
    )

    async def scenario() -> tuple[dict[str, list[RecipientResult]], SMTPSink]:
        async with SMTPSink(Behaviour(hang_after_data=True)) as hang, SMTPSink() as ok:
            connector = mapping_connector({"192.0.2.1": hang.port, "192.0.2.2": ok.port})
            client = agent(resolver=Resolver(fake), connector=connector, timeout=HANG_TIMEOUT)
            results = await client.deliver(NextHop("there.test"), [message("Q1"), message("Q2")])
            return results, ok

    results, ok = run(scenario)
    first = results["Q1"][0].error
    assert first is not None and first.temporary and "status unknown" in first.message
    assert results["Q2"][0].error is None
    assert [m.connection for m in ok.messages] == [1] and len(ok.messages) == 1


@pytest.mark.parametrize("limit", [1, 2])
def test_connection_limit_per_destination(limit: int) -> None:
    async def scenario() -> tuple[int, SMTPSink, SMTPClientAgent]:
        async with SMTPSink() as sink:
            client = agent(max_connections_per_destination=limit)
            active = 0
            peak = 0
            original = client.connector

            async def counting(
                address: str, port: int, timeout: float
            ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
                nonlocal active, peak
                active += 1
                peak = max(peak, active)
                reader, writer = await original(address, port, timeout)
                closer = writer.close

                def close() -> None:
                    nonlocal active
                    active -= 1
                    closer()

                writer.close = close  # type: ignore[method-assign]
                return reader, writer

            client.connector = counting
            hop = hop_to(sink)
            await asyncio.gather(*(client.deliver(hop, [message(f"Q{i}")]) for i in range(4)))
            return peak, sink, client

    peak, sink, client = run(scenario)
    assert peak == limit  # four deliveries start at once; only `limit` connect at a time
    assert sink.connections == 4 and len(sink.messages) == 4
    assert client._limits == {}
