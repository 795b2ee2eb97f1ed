"""Typed destinations: nothing an address says can make it a program, a file or a mailbox
escape; the kind survives the queue file; legacy queue tokens are never interpreted.

Property tests (hypothesis) and a fuzz run over the address parser, the expander and the
queue-file reader check that no input yields a program or file destination unless it came
from a trusted file (the aliases table here).
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from posthouse.mta.address import (
    is_rfc5321_local,
    join_address,
    quote_local,
    split_address,
    unquote_local,
)
from posthouse.mta.bounce import BounceMaker
from posthouse.mta.delivery import MailboxSettings, QueueDelivery, RetryPolicy
from posthouse.mta.destinations import (
    FileDestination,
    LocalMailbox,
    ProgramDestination,
    RemoteAddress,
    legacy_token,
)
from posthouse.mta.expand import Expander
from posthouse.mta.queue.control_file import (
    CorruptControlFile,
    Envelope,
    RecipientState,
    envelope_from_json,
    envelope_to_json,
)
from posthouse.mta.queue.store import QueueStore
from posthouse.protocols.smtp.parse import AddressSyntaxError, parse_path
from posthouse.store.mbox.locking import LockMethod, LockSettings
from tests.e2e.conftest import mbox_messages
from tests.mta.file_sources import NO_FILES, RUN_AS_SELF

# Generous deadlines: these run on a loaded 2-core machine.
LOADED = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])

HOSTILE = [
    '"|touch /tmp/x"@evil.example',
    '"|id>/SOMEWHERE/ran;#"@evil.example',
    '"/etc/passwd"@evil.example',
    '"\\\\name"@evil.example',
    '":include:/etc/passwd"@evil.example',
    '"|cmd"@EVIL.Example.',
]

PROGRAM_OR_FILE = (ProgramDestination, FileDestination)


def expander(aliases: dict[str, tuple[str, ...]] | None = None) -> Expander:
    table = aliases if aliases is not None else {}
    return Expander(
        lookup_alias=table.get,
        is_local_domain=lambda d: d in ("", "example.test"),
        user_exists={"alice", "bob", "postmaster"}.__contains__,
        files=NO_FILES,
    )


def through_queue(state: RecipientState) -> RecipientState:
    """``state`` written to a control file and read back, by both parser paths."""
    envelope = Envelope("q1", "s@x.test", [state], 0.0, 0)
    line = envelope_to_json(envelope)
    fast = envelope_from_json(line).recipients[0]
    slow = envelope_from_json(json.dumps(json.loads(line), indent=1).encode()).recipients[0]
    assert fast == slow
    return fast


# -- quoting ------------------------------------------------------------------------------


@LOADED
@given(st.text(max_size=40))
def test_quote_local_round_trips_and_is_never_a_bare_program_or_file(local: str) -> None:
    quoted = quote_local(local)
    assert unquote_local(quoted) == local
    assert not quoted.startswith(("|", "/", "\\"))
    if all(32 <= ord(ch) < 127 or ord(ch) > 127 for ch in local):
        assert is_rfc5321_local(quoted)


def test_quote_local_keeps_dot_strings_plain() -> None:
    assert quote_local("alice.smith") == "alice.smith"
    assert quote_local("a b") == '"a b"'
    assert quote_local("|cmd") == '"|cmd"'
    assert quote_local("/path") == '"/path"'
    assert quote_local('say "hi"\\') == '"say \\"hi\\"\\\\"'


# -- expansion ------------------------------------------------------------------------------


@pytest.mark.parametrize("address", HOSTILE)
def test_hostile_quoted_local_parts_stay_remote_addresses(address: str) -> None:
    result = expander().expand(address)
    assert not result.errors
    (delivery,) = result.deliveries
    assert isinstance(delivery.destination, RemoteAddress)
    local, domain = split_address(address)
    assert delivery.destination.local_part == unquote_local(local)
    assert delivery.destination.address == join_address(unquote_local(local), domain)
    assert through_queue(RecipientState.expanded(delivery.destination, address)).destination() == (
        delivery.destination
    )


@pytest.mark.parametrize(
    "address",
    ['"|touch /tmp/x"@example.test', '"/tmp/x"@example.test', '"\\\\bob"@example.test', "|x"],
)
def test_program_file_and_escape_forms_from_the_envelope_never_deliver(address: str) -> None:
    result = expander().expand(address)
    assert result.errors and all(e.permanent for e in result.errors)
    assert not result.deliveries


def test_only_the_aliases_file_makes_programs_and_files() -> None:
    aliases = {"prog": ("|/usr/bin/vacation", "/var/log/mail.copy", '"|x"@evil.example')}
    deliveries = {d.destination for d in expander(aliases).expand("prog").deliveries}
    assert deliveries == {
        ProgramDestination("/usr/bin/vacation", "prog", run_as=""),
        FileDestination("/var/log/mail.copy", "prog", run_as=""),
        RemoteAddress('"|x"@evil.example'),
    }


_ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
_dot_string = st.lists(st.text(_ATEXT, min_size=1, max_size=8), min_size=1, max_size=3).map(
    ".".join
)
_qchar = st.one_of(
    st.sampled_from([c for c in map(chr, range(32, 127)) if c not in '"\\']),
    st.sampled_from([chr(c) for c in range(32, 127)]).map(lambda c: "\\" + c),  # quoted-pair
)
_quoted_string = st.lists(_qchar, max_size=20).map(lambda parts: '"' + "".join(parts) + '"')
_domain = st.sampled_from(["evil.example", "Remote.TEST", "x.y.example", "[192.0.2.1]"])


@LOADED
@given(st.one_of(_dot_string, _quoted_string), _domain)
def test_any_address_the_smtp_parser_accepts_keeps_its_kind_and_address(
    local: str, domain: str
) -> None:
    try:
        parsed = parse_path(f"<{local}@{domain}>", null_allowed=False, postmaster_allowed=False)
    except AddressSyntaxError:
        assume(False)
        return
    result = expander().expand(parsed)
    (delivery,) = result.deliveries
    destination = delivery.destination
    assert isinstance(destination, RemoteAddress)
    assert destination.local_part == unquote_local(local)
    assert split_address(destination.address)[1] == domain.lower()
    # The form written is valid RFC 5321 and means the same mailbox.
    assert parse_path(f"<{destination.address}>", null_allowed=False, postmaster_allowed=False)
    stored = through_queue(RecipientState.expanded(destination, parsed))
    assert stored.kind == "remote"
    assert stored.destination() == destination


# -- fuzz: nothing untrusted becomes a program or a file -------------------------------------

_anything = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60
) | st.sampled_from(HOSTILE)


@LOADED
@given(_anything)
def test_fuzz_untrusted_recipients_never_expand_to_programs_or_files(text: str) -> None:
    aliases = {"list": ("alice", '"|x"@evil.example'), "bob": ("bob", "alice@remote.test")}
    result = expander(aliases).expand(text)
    for delivery in result.deliveries:
        assert not isinstance(delivery.destination, PROGRAM_OR_FILE)
        state = through_queue(RecipientState.expanded(delivery.destination, text))
        assert state.destination() == delivery.destination


@LOADED
@given(_anything, _anything, st.sampled_from(["pending", "deferred", "sent", "failed"]))
def test_fuzz_legacy_queue_tokens_are_never_interpreted(
    token: str, original: str, status: str
) -> None:
    doc = {
        "v": 1,
        "queue_id": "q1",
        "sender": "",
        "recipients": [{"address": token, "original": original, "status": status}],
        "received_at": 0,
        "size": 0,
    }
    (rcpt,) = envelope_from_json(json.dumps(doc).encode()).recipients
    assert rcpt.kind == "legacy"
    assert rcpt.destination() is None


@LOADED
@given(st.text(max_size=12), _anything, st.one_of(st.none(), _anything))
def test_fuzz_queue_reader_accepts_only_known_kinds(
    kind: str, address: str, original: str | None
) -> None:
    doc = {
        "v": 1,
        "queue_id": "q1",
        "sender": "",
        "recipients": [{"address": address, "original": original, "kind": kind}],
        "received_at": 0,
        "size": 0,
    }
    try:
        (rcpt,) = envelope_from_json(json.dumps(doc).encode()).recipients
    except CorruptControlFile:
        return
    assert rcpt.kind == kind
    if kind in ("file", "program"):
        assert original is not None  # only expansion writes these, always with an original
    elif kind not in ("remote", "local"):
        assert rcpt.destination() is None


def test_queue_reader_refuses_an_expanded_kind_without_its_original() -> None:
    state = RecipientState("|x", original=None, kind="program")
    with pytest.raises(CorruptControlFile, match="without its original"):
        envelope_from_json(envelope_to_json(Envelope("q1", "", [state], 0.0, 0)))


# -- delivery ---------------------------------------------------------------------------------


class World:
    """A queue and local delivery without a transport (remote mail stays deferred)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.spool = tmp / "spool"
        self.aliases: dict[str, tuple[str, ...]] = {}
        self.store = QueueStore(tmp / "queue")
        self.delivery = QueueDelivery(
            store=self.store,
            expander=expander(self.aliases),
            mailboxes=MailboxSettings(self.spool, LockSettings(LockMethod.LOCKF, timeout=5)),
            retry=RetryPolicy(first=60, maximum=600, lifetime=3600),
            on_bounce=BounceMaker(self.store, hostname="mail.example.test").bounce,
            runner=RUN_AS_SELF,
        )

    def queue(self, sender: str, recipients: list[str]) -> str:
        message = self.store.new_message(sender, recipients)
        message.write(b"Subject: test\r\n\r\nhi\r\n")
        return message.commit_blocking()

    def rewrite_as_legacy(self, queue_id: str, recipients: list[dict[str, object]]) -> None:
        """Replace the entry's recipients with ones in the layout older versions wrote."""
        path = self.store.path_for(queue_id, "qf")
        line, _, data = path.read_bytes().partition(b"\n")
        doc = json.loads(line)
        doc["recipients"] = recipients
        path.write_bytes(json.dumps(doc).encode() + b"\n" + data)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.store.close()


