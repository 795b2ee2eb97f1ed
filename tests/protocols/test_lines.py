"""LineBuffer: LF framing, CR stripping, over-long lines, raw reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from posthouse.protocols.lines import TOO_LONG, LineBuffer


def test_lines_and_partial() -> None:
    buf = LineBuffer()
    buf.feed(b"one\r\ntwo\nthr")
    assert buf.read_line(100) == b"one"
    assert buf.read_line(100) == b"two"
    assert buf.read_line(100) is None
    buf.feed(b"ee\r\r\n")
    assert buf.read_line(100) == b"three\r"
    assert len(buf) == 0


def test_too_long_reported_once_and_rest_discarded() -> None:
    buf = LineBuffer()
    buf.feed(b"x" * 10)
    assert buf.read_line(10) is TOO_LONG
    buf.feed(b"yyyy\nnext\n")
    assert buf.read_line(10) == b"next"


def test_limit_counts_terminator() -> None:
    buf = LineBuffer()
    buf.feed(b"12345678\r\n123456789\r\n")
    assert buf.read_line(10) == b"12345678"
    assert buf.read_line(10) is TOO_LONG
    assert buf.read_line(10) is None


def test_read_peek_advance_clear() -> None:
    buf = LineBuffer()
    buf.feed(b"abcdef")
    assert buf.read(2) == b"ab"
    raw, pos = buf.peek()
    assert bytes(raw[pos:]) == b"cdef"
    buf.advance(3)
    assert buf.read(10) == b"f"
    buf.feed(b"x" * 5)
    buf.clear()
    assert len(buf) == 0


def test_compaction_keeps_content() -> None:
    buf = LineBuffer()
    data = b"".join(b"line %d\n" % i for i in range(30_000))
    buf.feed(data)
    got = []
    while (line := buf.read_line(100)) is not None:
        assert isinstance(line, bytes)
        got.append(line)
    assert got == [b"line %d" % i for i in range(30_000)]


@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=30))
def test_chunking_does_not_change_lines(data: bytes, cuts: list[int]) -> None:
    def run(pieces: list[bytes]) -> list[object]:
        buf = LineBuffer()
        out: list[object] = []
        for piece in pieces:
            buf.feed(piece)
            while (line := buf.read_line(16)) is not None:
                out.append(line)
        return out

    pieces, pos = [], 0
    for cut in cuts:
        pieces.append(data[pos : pos + cut])
        pos += cut
    pieces.append(data[pos:])
    assert run([data]) == run(pieces)
