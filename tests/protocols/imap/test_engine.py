"""The IMAP engine fed bytes: its state table, logins, literals, IDLE, COMPRESS, and the
selected mailbox's rule that no EXPUNGE is sent during FETCH/STORE/SEARCH (RFC 3501 §7.4.1)."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthouse.protocols.imap import events, seqset
from posthouse.protocols.imap.engine import (
    NEED_DATA,
    PAUSED,
    TABLE,
    IMAPEngine,
    IMAPSettings,
    State,
)
from posthouse.protocols.imap.errors import CommandError
from posthouse.protocols.imap.selected import FlagUpdate, SelectedMailbox


class Driver:
    """Feeds an engine and answers its decisions the way a trivial server would."""

    def __init__(self, **options: Any) -> None:
        self.engine = IMAPEngine(IMAPSettings(**options))
        self.events: list[object] = []
        self.output = bytearray(self.engine.data_to_send())

    def feed(self, data: bytes, *, bytewise: bool = False) -> Driver:
        pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
        for piece in pieces:
            self.engine.receive_data(piece)
            self.pump()
        return self

    def pump(self) -> None:
        engine = self.engine
        while True:
            event = engine.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            self.events.append(event)
            match event:
                case events.LoginAttempt(password=password):
                    if password == "secret":
                        engine.accept_login(event.user)
                    else:
                        engine.reject_login("bad password")
                case events.StartTLS():
                    engine.reject_starttls("no certificate")
                case events.Run(command):
                    if command.name == "SELECT":
                        engine.select(
                            SelectedMailbox(
                                "INBOX",
                                [1, 2, 3],
                                read_only=False,
                                uidvalidity=7,
                                highestmodseq=1,
                                recent_after=3,
                            )
                        )
                    engine.finish("OK", f"{command.name} done")
                case events.IdleDone():
                    engine.finish("OK", "IDLE terminated")
        self.output += engine.data_to_send()

    def take(self) -> bytes:
        data = bytes(self.output)
        self.output.clear()
        return data


def test_greeting_and_capability_before_login() -> None:
    driver = Driver(plaintext_login_allowed=True)
    greeting = driver.take()
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    driver.feed(b"a1 CAPABILITY\r\n")
    out = driver.take()
    assert out.startswith(b"* CAPABILITY IMAP4rev1 ")
    assert b"AUTH=PLAIN" in out and b"LOGINDISABLED" not in out
    assert out.endswith(b"a1 OK CAPABILITY completed\r\n")


def test_logindisabled_over_plain_text() -> None:
    driver = Driver(starttls_available=True)
    assert b"LOGINDISABLED" in driver.take()
    driver.feed(b"a LOGIN joe secret\r\nb STARTTLS\r\n")
    out = driver.take()
    assert b"a NO [PRIVACYREQUIRED]" in out
    assert b"b NO no certificate" in out
    assert driver.engine.state is State.NOT_AUTHENTICATED
    # A literal password is refused before it is sent: no "+" continuation.
    driver.feed(b"c LOGIN joe {6}\r\n")
    out = driver.take()
    assert not out.startswith(b"+") and b"c NO [PRIVACYREQUIRED]" in out
    refused = [e for e in driver.events if isinstance(e, events.PlaintextLoginRefused)]
    assert [e.command for e in refused] == ["LOGIN", "LOGIN"]


def test_login_with_a_literal_and_the_capabilities_in_the_ok() -> None:
    driver = Driver(plaintext_login_allowed=True)
    driver.take()
    driver.feed(b"a LOGIN joe {6}\r\n")
    assert driver.take() == b"+ Ready for literal data\r\n"
    driver.feed(b"secret\r\n")
    out = driver.take()
    assert out.startswith(b"a OK [CAPABILITY IMAP4rev1 ")
    assert b" UIDPLUS " in out and b"Logged in" in out
    assert driver.engine.state is State.AUTHENTICATED


def test_authenticate_plain_with_and_without_initial_response() -> None:
    token = base64.b64encode(b"\0joe\0secret")
    driver = Driver(plaintext_login_allowed=True)
    driver.take()
    driver.feed(b"a AUTHENTICATE PLAIN " + token + b"\r\n")
    assert driver.take().startswith(b"a OK [CAPABILITY")
    driver = Driver(plaintext_login_allowed=True)
    driver.take()
    driver.feed(b"b AUTHENTICATE PLAIN\r\n")
    assert driver.take() == b"+ \r\n"
    driver.feed(token + b"\r\n")
    assert driver.take().startswith(b"b OK [CAPABILITY")
    driver = Driver(plaintext_login_allowed=True)
    driver.take()
    driver.feed(b"c AUTHENTICATE LOGIN\r\n*\r\n")
    assert driver.take().endswith(b"c BAD Authentication cancelled\r\n")


def test_the_state_table_decides_what_is_legal() -> None:
    driver = Driver(plaintext_login_allowed=True)
    driver.take()
    driver.feed(b"a SELECT INBOX\r\nb FETCH 1 FLAGS\r\n")
    out = driver.take()
    assert b"a BAD SELECT is not allowed before logging in" in out
    assert b"b BAD FETCH is not allowed before logging in" in out
    assert not [e for e in driver.events if isinstance(e, events.Run)]
    driver.feed(b"c LOGIN joe secret\r\nd FETCH 1 FLAGS\r\ne LOGIN joe secret\r\n")
    out = driver.take()
    assert b"d BAD FETCH needs a selected mailbox" in out
    assert b"e BAD LOGIN is not allowed after logging in" in out
    driver.feed(b"f SELECT INBOX\r\ng FETCH 1 FLAGS\r\nh ENABLE CONDSTORE\r\n")
    out = driver.take()
    assert b"g OK FETCH done" in out
    assert b"h BAD ENABLE is only allowed before a mailbox is selected" in out
    assert driver.engine.state is State.SELECTED
    assert TABLE.verdict("FETCH", State.SELECTED) == "ok"
    assert TABLE.verdict("FETCH", State.AUTHENTICATED) == "out of sequence"


def test_a_literal_of_a_command_not_legal_now_is_declined() -> None:
    driver = Driver(plaintext_login_allowed=True)
    driver.take()
    driver.feed(b"a APPEND INBOX {5}\r\n")
    out = driver.take()
    assert out == b"a BAD APPEND is not allowed before logging in\r\n"
    driver.feed(b"b NOOP\r\n")
    assert driver.take() == b"b OK NOOP completed\r\n"


def test_enable_id_logout() -> None:
    driver = Driver(plaintext_login_allowed=True)
    driver.take()
    driver.feed(b"a LOGIN joe secret\r\nb ENABLE QRESYNC X-UNKNOWN\r\nc ID NIL\r\nd LOGOUT\r\n")
    out = driver.take()
    assert b"* ENABLED QRESYNC\r\nb OK" in out
    assert driver.engine.condstore and driver.engine.qresync
    assert b'* ID ("name" "posthouse")' in out
    assert out.endswith(b"* BYE Logging out\r\nd OK LOGOUT completed\r\n")
    assert driver.engine.closed
    assert isinstance(driver.events[-1], events.LoggedOut)


def test_idle_and_done() -> None:
    driver = Driver(plaintext_login_allowed=True)
    driver.take()
    driver.feed(b"a LOGIN joe secret\r\nb SELECT INBOX\r\nc IDLE\r\n")
    assert driver.take().endswith(b"+ idling\r\n")
    assert driver.engine.idling
    selected = driver.engine.selected
    assert selected is not None
    selected.changes([FlagUpdate(9, frozenset())], [2])
    driver.engine.announce()
    driver.pump()
    assert driver.take() == b"* 2 EXPUNGE\r\n* 3 EXISTS\r\n* 1 RECENT\r\n"
    driver.feed(b"DONE\r\nd NOOP\r\n")
    assert driver.take() == b"c OK IDLE terminated\r\nd OK NOOP done\r\n"


def test_compress_deflate_both_ways() -> None:
    driver = Driver(plaintext_login_allowed=True)
    driver.take()
    driver.feed(b"a LOGIN joe secret\r\nb COMPRESS DEFLATE\r\n")
    out = driver.take()
    assert out.endswith(b"b OK DEFLATE active\r\n")
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    driver.feed(deflate.compress(b"c NOOP\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
    inflate = zlib.decompressobj(-15)
    assert inflate.decompress(driver.take()) == b"c OK NOOP completed\r\n"
    driver.feed(deflate.compress(b"d COMPRESS DEFLATE\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
    assert b"d NO [COMPRESSIONACTIVE]" in inflate.decompress(driver.take())


def test_no_expunge_during_fetch_store_search_by_sequence_number() -> None:
    driver = Driver(plaintext_login_allowed=True)
    driver.feed(b"a LOGIN joe secret\r\nb SELECT INBOX\r\n")
    driver.take()
    selected = driver.engine.selected
    assert selected is not None
    selected.changes([], [2])
    for command in (b"c FETCH 1:* FLAGS", b"d STORE 1 +FLAGS (x)", b"e SEARCH ALL"):
        driver.feed(command + b"\r\n")
        assert b"EXPUNGE" not in driver.take()
        assert selected.count == 3 and selected.is_gone(2)
    driver.feed(b"f UID FETCH 1:* FLAGS\r\n")
    assert driver.take() == b"* 2 EXPUNGE\r\nf OK FETCH done\r\n"
    assert selected.uids == [1, 3]


def test_selected_mailbox_orders_expunge_exists_fetch() -> None:
    selected = SelectedMailbox(
        "INBOX", [1, 2, 3, 4], read_only=False, uidvalidity=1, highestmodseq=5, recent_after=4
    )
    selected.known_flags.update({1: frozenset(), 4: frozenset()})
    selected.changes(
        [FlagUpdate(4, frozenset({"\\Seen"}), 9), FlagUpdate(6, frozenset(), 8)], [1, 3]
    )
    wire = b"".join(r.to_bytes() for r in selected.pending_responses(expunges_allowed=True))
    assert wire == (
        b"* 3 EXPUNGE\r\n* 1 EXPUNGE\r\n* 3 EXISTS\r\n* 1 RECENT\r\n"
        b"* 2 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (9))\r\n"
    )
    assert selected.uids == [2, 4, 6]
    selected.qresync = True
    selected.changes([], [2, 4])
    wire = b"".join(r.to_bytes() for r in selected.pending_responses(expunges_allowed=True))
    assert wire == b"* VANISHED 2,4\r\n"


TOKENS = [
    b"a LOGIN joe secret\r\n",
    b"a LOGIN joe wrong\r\n",
    b"b LOGIN joe {6}\r\nsecret\r\n",
    b"c AUTHENTICATE PLAIN\r\n",
    base64.b64encode(b"\0joe\0secret") + b"\r\n",
    b"*\r\n",
    b"d SELECT INBOX\r\n",
    b"e FETCH 1:* (FLAGS BODY[])\r\n",
    b"f UID STORE 1 +FLAGS (\\Seen)\r\n",
    b"g APPEND INBOX {3+}\r\nabc\r\n",
    b"h IDLE\r\n",
    b"DONE\r\n",
    b"i CAPABILITY\r\n",
    b"j NOOP\r\n",
    b"k ENABLE CONDSTORE\r\n",
    b"l STARTTLS\r\n",
    b"m LOGOUT\r\n",
    b"\r\n",
    b"{",
    b"}",
    b" ",
    b'"',
    b"\x00\xff",
]

session_input = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.binary(max_size=6)), max_size=30
).map(b"".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(session_input, st.booleans())
def test_whole_and_byte_by_byte_give_the_same_events_and_output(data: bytes, tls: bool) -> None:
    options = {"plaintext_login_allowed": tls}
    whole = Driver(**options).feed(data)
    bytewise = Driver(**options).feed(data, bytewise=True)
    assert whole.events == bytewise.events
    assert whole.output == bytewise.output


def test_uid_and_sequence_sets_resolve_against_the_known_uids() -> None:
    selected = SelectedMailbox(
        "INBOX", [3, 5, 9, 12], read_only=False, uidvalidity=1, highestmodseq=1, recent_after=0
    )
    assert selected.resolve(seqset.parse("4:10,*"), uid=True) == [(2, 5), (3, 9), (4, 12)]
    assert selected.resolve(seqset.parse("2:3"), uid=False) == [(2, 5), (3, 9)]
    assert selected.resolve(seqset.parse("100:*"), uid=True) == [(4, 12)]  # RFC 3501 §6.4.8
    with pytest.raises(CommandError):
        selected.resolve(seqset.parse("5"), uid=False)  # beyond the count: BAD


news = st.lists(
    st.tuples(
        st.lists(st.integers(1, 30), max_size=4),  # UIDs the store reports changed or new
        st.lists(st.integers(1, 30), max_size=4),  # UIDs the store reports expunged
        st.booleans(),  # whether the command then completing may report expunges
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 30), unique=True).map(sorted), news)
def test_a_client_following_the_untagged_responses_keeps_the_right_count(
    initial: list[int], steps: list[tuple[list[int], list[int], bool]]
) -> None:
    """RFC 3501 §7.4.1/§7.3.1: every EXPUNGE names a message the client knows, no EXPUNGE is
    sent when not allowed, and the count the client ends with is the mailbox's."""
    selected = SelectedMailbox(
        "INBOX", initial, read_only=False, uidvalidity=1, highestmodseq=1, recent_after=0
    )
    count = len(initial)
    for changed, vanished, allowed in steps:
        selected.changes([FlagUpdate(uid, frozenset({"x"})) for uid in changed], vanished)
        for item in selected.pending_responses(expunges_allowed=allowed):
            words = item.to_bytes().split()
            if words[2] == b"EXPUNGE":
                assert allowed and 1 <= int(words[1]) <= count
                count -= 1
            elif words[2] == b"EXISTS":
                assert int(words[1]) >= count or allowed
                count = int(words[1])
        if allowed:
            assert count == selected.count
            assert not any(selected.is_gone(uid) for uid in selected.uids)
        else:
            assert count == selected.count  # gone messages keep their numbers until told