def test_bounce_to_a_quoted_program_sender_is_a_remote_recipient(world: World) -> None:
    marker = world.tmp / "ran"
    sender = f'"|touch {marker}"@evil.example'
    world.aliases["broken"] = ("nosuchuser",)
    (outcome,) = world.delivery.run_batch([world.queue(sender, ["broken@example.test"])])
    assert outcome.finished and outcome.created
    (dsn,) = outcome.created
    (second,) = world.delivery.run_batch([dsn], force=True)
    assert not second.finished  # no transport here: the remote bounce waits
    (rcpt,) = world.store.load(dsn).recipients
    assert (rcpt.kind, rcpt.address, rcpt.status) == ("remote", sender, "deferred")
    assert not marker.exists()
    assert not world.spool.exists() or not list(world.spool.iterdir())  # no mailbox made


def test_legacy_program_token_from_a_quoted_address_does_not_run(world: World) -> None:
    marker = world.tmp / "ran"
    original = f'"|touch {marker}"@evil.example'
    queue_id = world.queue("s@remote.test", [original])
    world.rewrite_as_legacy(
        queue_id,
        [{"address": f"|touch {marker}", "original": original, "status": "pending"}],
    )
    world.delivery.run_batch([queue_id], force=True)
    assert not marker.exists()
    (rcpt,) = world.store.load(queue_id).recipients
    assert (rcpt.kind, rcpt.address) == ("remote", original)


