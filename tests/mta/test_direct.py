"""Direct delivery: planning local and cut-through destinations, and what comes back."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from posthouse.mta.agents.mbox import MailboxWriter, SpoolMailbox
from posthouse.mta.agents.smtp import SMTPClientAgent
from posthouse.mta.destinations import RemoteAddress
from posthouse.mta.direct import CutThrough, DirectDelivery, LocalTarget
from posthouse.mta.dns import Resolver
from posthouse.mta.expand import Expander
from posthouse.mta.local_mail import LocalMail
from posthouse.mta.pseudodomains import AddressMapper, Pseudodomain
from posthouse.mta.queue.control_file import Envelope, RecipientState
from posthouse.mta.routing import RoutingSettings
from posthouse.mta.transport import RemoteTransport
from posthouse.store.mbox.locking import LockMethod, LockSettings
from tests.e2e.conftest import mbox_messages
from tests.mta.file_sources import NO_FILES
from tests.mta.smtp_sink import Behaviour, FakeDNS, SMTPSink

CONTENT = b"Received: by here\r\nSubject: hi\r\n\r\nhello\r\n"


def direct(
    tmp_path: Path, sink_port: int | None, *, aliases: dict[str, tuple[str, ...]] | None = None
) -> DirectDelivery:
    routes = {"there.test": f"127.0.0.1:{sink_port}"} if sink_port is not None else {}
    transport = RemoteTransport(
        agent=SMTPClientAgent(hostname="here.test", resolver=Resolver(FakeDNS()), timeout=5.0),
        routing=RoutingSettings(
            local_domains=frozenset({"here.test"}),
            static_routes=routes,
            host_names=frozenset({"here.test"}),
        ),
        mapper=AddressMapper(
            [Pseudodomain(protocol="uucp", name="UUCP", routing="direct", transport="/bin/true")]
        ),
        masquerade=None,
        local_domains=["here.test"],
        default_domain="here.test",
    )
    table = aliases or {}
    expander = Expander(
        lookup_alias=table.get,
        is_local_domain=lambda d: d in ("", "here.test"),
        user_exists={"alice", "bob"}.__contains__,
        files=NO_FILES,
    )
    writer = MailboxWriter(locking=LockSettings(LockMethod.LOCKF, timeout=30.0, stale_after=60.0))
    return DirectDelivery(
        expander=expander,
        writer=writer,
        local_mail=LocalMail(tmp_path),
        relay=CutThrough(transport, timeout=30.0, slot_wait=10.0),
    )


def envelope(*recipients: str) -> Envelope:
    return Envelope(
        queue_id="1k14aaaaaaaaaaaa",
        sender="alice@here.test",
        recipients=[RecipientState(r) for r in recipients],
        received_at=time.time(),
        size=len(CONTENT),
    )


def test_plan_covers_local_mailboxes_and_smtp_hops_once_each(tmp_path: Path) -> None:
    d = direct(tmp_path, 2525, aliases={"team": ("alice", "carol@there.test", "bob")})
    plan = d.plan(["team@here.test", "alice@here.test", "carol@there.test"])
    assert plan is not None
    assert plan.local == (
        LocalTarget("team@here.test", "alice", SpoolMailbox("alice", tmp_path / "alice")),
        LocalTarget("team@here.test", "bob", SpoolMailbox("bob", tmp_path / "bob")),
    )
    assert [(t.recipient, t.address, t.hop.port) for t in plan.remote] == [
        ("team@here.test", "carol@there.test", 2525)
    ]


@pytest.mark.parametrize(
    "recipient",
    [
        "nobody@here.test",  # unknown: the queue bounces it
        "user@host.UUCP",  # a gateway's transport program: the queue runs it
        "prog@here.test",  # a program alias
    ],
)
def test_plan_leaves_what_it_does_not_handle_to_the_queue(tmp_path: Path, recipient: str) -> None:
    d = direct(tmp_path, 2525, aliases={"prog": ("|/bin/cat",)})
    assert d.plan(["alice@here.test", recipient]) is None


def test_without_cut_through_remote_recipients_are_queued(tmp_path: Path) -> None:
    d = direct(tmp_path, 2525)
    d.relay = None
    assert d.plan(["carol@there.test"]) is None
    assert d.plan(["alice@here.test"]) is not None


def test_local_and_remote_destinations_get_the_message_before_deliver_returns(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with SMTPSink() as sink:
            d = direct(tmp_path, sink.port)
            plan = d.plan(["alice@here.test", "carol@there.test", "dave@there.test"])
            assert plan is not None
            failures = await d.deliver(plan, envelope(), CONTENT)
            assert failures == []
            (received,) = sink.messages
            assert received.recipients == ["carol@there.test", "dave@there.test"]
            assert received.data == CONTENT
            assert received.sender == "alice@here.test"
            (stored,) = mbox_messages(tmp_path / "alice")
            assert stored.endswith(CONTENT.replace(b"\r\n", b"\n"))

    asyncio.run(scenario())


def test_refusals_come_back_with_their_errors(tmp_path: Path) -> None:
    behaviour = Behaviour(
        rcpt_replies={
            "gone@there.test": "550 5.1.1 no such user",
            "later@there.test": "450 4.2.1 try later",
        }
    )

    async def scenario() -> None:
        async with SMTPSink(behaviour) as sink:
            d = direct(tmp_path, sink.port)
            plan = d.plan(["gone@there.test", "later@there.test", "ok@there.test"])
            assert plan is not None
            failures = await d.deliver(plan, envelope(), CONTENT)
            found = {f.recipient: f.error.status for f in failures if f.error is not None}
            assert found == {"gone@there.test": "5.1.1", "later@there.test": "4.2.1"}
            assert [m.recipients for m in sink.messages] == [["ok@there.test"]]

    asyncio.run(scenario())


def test_a_hop_that_is_down_is_tried_once_then_left_to_the_queue(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

        async def scenario() -> None:
            d = direct(tmp_path, port)
            plan = d.plan(["carol@there.test"])
            assert plan is not None
            (first,) = await d.deliver(plan, envelope(), CONTENT)
            assert first.error is not None and first.error.temporary
            assert first.destination == RemoteAddress("carol@there.test")
            (second,) = await d.deliver(plan, envelope(), CONTENT)
            assert second.error is None  # not tried: the hop failed a moment ago

        asyncio.run(scenario())


def test_hops_found_through_dns_are_left_to_the_queue_unless_any_hop(tmp_path: Path) -> None:
    d = direct(tmp_path, 2525)
    assert d.plan(["carol@elsewhere.test"]) is None  # MX lookup: queued first
    assert d.relay is not None
    d.relay = CutThrough(d.relay.transport, any_hop=True)
    plan = d.plan(["carol@elsewhere.test"])
    assert plan is not None and plan.remote[0].hop.host == "elsewhere.test"
    assert not plan.remote[0].hop.configured
