"""Command framing: literals, continuation requests, limits, refusals (reader.py)."""

from __future__ import annotations

import tracemalloc

import pytest

from posthouse.protocols.errors import UsageError
from posthouse.protocols.imap import arguments, commands
from posthouse.protocols.imap.reader import (
    NEED_DATA,
    TOO_LONG,
    CommandReader,
    ContinuationRequest,
    Fatal,
    ReaderLimits,
    Refused,
)
from tests.protocols.imap.reading import bytewise, read_all

# RFC 3501 §8: the client side of the sample session.
RFC3501_SESSION = (
    b"a001 login mrc secret\r\n"
    b"a002 select inbox\r\n"
    b"a003 fetch 12 full\r\n"
    b"a004 fetch 12 body[header]\r\n"
    b"a005 store 12 +flags \\deleted\r\n"
    b"a006 logout\r\n"
)


def test_the_rfc_3501_sample_session_parses() -> None:
    events = read_all(RFC3501_SESSION)
    assert [(e.tag, e.name) for e in events if isinstance(e, commands.Command)] == [
        ("a001", "LOGIN"),
        ("a002", "SELECT"),
        ("a003", "FETCH"),
        ("a004", "FETCH"),
        ("a005", "STORE"),
        ("a006", "LOGOUT"),
    ]
    login, select, full, header, store, _ = events
    assert isinstance(login, commands.Command)
    assert login.arguments == arguments.Login("mrc", "secret")
    assert isinstance(select, commands.Command)
    assert select.arguments == arguments.Select("INBOX")
    assert isinstance(full, commands.Command) and isinstance(full.arguments, arguments.Fetch)
    assert [i.name for i in full.arguments.request.items] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
        "BODY",
    ]
    assert isinstance(header, commands.Command) and isinstance(header.arguments, arguments.Fetch)
    assert header.arguments.request.items[0].response_name() == "BODY[HEADER]"
    assert isinstance(store, commands.Command)
    assert store.arguments == arguments.Store(
        store.arguments.numbers,
        "add",
        False,
        ("\\Deleted",),  # type: ignore[union-attr]
    )


def test_a_synchronising_literal_asks_for_a_continuation_before_its_octets() -> None:
    reader = CommandReader()
    reader.feed(b"a1 LOGIN {5}\r\n")
    assert reader.next_event() == ContinuationRequest("a1", "LOGIN")
    assert reader.next_event() is NEED_DATA
    reader.feed(b"alice {6}\r\n")
    assert reader.next_event() == ContinuationRequest("a1", "LOGIN")
    reader.feed(b"secret\r\n")
    command = reader.next_event()
    assert isinstance(command, commands.Command)
    assert command.arguments == arguments.Login("alice", "secret")


def test_literal_plus_and_literal8_need_no_continuation() -> None:
    # RFC 7888 §3 example; RFC 3516 literal8 in APPEND.
    events = read_all(
        b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n"
        b"A002 APPEND INBOX ~{4+}\r\n\x00\x01\r\n\r\n"
    )
    assert len(events) == 2
    login, append = events
    assert isinstance(login, commands.Command)
    assert login.arguments == arguments.Login("FRED FOOBAR", "fat man")
    assert isinstance(append, commands.Command) and isinstance(append.arguments, arguments.Append)
    assert append.arguments.messages[0].data == b"\x00\x01\r\n"
    assert append.arguments.messages[0].binary


def test_a_literal_marker_inside_a_quoted_string_is_text() -> None:
    events = read_all(b'a1 LOGIN "x" "{5}"\r\na2 NOOP\r\n')
    assert isinstance(events[0], commands.Command)
    assert events[0].arguments == arguments.Login("x", "{5}")
    assert isinstance(events[1], commands.Command) and events[1].name == "NOOP"


def test_escaped_quotes_do_not_end_the_quoted_string() -> None:
    events = read_all(b'a1 LOGIN "a\\"b" "{5}\\\\"\r\n')
    assert isinstance(events[0], commands.Command)
    assert events[0].arguments == arguments.Login('a"b', "{5}\\")


