"""Property tests: chunking never changes the events, and fuzzed input raises nothing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthouse.protocols.imap import commands
from posthouse.protocols.imap.cursor import ParseLimits
from posthouse.protocols.imap.reader import ContinuationRequest, Fatal, ReaderLimits, Refused
from tests.protocols.imap.reading import bytewise, read_all

VALID = [
    b"a001 LOGIN mrc secret\r\n",
    b"a002 SELECT inbox (CONDSTORE)\r\n",
    b"a003 FETCH 12 FULL\r\n",
    b"a004 UID FETCH 1:*,7 (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BINARY[1.2])\r\n",
    b"a005 STORE 12 +FLAGS.SILENT (\\Deleted $Junk)\r\n",
    b'a006 SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (FROM "bob" SINCE 1-Feb-1994) NOT SEEN\r\n',
    b"a007 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
    b'a008 APPEND Drafts (\\Seen) " 7-Feb-1994 21:52:25 -0800" {11+}\r\nhello world\r\n',
    b"a009 APPEND x ~{3}\r\na\x00b (\\Draft) {2}\r\nhi\r\n",
    b"a010 SORT (REVERSE DATE SUBJECT) UTF-8 ALL\r\n",
    b"a011 THREAD REFERENCES US-ASCII TEXT {3}\r\nabc\r\n",
    b'a012 LIST (SUBSCRIBED) "" ("INBOX*" Foo%) RETURN (CHILDREN STATUS (MESSAGES))\r\n',
    b'a013 ID ("name" "x" "version" NIL)\r\n',
    b"a014 SELECT foo (QRESYNC (67890007 20050715194045000 41,43:211 (1:5 41:45)))\r\n",
    b"a015 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
    b"a016 SEARCH CHARSET KOI8-R ALL\r\n",
    b"a017 FROB\r\n",
    b"a018 LOGIN {99999}\r\n",
    b"a019 LOGIN {5000+}\r\n",
    b"a020 ENABLE UTF8=ACCEPT\r\n",
    b"a021 UID EXPUNGE 1:5\r\n",
    b'a022 CREATE "Sent Items" (USE (\\Sent))\r\n',
    b"a023 STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ)\r\n",
    b"a024 SEARCH CHARSET {3}\r\na\rb ALL\r\n",
    b"\r\n",
]
TOKENS = [
    b" ",
    b"(",
    b")",
    b"[",
    b"]",
    b'"',
    b"\\",
    b"{",
    b"}",
    b"{3}\r\n",
    b"{2+}\r\n",
    b"~{1}\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"*",
    b"$",
    b":",
    b",",
    b"NIL",
    b"NOT ",
    b"OR ",
    b"BODY[",
    b"<0.1>",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
]
LIMITS = ReaderLimits(
    line=120, literal=64, append=300, nonsync=32, command=400, literals=4, parse=ParseLimits(60, 6)
)

valid_stream = st.lists(st.sampled_from(VALID), min_size=1, max_size=12).map(b"".join)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """Valid commands with tokens inserted, octets deleted or replaced."""
    data = bytearray(draw(valid_stream))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif action == "delete":
            del data[pos : pos + draw(st.integers(1, 5))]
        else:
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


any_input = st.one_of(st.binary(max_size=300), mutated(), valid_stream)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_input)
def test_whole_and_byte_by_byte_give_identical_events(data: bytes) -> None:
    whole = read_all(data, LIMITS)
    assert bytewise(data, LIMITS) == whole
    for event in whole:
        assert isinstance(event, commands.Command | ContinuationRequest | Refused | Fatal)
        if isinstance(event, Refused | Fatal):
            wire = event.response.to_bytes()
            assert wire.endswith(b"\r\n") and wire.count(b"\n") == 1


@settings(max_examples=200, deadline=None)
@given(any_input, st.lists(st.integers(1, 40), max_size=30))
def test_random_chunking_gives_identical_events(data: bytes, sizes: list[int]) -> None:
    assert read_all(data, LIMITS, sizes) == read_all(data, LIMITS)


@settings(max_examples=500, deadline=None)
@given(any_input)
def test_fuzz_raises_nothing_and_only_fatal_ends_the_stream(data: bytes) -> None:
    events = read_all(data + b"\r\nzz NOOP\r\n", LIMITS)
    fatal = [i for i, event in enumerate(events) if isinstance(event, Fatal)]
    assert not fatal or fatal == [len(events) - 1]
    if not fatal:
        # whatever came before, the stream recovers for a final, valid command ...
        last = events[-1]
        if isinstance(last, commands.Command):
            assert last.name == "NOOP"


def test_valid_commands_all_parse() -> None:
    events = read_all(b"".join(VALID[:15]) + VALID[19] + VALID[20] + VALID[21] + VALID[22])
    parsed = [e for e in events if isinstance(e, commands.Command)]
    assert len(parsed) == 19
    assert not any(isinstance(e, Refused) for e in events)
