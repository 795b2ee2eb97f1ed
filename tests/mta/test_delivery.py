"""Local delivery batches: expansion recorded once, partial failures retried, bounces."""

from __future__ import annotations

import email
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.mta.agents.smtp import SMTPClientAgent
from posthouse.mta.bounce import BounceMaker
from posthouse.mta.delivery import MailboxSettings, QueueDelivery, RetryPolicy
from posthouse.mta.dns import Resolver
from posthouse.mta.expand import Expander
from posthouse.mta.pseudodomains import AddressMapper
from posthouse.mta.queue.store import QueueStore
from posthouse.mta.routing import RoutingSettings
from posthouse.mta.transport import RemoteTransport
from posthouse.store.mbox.locking import LockMethod, LockSettings
from tests.e2e.conftest import mbox_messages
from tests.mta.file_sources import NO_FILES, RUN_AS_SELF
from tests.mta.smtp_sink import FakeDNS


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class World:
    """A queue, an expander over a dict of aliases, and local delivery."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.spool = tmp_path / "spool"
        self.aliases: dict[str, tuple[str, ...]] = {}
        self.users = {"alice", "bob", "postmaster"}
        self.store = QueueStore(tmp_path / "queue")
        self.clock = Clock()
        self.expander = Expander(
            lookup_alias=self.aliases.get,
            is_local_domain=lambda d: d in ("", "example.test"),
            user_exists=self.users.__contains__,
            files=NO_FILES,
        )
        self.bounces = BounceMaker(self.store, hostname="mail.example.test")
        self.delivery = QueueDelivery(
            store=self.store,
            expander=self.expander,
            mailboxes=MailboxSettings(self.spool, LockSettings(LockMethod.LOCKFILE, timeout=0.2)),
            retry=RetryPolicy(first=60, maximum=600, lifetime=3600),
            on_bounce=self.bounces.bounce,
            on_delay=self.bounces.delay_warning,
            warn_after=600,
            clock=self.clock,
            runner=RUN_AS_SELF,
        )

    def queue(self, sender: str, recipients: list[str], body: bytes = b"hi\r\n") -> str:
        message = self.store.new_message(sender, recipients)
        message.write(b"Subject: test\r\nMessage-ID: <m@x>\r\n\r\n" + body)
        return message.commit_blocking()

    def mailbox(self, user: str) -> list[bytes]:
        return mbox_messages(self.spool / user)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.store.close()


def test_alias_list_delivers_each_mailbox_once_and_leaves_the_queue(world: World) -> None:
    world.aliases["team"] = ("alice", "bob", "alice")
    queue_id = world.queue("s@remote.test", ["team@example.test", "bob@example.test"])
    (outcome,) = world.delivery.run_batch([queue_id])
    assert outcome.finished and not outcome.failures
    assert len(world.mailbox("alice")) == 1
    assert len(world.mailbox("bob")) == 1  # expanded twice, delivered once
    assert b"Return-Path: <s@remote.test>" in world.mailbox("alice")[0]
    assert list(world.store.list_entries()) == []


def test_locked_mailbox_defers_only_that_destination(world: World) -> None:
    world.spool.mkdir(parents=True)
    lock = world.spool / "bob.lock"
    lock.write_text("12345\n")  # a fresh lock held by someone else
    queue_id = world.queue("s@remote.test", ["alice@example.test", "bob@example.test"])
    (outcome,) = world.delivery.run_batch([queue_id])
    assert not outcome.finished
    assert outcome.next_attempt == world.clock.now + 60
    assert "bob@example.test" in outcome.failures
    assert outcome.failures["bob@example.test"].temporary
    envelope = world.store.load(queue_id)
    states = {r.address: r.status for r in envelope.recipients}
    assert states == {"alice": "sent", "bob": "deferred"}
    assert {r.kind for r in envelope.recipients} == {"local"}
    # Not due yet: a second run does nothing.
    world.delivery.run_batch([queue_id])
    assert world.mailbox("bob") == []
    # The lock goes away, the retry comes due: bob gets it, alice does not get it twice.
    os.unlink(lock)
    world.clock.now += 61
    (outcome,) = world.delivery.run_batch([queue_id])
    assert outcome.finished
    assert len(world.mailbox("alice")) == 1 and len(world.mailbox("bob")) == 1


def test_permanent_failure_bounces_to_sender(world: World, tmp_path: Path) -> None:
    world.aliases["broken"] = (f'|{sys.executable} -c "import sys; sys.exit(1)"',)
    world.aliases["sender"] = ("bob",)
    queue_id = world.queue("sender@example.test", ["broken@example.test"])
    (outcome,) = world.delivery.run_batch([queue_id])
    assert outcome.finished and outcome.bounced
    (entry,) = list(world.store.list_entries())
    assert entry.envelope is not None and entry.envelope.sender == ""
    world.delivery.run_batch([entry.queue_id])
    (dsn,) = world.mailbox("bob")
    report = email.message_from_bytes(dsn)
    assert report.get_content_type() == "multipart/report"
    parts = [part.get_content_type() for part in report.walk()]
    assert "message/delivery-status" in parts and "text/rfc822-headers" in parts
    assert b"Final-Recipient: rfc822; broken@example.test" in dsn
    assert b"Action: failed" in dsn and b"Status: 5.3.0" in dsn
    assert b"Subject: test" in dsn  # the original headers come back


def test_bounce_of_a_bounce_goes_to_postmaster_then_stops(world: World) -> None:
    world.aliases["broken"] = (f'|{sys.executable} -c "import sys; sys.exit(1)"',)
    queue_id = world.queue("", ["broken@example.test"])
    world.delivery.run_batch([queue_id])
    (entry,) = list(world.store.list_entries())
    assert entry.envelope is not None
    assert [r.address for r in entry.envelope.recipients] == ["postmaster"]
    assert entry.envelope.extra["bounce"] == "double"
    # If the postmaster's delivery fails for good as well, nothing more is generated.
    world.aliases["postmaster"] = world.aliases["broken"]
    world.delivery.run_batch([entry.queue_id])
    assert list(world.store.list_entries()) == []


def test_unknown_user_at_delivery_time_fails_permanently(world: World) -> None:
    queue_id = world.queue("s@remote.test", ["ghost@example.test", "alice@example.test"])
    (outcome,) = world.delivery.run_batch([queue_id])
    assert outcome.finished
    assert not outcome.failures["ghost@example.test"].temporary
    assert len(world.mailbox("alice")) == 1


def test_message_expires_after_lifetime(world: World) -> None:
    world.spool.mkdir(parents=True)
    (world.spool / "bob.lock").write_text("1\n")
    world.aliases["sender"] = ("alice",)
    queue_id = world.queue("sender@example.test", ["bob@example.test"])
    world.delivery.run_batch([queue_id])
    world.clock.now += 3601
    (lock := world.spool / "bob.lock").touch()
    (outcome,) = world.delivery.run_batch([queue_id])
    assert outcome.finished and outcome.bounced
    assert lock.exists()


def test_claimed_elsewhere_is_skipped(world: World) -> None:
    queue_id = world.queue("s@remote.test", ["alice@example.test"])
    other_process_view = QueueStore(world.store.directory)
    with other_process_view.claim(queue_id) as envelope:
        assert envelope is not None
        # flock excludes a second open file description, as another process would hold.
        (outcome,) = world.delivery.run_batch([queue_id])
    other_process_view.close()
    assert not outcome.claimed
    assert world.mailbox("alice") == []


def test_delay_warning_is_sent_once_after_the_configured_time(world: World) -> None:
    world.spool.mkdir(parents=True)
    (world.spool / "bob.lock").write_text("1\n")
    world.aliases["sender"] = ("alice",)
    queue_id = world.queue("sender@example.test", ["bob@example.test"])
    (outcome,) = world.delivery.run_batch([queue_id])
    assert outcome.created == []  # not waited long enough yet
    for _ in range(2):
        world.clock.now += 700
        (world.spool / "bob.lock").touch()
        (outcome,) = world.delivery.run_batch([queue_id], force=True)
        for created in outcome.created:
            world.delivery.run_batch([created])
    (warning,) = world.mailbox("alice")
    assert b"Subject: Delayed Mail (still being retried)" in warning
    assert b"Action: delayed" in warning
    assert b"Final-Recipient: rfc822; bob@example.test" in warning
    assert world.store.load(queue_id).extra["warned"] == "1"


def test_list_members_go_out_with_the_owner_sender_and_their_bounces_go_to_the_owner(
    world: World,
) -> None:
    """sendmail's owner-LIST rule (12.9): the list's copy has envelope sender owner-LIST, so
    its Return-Path and the DSN for a member that fails name the owner, not the author."""
    world.aliases["proj"] = ("alice", "broken", "ghost")
    world.aliases["owner-proj"] = ("bob",)
    world.aliases["broken"] = (f'|{sys.executable} -c "import sys; sys.exit(1)"',)
    world.aliases["author"] = ("postmaster",)
    queue_id = world.queue("author@example.test", ["proj@example.test"])
    (outcome,) = world.delivery.run_batch([queue_id])
    assert outcome.finished and not outcome.bounced  # nothing of the author's failed
    (copy,) = outcome.created
    copy_outcome, *_ = world.delivery.run_batch([copy])
    assert copy_outcome.finished and len(copy_outcome.bounced) == 2
    (delivered,) = world.mailbox("alice")
    assert delivered.startswith(b"Return-Path: <owner-proj@example.test>\n")
    (dsn_id,) = copy_outcome.created
    world.delivery.run_batch([dsn_id])
    (dsn,) = world.mailbox("bob")  # the owner is told, the author is not
    assert b"To: <owner-proj@example.test>" in dsn
    assert b"Status: 5.3.0" in dsn and b"User unknown" in dsn
    assert world.mailbox("postmaster") == []


def test_a_null_sender_message_keeps_its_null_sender_through_an_owned_list(world: World) -> None:
    world.aliases["proj"] = ("alice",)
    world.aliases["owner-proj"] = ("bob",)
    queue_id = world.queue("", ["proj@example.test"])
    (outcome,) = world.delivery.run_batch([queue_id])
    assert outcome.finished and outcome.created == []
    (delivered,) = world.mailbox("alice")
    assert delivered.startswith(b"Return-Path: <>\n")


def test_two_destinations_ending_in_one_mailbox_get_one_copy_and_both_settle(
    world: World,
) -> None:
    """A remote address that routes back to this host (a host name that is not a mail
    domain) and the local mailbox it names are one mailbox: one copy, both recipients done."""
    transport = RemoteTransport(
        agent=SMTPClientAgent(hostname="mail.example.test", resolver=Resolver(FakeDNS())),
        routing=RoutingSettings(
            local_domains=frozenset({"example.test"}),
            host_names=frozenset({"mail.example.test"}),
        ),
        mapper=AddressMapper([]),
        masquerade=None,
        local_domains=["example.test"],
        default_domain="example.test",
    )
    delivery = QueueDelivery(
        store=world.store,
        expander=world.expander,
        mailboxes=MailboxSettings(world.spool, LockSettings(LockMethod.LOCKFILE, timeout=0.2)),
        retry=RetryPolicy(),
        transport=transport,
        clock=world.clock,
    )
    queue_id = world.queue("s@remote.test", ["alice@example.test", "alice@mail.example.test"])
    (outcome,) = delivery.run_batch([queue_id])
    assert outcome.finished and not outcome.failures
    assert len(world.mailbox("alice")) == 1
