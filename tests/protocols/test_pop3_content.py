"""RETR/TOP content transforms and POP3 reply encoding, including property tests."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.protocols.pop3.content import ContentWriter, ReadyWriter, TopFilter
from posthouse.protocols.pop3.replies import Reply, err, ok

content = st.lists(st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b"\n.", b".."]), max_size=40)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


def encode(pieces: list[bytes]) -> bytes:
    writer = ContentWriter()
    return b"".join(writer.feed(p) for p in pieces) + writer.finish()


def client_decode(wire: bytes) -> bytes:
    """What an RFC 1939 client recovers: lines up to ".", leading dot removed."""
    out = []
    lines = wire.split(b"\r\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        if line == b".":
            break
        out.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
    else:  # pragma: no cover - the terminator is always there
        raise AssertionError("no terminator")
    return b"".join(out)


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.mark.parametrize(
    ("pieces", "wire"),
    [
        ([b""], b".\r\n"),
        ([b"a"], b"a\r\n.\r\n"),
        ([b"a\n"], b"a\r\n.\r\n"),
        ([b"a\r\n"], b"a\r\n.\r\n"),
        ([b".a\n.\n"], b"..a\r\n..\r\n.\r\n"),
        ([b"a\r", b"\n.b"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r", b"\n", b"."], b"a\r\n..\r\n.\r\n"),
        ([b"a\r", b"b"], b"a\rb\r\n.\r\n"),
        ([b"a\r"], b"a\r\r\n.\r\n"),
        ([b"\r.\n"], b"\r.\r\n.\r\n"),
        ([b"x\n", b".", b"y"], b"x\r\n..y\r\n.\r\n"),
        ([b"\n\n"], b"\r\n\r\n.\r\n"),
        # A CRLF split across chunks, then a bare LF in a chunk of its own: a new line.
        ([b"a\r", b"\n", b"\n"], b"a\r\n\r\n.\r\n"),
    ],
)
def test_writer_examples(pieces: list[bytes], wire: bytes) -> None:
    assert encode(pieces) == wire


@given(content, st.lists(st.integers(0, 200), max_size=10))
def test_writer_is_chunking_independent_and_reversible(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    wire = encode([data])
    assert encode(split(data, cuts)) == wire
    expected = crlf(data)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert client_decode(wire) == expected
    assert b"\r\n.\r\n" not in b"\r\n" + wire[:-3]  # no premature terminator


@given(content, st.lists(st.integers(0, 200), max_size=10))
def test_ready_writer_matches_the_writer_on_wire_ready_content(
    parts: list[bytes], cuts: list[int]
) -> None:
    data = re.sub(rb"(?m)^\.+", b"", crlf(b"".join(parts)))  # no line starts with "."
    ready = ReadyWriter()
    wire = b"".join(ready.feed(p) for p in split(data, cuts)) + ready.finish()
    assert wire == encode([data])


def top_reference(data: bytes, k: int) -> bytes:
    # Lines end at LF only (bytes.splitlines would also split at a bare CR).
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    out, in_header, taken = [], True, 0
    for line in lines:
        if not in_header:
            if taken == k:
                break
            taken += 1
        elif line in (b"\n", b"\r\n"):
            in_header = False
        out.append(line)
    return b"".join(out)


@given(
    st.lists(st.sampled_from([b"\r", b"\n", b"h", b"\r\n", b": "]), max_size=40),
    st.integers(0, 5),
    st.lists(st.integers(0, 200), max_size=10),
)
def test_top_filter_matches_reference(parts: list[bytes], k: int, cuts: list[int]) -> None:
    data = b"".join(parts)
    top = TopFilter(k)
    got = b""
    for piece in split(data, cuts):
        got += top.feed(piece)
    assert got == top_reference(data, k)
    if got != data:
        assert top.done


@pytest.mark.parametrize(
    ("pieces", "k"),
    [
        # A header line "x<CR>" arriving in three chunks is not the blank line.
        ([b"x", b"\r", b"\n", b"Rest: 1\r\n\r\nbody\r\n"], 0),
        ([b"A: 1\r\nB", b": 2\r", b"\n", b"\r\nbody\r\n"], 0),
        # More body lines asked for than the message has, the whole message in one chunk.
        ([b"A: 1\r\nB: 2\r\nC: 3\r\n\r\nline 1\r\nline 2\r\nno end"], 5),
        ([b"A: 1\r\n\r\nline 1\r\nline 2\r\n"], 3),
    ],
)
def test_top_filter_examples(pieces: list[bytes], k: int) -> None:
    top = TopFilter(k)
    assert b"".join(top.feed(p) for p in pieces) == top_reference(b"".join(pieces), k)


def test_top_filter_done_and_negative() -> None:
    top = TopFilter(0)
    assert top.feed(b"A: b\r\n\r\nbody\r\n") == b"A: b\r\n\r\n"
    assert top.done
    assert top.feed(b"more") == b""
    with pytest.raises(ValueError):
        TopFilter(-1)


def test_reply_encoding() -> None:
    assert ok().to_bytes() == b"+OK\r\n"
    assert ok("2 320").to_bytes() == b"+OK 2 320\r\n"
    assert err("locked", "IN-USE").to_bytes() == b"-ERR [IN-USE] locked\r\n"
    assert err("x", "SYS/TEMP").to_bytes() == b"-ERR [SYS/TEMP] x\r\n"
    assert ok("list", ("a", ".b")).to_bytes() == b"+OK list\r\na\r\n..b\r\n.\r\n"
    assert ok("", ()).to_bytes() == b"+OK\r\n.\r\n"
    assert Reply(True, "x", None, ["a"]).lines == ("a",)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [("a\r\nb", None), ("a", "IN USE"), ("a", "X]"), ("a", "")])
def test_reply_validation(bad: tuple[str, str | None]) -> None:
    with pytest.raises(ValueError):
        err(*bad)