def test_a_synchronising_literal_over_the_limit_is_refused_before_it_is_read() -> None:
    limits = ReaderLimits(literal=100)
    reader = CommandReader(limits)
    reader.feed(b"a1 LOGIN {101}\r\n")
    event = reader.next_event()
    assert isinstance(event, Refused)
    assert event.response.to_bytes() == (
        b"a1 NO [TOOBIG] Literal of 101 octets is larger than the limit of 100\r\n"
    )
    # No continuation was sent, so the client sends its next command, not the literal.
    reader.feed(b"a2 NOOP\r\n")
    event = reader.next_event()
    assert isinstance(event, commands.Command) and event.tag == "a2"


def test_an_append_over_the_message_limit_is_refused_before_it_is_read() -> None:
    reader = CommandReader(ReaderLimits(append=1000))
    reader.feed(b"A003 APPEND saved-messages (\\Seen) {1001}\r\n")
    event = reader.next_event()
    assert isinstance(event, Refused)
    assert event.response.status == "NO" and str(event.response.code) == "TOOBIG"
    assert reader.buffered == 0
    reader.feed(b"A003 APPEND saved-messages (\\Seen) {1000}\r\n")
    assert reader.next_event() == ContinuationRequest("A003", "APPEND")


def test_a_non_synchronising_literal_over_the_limit_is_bad_and_skipped() -> None:
    # RFC 7888 §4: LITERAL- takes {n+} up to 4096 octets; beyond, BAD [TOOBIG].
    data = b"a1 LOGIN {4097+}\r\n" + b"x" * 4097 + b" pw\r\na2 NOOP\r\n"
    for events in (read_all(data), bytewise(data)):
        assert len(events) == 2
        refusal, noop = events
        assert isinstance(refusal, Refused)
        assert refusal.response.to_bytes().startswith(b"a1 BAD [TOOBIG] Non-synchronizing")
        assert isinstance(noop, commands.Command) and noop.tag == "a2"


def test_a_non_synchronising_literal_too_large_to_skip_closes_the_connection() -> None:
    reader = CommandReader(ReaderLimits(literal=10, append=100))
    reader.feed(b"a1 APPEND INBOX {101+}\r\n")
    event = reader.next_event()
    assert isinstance(event, Refused) and event.response.tag == "a1"
    fatal = reader.next_event()
    assert isinstance(fatal, Fatal)
    assert fatal.response.to_bytes().startswith(b"* BYE [TOOBIG]")
    assert reader.closed
    reader.feed(b"a2 NOOP\r\n")
    assert reader.next_event() is NEED_DATA


def test_an_over_long_line_is_refused_without_being_kept() -> None:
    reader = CommandReader(ReaderLimits(line=100))
    reader.feed(b"a1 LOGIN " + b"x" * 500)
    assert reader.next_event() is NEED_DATA
    assert reader.buffered == 0  # discarded as it came
    reader.feed(b"y" * 10_000)
    assert reader.next_event() is NEED_DATA
    assert reader.buffered == 0
    reader.feed(b" pw\r\na2 NOOP\r\n")
    refusal = reader.next_event()
    assert isinstance(refusal, Refused)
    assert refusal.response.to_bytes() == b"a1 BAD [TOOBIG] Command line too long\r\n"
    noop = reader.next_event()
    assert isinstance(noop, commands.Command) and noop.tag == "a2"


def test_an_over_long_line_ending_in_a_non_synchronising_literal_skips_it() -> None:
    data = b"a1 LOGIN " + b"x" * 200 + b" {12+}\r\na3 LOGOUT\r\n\r\na2 NOOP\r\n"
    for events in (read_all(data, ReaderLimits(line=100)), bytewise(data, ReaderLimits(line=100))):
        assert [type(e).__name__ for e in events] == ["Refused", "Command"]
        assert isinstance(events[1], commands.Command) and events[1].tag == "a2"


def test_unknown_commands_are_bad_for_their_tag_only() -> None:
    events = read_all(b"x1 FROB 1 2\r\nx2 UID NOOP\r\nx3 NOOP\r\n")
    assert [type(e).__name__ for e in events] == ["Refused", "Refused", "Command"]
    first, second, _ = events
    assert isinstance(first, Refused) and isinstance(second, Refused)
    assert first.response.to_bytes() == b"x1 BAD Unknown command FROB\r\n"
    assert second.response.tag == "x2" and second.response.status == "BAD"


