"""The store delivery agent and the decision that sends IMAP-type users' mail to it."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from posthouse.mta.agents.mbox import MailboxWriter, SpoolMailbox
from posthouse.mta.agents.store import StoreDelivery, StoreMailbox, store_error
from posthouse.mta.agents.transaction import MessageBody, MessageEnvelope
from posthouse.mta.destinations import LocalMailbox, RemoteAddress
from posthouse.mta.direct import DirectDelivery
from posthouse.mta.errors import MailError
from posthouse.mta.expand import Expander
from posthouse.mta.local_mail import LocalMail
from posthouse.mta.queue.control_file import Envelope, RecipientState
from posthouse.server.imap.views import prepared
from posthouse.store.errors import NotPermitted, OverQuota, StoreUnavailable
from posthouse.store.mbox.locking import LockMethod, LockSettings
from posthouse.store.names import INBOX
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.e2e.conftest import mbox_messages
from tests.mta.file_sources import NO_FILES
from tests.store.imap_helpers import open_store, run

CONTENT = b"From: carol@there.test\nSubject: hello\n\nline one\nline two\n"
STORED = b"Return-Path: <carol@there.test>\r\n" + CONTENT.replace(b"\n", b"\r\n")


def envelope(size: int = len(CONTENT)) -> MessageEnvelope:
    return MessageEnvelope("1k14aaaaaaaaaaaa", "carol@there.test", time.time(), size)


def agent_for(store: MailStore) -> StoreDelivery:
    return StoreDelivery(lambda: store, prepared)


def inbox(store: MailStore, user: str, mailbox: str = INBOX) -> list[bytes]:
    async def read() -> list[bytes]:
        session = store.session(user)
        opened = await session.select(mailbox, read_only=True)
        return [await session.read_message(opened, uid) for uid in opened.snapshot.uids]

    return run(read())


def deliver(
    store: MailStore, boxes: list[StoreMailbox], body: MessageBody
) -> list[MailError | None]:
    async def main() -> list[MailError | None]:
        transaction = agent_for(store).start(envelope())
        for box in boxes:
            transaction.add_recipient(box)
        transaction.body(body)
        return [result.error for result in await transaction.commit()]

    return run(main())


def test_one_transaction_appends_the_message_to_every_recipients_inbox(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("alice"))
    run(store.create_user("bob"))
    errors = deliver(
        store, [StoreMailbox("alice"), StoreMailbox("bob")], MessageBody(io.BytesIO, CONTENT)
    )
    assert errors == [None, None]
    assert inbox(store, "alice") == [STORED]
    assert inbox(store, "bob") == [STORED]

    async def cached() -> bytes | None:
        session = store.session("bob")
        opened = await session.select(INBOX, read_only=True)
        [meta] = await session.fetch(opened, UidSet.of(opened.snapshot.uids), cached=True)
        return meta.envelope

    envelope_blob = run(cached())
    assert envelope_blob is not None and b'"hello"' in envelope_blob


def test_a_streamed_body_is_read_from_its_file(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("alice"))
    errors = deliver(store, [StoreMailbox("alice")], MessageBody(lambda: io.BytesIO(CONTENT)))
    assert errors == [None]
    assert inbox(store, "alice") == [STORED]


def test_an_unknown_mailbox_fails_for_good_and_the_others_still_get_the_message(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    run(store.create_user("alice"))
    errors = deliver(
        store, [StoreMailbox("nobody"), StoreMailbox("alice")], MessageBody(io.BytesIO, CONTENT)
    )
    assert errors[1] is None
    assert errors[0] is not None and errors[0].status == "5.1.1"
    assert inbox(store, "alice") == [STORED]


def test_a_folder_that_allows_posting_gets_the_message_else_the_inbox(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("alice"))
    session = store.session("alice")
    run(session.create("INBOX.lists"))
    run(session.create("INBOX.private"))
    run(store.backend.set_acl("user.alice.lists", "alice\tlrswipkxtea\tanyone\tp\t"))
    body = MessageBody(io.BytesIO, CONTENT)
    assert deliver(store, [StoreMailbox("alice", "lists")], body) == [None]
    assert deliver(store, [StoreMailbox("alice", "private")], body) == [None]
    assert deliver(store, [StoreMailbox("alice", "no..such")], body) == [None]
    assert inbox(store, "alice", "INBOX.lists") == [STORED]
    assert inbox(store, "alice", "INBOX.private") == []
    assert inbox(store, "alice") == [STORED, STORED]


def test_over_quota_is_a_temporary_failure(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("alice"))
    run(store.backend.set_quota("user.alice", 0))
    body = MessageBody(io.BytesIO, CONTENT)
    assert deliver(store, [StoreMailbox("alice")], body) == [None]  # not over when it starts
    [error] = deliver(store, [StoreMailbox("alice")], MessageBody(io.BytesIO, CONTENT))
    assert error is not None and error.status == "4.2.2" and error.temporary
    assert len(inbox(store, "alice")) == 1


def test_a_message_over_the_stores_limit_is_refused_for_good(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    run(store.create_user("alice"))
    store.max_message_size = 100
    body = MessageBody(io.BytesIO, CONTENT + b"x" * 100)
    [error] = deliver(store, [StoreMailbox("alice")], body)
    assert error is not None and error.status == "5.3.4"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotPermitted("no p right"), "5.7.1"),
        (OverQuota("over"), "4.2.2"),
        (StoreUnavailable("disk full"), "4.3.0"),
        (OSError(5, "Input/output error"), "4.3.0"),
        (RuntimeError("bug"), "4.3.0"),
    ],
)
def test_store_errors_map_to_rfc3463_statuses(error: Exception, status: str) -> None:
    assert store_error("alice", error).status == status


def test_the_decision_follows_the_service_type(tmp_path: Path) -> None:
    decide = LocalMail(tmp_path, uses_store={"alice"}.__contains__)
    assert decide.target("alice") == StoreMailbox("alice")
    assert decide.target("alice+Lists.Work") == StoreMailbox("alice", "Lists.Work")
    assert decide.target("bob") == SpoolMailbox("bob", tmp_path / "bob")
    assert decide.target("bob+lists") == SpoolMailbox("bob", tmp_path / "bob")
    relayed = LocalMail(tmp_path, "relay.test", uses_store={"alice"}.__contains__)
    assert relayed.target("alice") == RemoteAddress("alice@relay.test")


def test_user_plus_detail_expands_to_the_users_mailbox_with_the_detail() -> None:
    expander = Expander(
        lookup_alias={"team+x": ("bob",)}.get,
        is_local_domain=lambda d: d in ("", "here.test"),
        user_exists={"alice", "bob"}.__contains__,
        files=NO_FILES,
    )
    [delivery] = expander.expand("<Alice+Lists@here.test>").deliveries
    assert delivery.destination == LocalMailbox("alice+Lists")
    assert expander.is_deliverable("alice+Lists@here.test")
    assert not expander.is_deliverable("nobody+lists@here.test")
    assert not expander.is_deliverable("alice+@here.test")
    assert expander.expand("nobody+lists@here.test").errors
    [aliased] = expander.expand("team+x@here.test").deliveries  # an alias of that name wins
    assert aliased.destination == LocalMailbox("bob")


def test_direct_delivery_sends_store_users_to_the_store_and_others_to_their_spool(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    run(store.create_user("alice"))
    spool = tmp_path / "spool"
    spool.mkdir()
    expander = Expander(
        lookup_alias={}.get,
        is_local_domain=lambda d: d in ("", "here.test"),
        user_exists={"alice", "bob"}.__contains__,
        files=NO_FILES,
    )
    writer = MailboxWriter(locking=LockSettings(LockMethod.LOCKF, timeout=30.0, stale_after=60.0))
    direct = DirectDelivery(
        expander=expander,
        writer=writer,
        local_mail=LocalMail(spool, uses_store={"alice"}.__contains__),
        store=agent_for(store),
    )
    recipients = ["alice@here.test", "bob@here.test"]
    queued = Envelope(
        queue_id="1k14aaaaaaaaaaab",
        sender="carol@there.test",
        recipients=[RecipientState(r) for r in recipients],
        received_at=time.time(),
        size=len(CONTENT),
    )
    crlf = CONTENT.replace(b"\n", b"\r\n")
    outcome = run(direct.attempt(recipients, queued, crlf, time.time() + 60))
    assert type(outcome).__name__ == "Delivered"
    assert inbox(store, "alice") == [STORED]
    assert mbox_messages(spool / "bob") == [b"Return-Path: <carol@there.test>\n" + CONTENT]