def test_legacy_mailbox_token_is_expanded_again_without_delivering_twice(world: World) -> None:
    world.aliases["team"] = ("alice", "bob")
    queue_id = world.queue("s@remote.test", ["team@example.test"])
    world.rewrite_as_legacy(
        queue_id,
        [
            {"address": "\\alice", "original": "team@example.test", "status": "sent"},
            {"address": "\\bob", "original": "team@example.test", "status": "deferred"},
            {"address": "\\carol@evil.example", "original": "x@evil.example", "status": "pending"},
        ],
    )
    world.delivery.run_batch([queue_id], force=True)
    assert mbox_messages(world.spool / "alice") == []  # an older version delivered it
    assert len(mbox_messages(world.spool / "bob")) == 1
    assert not (world.spool / "carol@evil.example").exists()
    kinds = {(r.kind, r.address) for r in world.store.load(queue_id).recipients}
    assert ("remote", "x@evil.example") in kinds


def test_legacy_program_from_an_alias_still_runs_after_the_upgrade(world: World) -> None:
    marker = world.tmp / "alias-ran"
    world.aliases["prog"] = (f"|touch {marker}",)
    queue_id = world.queue("s@remote.test", ["prog@example.test"])
    world.rewrite_as_legacy(
        queue_id,
        [{"address": f"|touch {marker}", "original": "prog@example.test", "status": "pending"}],
    )
    (outcome,) = world.delivery.run_batch([queue_id], force=True)
    assert outcome.finished and not outcome.failures
    assert marker.exists()


def test_legacy_token_notation() -> None:
    assert legacy_token(LocalMailbox("bob")) == "\\bob"
    assert legacy_token(ProgramDestination("cmd", "a")) == "|cmd"
    assert legacy_token(FileDestination("/f", "a")) == "/f"
    assert legacy_token(RemoteAddress('"a b"@x.test')) == "a b@x.test"