def test_a_line_without_a_tag_gets_an_untagged_bad() -> None:
    events = read_all(b"+ NOOP\r\n(x) NOOP\r\nok NOOP\r\n")
    assert [type(e).__name__ for e in events] == ["Refused", "Refused", "Command"]
    assert isinstance(events[0], Refused)
    assert events[0].response.to_bytes() == b"* BAD Invalid or missing command tag\r\n"


def test_empty_lines_between_commands_are_ignored() -> None:
    events = read_all(b"\r\n\r\na NOOP\r\n\n")
    assert len(events) == 1 and isinstance(events[0], commands.Command)


def test_bare_lf_line_ends_are_accepted() -> None:
    events = read_all(b"a NOOP\nb LOGIN {2}\nab c\n")
    assert [type(e).__name__ for e in events] == ["Command", "ContinuationRequest", "Command"]


def test_deeply_nested_parentheses_are_refused() -> None:
    deep = b"a SEARCH " + b"(" * 40 + b"ALL" + b")" * 40 + b"\r\nb NOOP\r\n"
    events = read_all(deep)
    assert isinstance(events[0], Refused)
    assert b"Nested more than 32 levels" in events[0].response.to_bytes()
    assert isinstance(events[1], commands.Command)


def test_deeply_nested_search_keys_are_refused() -> None:
    deep = b"a SEARCH " + b"NOT " * 100 + b"ALL\r\n"
    events = read_all(deep)
    assert isinstance(events[0], Refused) and events[0].response.status == "BAD"
    ors = b"a SEARCH " + b"OR ALL " * 50 + b"ALL\r\n"
    events = read_all(ors)
    assert isinstance(events[0], Refused)


def test_too_many_arguments_are_refused() -> None:
    many = b"a STORE 1 FLAGS (" + b" ".join(b"k%d" % i for i in range(20_000)) + b")\r\n"
    events = read_all(many, ReaderLimits(line=1_000_000))
    assert isinstance(events[0], Refused)
    assert b"Too many arguments" in events[0].response.to_bytes()


def test_a_command_over_the_total_size_is_refused() -> None:
    limits = ReaderLimits(command=1000, literal=800)
    events = read_all(b"a LOGIN {700+}\r\n" + b"u" * 700 + b" {700}\r\nb NOOP\r\n", limits)
    assert isinstance(events[0], Refused) and events[0].response.status == "NO"
    assert isinstance(events[1], commands.Command) and events[1].tag == "b"


def test_too_many_literals_are_refused() -> None:
    limits = ReaderLimits(literals=2)
    data = b"a APPEND x {1+}\r\na {1+}\r\nb {1+}\r\nc\r\nz NOOP\r\n"
    events = read_all(data, limits)
    assert (
        isinstance(events[0], Refused) and b"Too many literals" in events[0].response.text.encode()
    )
    assert isinstance(events[-1], commands.Command) and events[-1].tag == "z"


def test_raw_lines_for_idle_and_sasl() -> None:
    reader = CommandReader()
    reader.feed(b"a IDLE\r\nDONE\r\n" + b"x" * 50 + b"\r\nb NOOP\r\n")
    idle = reader.next_event()
    assert isinstance(idle, commands.Command) and idle.name == "IDLE"
    assert reader.read_raw_line(100) == b"DONE"
    assert reader.read_raw_line(20) is TOO_LONG
    event = reader.next_event()
    assert isinstance(event, commands.Command) and event.tag == "b"
    assert reader.read_raw_line(100) is None


def test_take_buffered_hands_over_what_follows() -> None:
    reader = CommandReader()
    reader.feed(b"a COMPRESS DEFLATE\r\n\x78\x9c")
    event = reader.next_event()
    assert isinstance(event, commands.Command) and event.name == "COMPRESS"
    assert reader.take_buffered() == b"\x78\x9c"
    assert reader.buffered == 0


