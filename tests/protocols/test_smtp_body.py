"""DotReader: end-of-data detection, unstuffing and line limits against a reference model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posthouse.protocols.lines import LineBuffer
from posthouse.protocols.smtp.body import DotReader

MAX_LINE = 16


def reference(raw: bytes, max_line: int) -> tuple[bytes, bool, int]:
    """Obvious, slow model: (content, too_long, octets consumed incl. terminator)."""

    def line_start(pos: int) -> bool:
        return pos == 0 or raw[pos - 2 : pos] == b"\r\n"

    end = next(p for p in range(len(raw)) if line_start(p) and raw[p : p + 3] == b".\r\n")
    cut = end
    too_long = False
    start = 0
    for pos in range(end):
        if raw[pos] == 0x0A:
            start = pos + 1
        elif pos - start + 1 >= max_line:  # this octet is the max_line-th before LF
            cut, too_long = start + max_line - 1, True
            break
    content = bytes(b for pos, b in enumerate(raw[:cut]) if not (b == 0x2E and line_start(pos)))
    return content, too_long, end + 3


def run(raw: bytes, sizes: list[int], max_line: int = MAX_LINE) -> tuple[bytes, bool, int]:
    reader = DotReader(max_line)
    buf = LineBuffer()
    out = bytearray()
    fed = 0
    for size in [*sizes, len(raw)]:
        buf.feed(raw[fed : fed + size])
        fed += len(raw[fed : fed + size])
        out += reader.consume(buf)
        if reader.done:
            return bytes(out), reader.too_long, fed - len(buf)
    raise AssertionError("end of data not found")


ALPHABET = st.sampled_from([b"\r", b"\n", b".", b"x", b"\r\n", b"\r\n.", b"..", b"y" * 20])
bodies = st.lists(ALPHABET, max_size=60).map(b"".join)


@settings(max_examples=400)
@given(bodies, st.binary(max_size=10), st.lists(st.integers(1, 7), max_size=40))
def test_matches_reference_model(body: bytes, tail: bytes, sizes: list[int]) -> None:
    raw = body + b"\r\n.\r\n" + tail
    assert run(raw, sizes) == run(raw, []) == reference(raw, MAX_LINE)


def _near_limit_tokens(max_line: int) -> st.SearchStrategy[bytes]:
    """Pieces that put lines right at, just under and just over ``max_line``."""
    runs = st.integers(1, max_line + 1).map(lambda n: b"y" * n)
    return st.one_of(ALPHABET, runs, st.just(b"y" * (max_line - 1)), st.just(b"y" * max_line))


@st.composite
def limited_bodies(draw: st.DrawFn) -> tuple[int, bytes]:
    max_line = draw(st.integers(2, 12))
    body = b"".join(draw(st.lists(_near_limit_tokens(max_line), max_size=40)))
    return max_line, body


@settings(max_examples=600)
@given(limited_bodies(), st.lists(st.integers(1, 9), max_size=40))
def test_line_limit_boundaries_match_the_reference_model(
    case: tuple[int, bytes], sizes: list[int]
) -> None:
    """Lines of max_line - 1, max_line and max_line + 1 octets, for several limits, fed whole
    and in pieces: the cut and the flag are exactly the model's."""
    max_line, body = case
    raw = body + b"\r\n.\r\n"
    expected = reference(raw, max_line)
    assert run(raw, sizes, max_line) == run(raw, [], max_line) == expected


@pytest.mark.parametrize("max_line", [2, 3, 5, 16])
def test_a_line_of_exactly_the_limit_is_too_long_and_one_less_is_not(max_line: int) -> None:
    """The limit counts the octets before the LF, the CR included."""
    fits = b"f" * (max_line - 2) + b"\r\n"
    assert run(fits + fits + b".\r\n", [], max_line) == (fits + fits, False, 2 * len(fits) + 3)
    over = b"o" * (max_line - 1) + b"\r\n"
    for raw in (over + b".\r\n", fits + over + b".\r\n", fits + b"." + over + b".\r\n"):
        content, too_long, _ = run(raw, [], max_line)
        assert too_long and content == reference(raw, max_line)[0]


def test_a_max_line_under_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        DotReader(1)
    DotReader(2)


def test_examples() -> None:
    assert run(b".\r\n", []) == (b"", False, 3)
    assert run(b"a\r\n..\r\n.\r\nX", []) == (b"a\r\n.\r\n", False, 10)
    assert run(b"a\n.\nb\r\n.\r\n", [1, 1, 1]) == (b"a\n.\nb\r\n", False, 10)
    long_line = b"z" * 40 + b"\r\n.\r\n"
    assert run(long_line, []) == (b"z" * (MAX_LINE - 1), True, len(long_line))


def test_discard_stops_output_but_finds_end() -> None:
    reader = DotReader(100)
    buf = LineBuffer()
    buf.feed(b"abc\r\n")
    assert reader.consume(buf) == b"abc\r\n"
    reader.discard = True
    buf.feed(b"def\r\n.\r\nNEXT")
    assert reader.consume(buf) == b""
    assert reader.done and len(buf) == 4


def test_keeps_at_most_two_octets_of_lookahead() -> None:
    reader = DotReader(100)
    buf = LineBuffer()
    buf.feed(b"line\r\n.\r")
    assert reader.consume(buf) == b"line\r\n"
    assert len(buf) == 2 and not reader.done
    buf.feed(b"\n")
    assert reader.consume(buf) == b"" and reader.done


def test_a_stuffed_line_is_passed_on_once_the_octet_after_the_dot_arrives() -> None:
    """A line-initial dot is held only until the next octet shows it is not the end."""
    reader = DotReader(100)
    buf = LineBuffer()
    buf.feed(b"a\r\n.")
    assert reader.consume(buf) == b"a\r\n" and len(buf) == 1
    buf.feed(b"b")
    assert reader.consume(buf) == b"b" and len(buf) == 0
    buf.feed(b"\r\n.c")
    assert reader.consume(buf) == b"\r\nc" and len(buf) == 0 and not reader.done


def test_large_message_is_fast_enough() -> None:
    line = b"x" * 76 + b"\r\n"
    raw = line * 200_000 + b".\r\n"  # ~15 MB
    reader = DotReader(1000)
    buf = LineBuffer()
    total = 0
    for pos in range(0, len(raw), 65536):
        buf.feed(raw[pos : pos + 65536])
        total += len(reader.consume(buf))
    assert reader.done and total == len(raw) - 3