@pytest.mark.parametrize("chunk", [1, 16])
def test_ten_thousand_pipelined_commands_with_bounded_memory(chunk: int) -> None:
    one = b"t%05d UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)])\r\n"
    stream = b"".join(one % i for i in range(10_000))
    reader = CommandReader()
    seen = 0
    biggest = 0
    step = 4096 * chunk
    tracemalloc.start()
    try:
        for pos in range(0, len(stream), step):
            reader.feed(stream[pos : pos + step])
            biggest = max(biggest, reader.buffered)
            while (event := reader.next_event()) is not NEED_DATA:
                assert isinstance(event, commands.Command)
                seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == 10_000
    assert reader.buffered == 0
    assert biggest < step + len(one)  # never more than one chunk and a partial command
    assert peak < 3 * step + 512 * 1024  # independent of the 10,000 commands


def test_the_same_events_in_any_chunking() -> None:
    data = RFC3501_SESSION + b"b LOGIN {3}\r\nabc {2+}\r\nde\r\nc FROB\r\n"
    whole = read_all(data)
    assert bytewise(data) == whole
    assert read_all(data, chunks=[5, 1, 17, 3, 40]) == whole


def test_control_characters_the_client_sent_never_reach_a_response() -> None:
    events = read_all(b'a SEARCH CHARSET {3}\r\na\rb ALL\r\nb LOGIN "x\ry" z\r\n')
    assert [type(e).__name__ for e in events] == ["ContinuationRequest", "Refused", "Refused"]
    for event in events[1:]:
        assert isinstance(event, Refused)
        wire = event.response.to_bytes()
        assert wire.count(b"\r") == 1 and wire.endswith(b"\r\n")
    assert isinstance(events[1], Refused) and "A?B" in events[1].response.text


def test_the_messages_of_one_multiappend_are_limited_together() -> None:
    limits = ReaderLimits(append=100, append_total=150)
    events = read_all(b"a APPEND x {80+}\r\n" + b"m" * 80 + b" {80}\r\nb NOOP\r\n", limits)
    assert isinstance(events[0], Refused)
    assert events[0].response.to_bytes() == (
        b"a NO [TOOBIG] The messages of one APPEND exceed 150 octets\r\n"
    )
    assert isinstance(events[1], commands.Command) and events[1].tag == "b"


def test_the_reader_can_share_the_engines_line_buffer() -> None:
    from posthouse.protocols.lines import LineBuffer

    shared = LineBuffer()
    reader = CommandReader(buffer=shared)
    shared.feed(b"a AUTHENTICATE PLAIN\r\ndGVzdAB0ZXN0AHRlc3Q=\r\nb NOOP\r\n")
    event = reader.next_event()
    assert isinstance(event, commands.Command) and event.name == "AUTHENTICATE"
    # the engine core reads the SASL response line from the same buffer ...
    assert shared.read_line(100) == b"dGVzdAB0ZXN0AHRlc3Q="
    # ... and the reader goes on after it
    event = reader.next_event()
    assert isinstance(event, commands.Command) and event.tag == "b"
    shared.feed(b"c NO")
    assert reader.next_event() is NEED_DATA
    reader.reset()  # STARTTLS: nothing sent before the handshake is interpreted
    assert len(shared) == 0
    shared.feed(b"d NOOP\r\n")
    event = reader.next_event()
    assert isinstance(event, commands.Command) and event.tag == "d"


def test_reset_drops_a_partial_command_and_its_literal() -> None:
    reader = CommandReader()
    reader.feed(b"a LOGIN {10}\r\n")
    assert isinstance(reader.next_event(), ContinuationRequest)
    reader.feed(b"abc")
    reader.reset()
    reader.feed(b"x\r\n")
    event = reader.next_event()
    # "x" is read as a new command line, not as the rest of the dropped literal
    assert isinstance(event, Refused) and event.response.tag == "x"


def test_the_engine_may_decline_a_synchronising_literal() -> None:
    reader = CommandReader()
    reader.feed(b"a APPEND nosuchbox {300}\r\n")
    assert reader.next_event() == ContinuationRequest("a", "APPEND")
    reader.decline_literal()  # the engine answers "a NO [TRYCREATE] ..." instead of "+"
    reader.feed(b"b NOOP\r\n")
    event = reader.next_event()
    assert isinstance(event, commands.Command) and event.tag == "b"
    with pytest.raises(UsageError):
        reader.decline_literal()


def test_continuation_requests_name_the_command() -> None:
    events = read_all(b"a UID SEARCH TEXT {1}\r\nx\r\n")
    assert events[0] == ContinuationRequest("a", "SEARCH")
