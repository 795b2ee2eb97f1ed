"""The mboxrd decoder against an obvious reference model, whole and cut into pieces down
to single bytes (mutation testing found its chunk-boundary states unchecked,
docs/mutation.md)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from posthouse.store.mbox.mboxrd import MboxrdDecoder, MboxrdEncoder

_QUOTED_FROM = re.compile(rb">+From ")


def _lines(data: bytes) -> list[bytes]:
    """Lines end at LF (a CR before it goes with it); a last line may lack its end."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def reference(data: bytes) -> bytes:
    """One ">" off each ``>+From `` line; every line ends CRLF, the last one too."""
    return b"".join(
        (line[1:] if _QUOTED_FROM.match(line) else line) + b"\r\n" for line in _lines(data)
    )


def decode(pieces: list[bytes]) -> bytes:
    decoder = MboxrdDecoder()
    return b"".join(decoder.feed(p) for p in pieces) + decoder.finish()


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


TOKENS = st.sampled_from(
    [b">", b">>", b"From ", b"F", b"Fro", b"rom ", b"m ", b"Fx", b"\r", b"\n", b"\r\n", b"x"]
)
contents = st.lists(TOKENS, max_size=30).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(contents, st.lists(st.integers(0, 200), max_size=12))
def test_decoder_matches_the_reference_model(data: bytes, cuts: list[int]) -> None:
    expected = reference(data)
    assert decode([data]) == expected
    assert decode(cut(data, cuts)) == expected


@settings(max_examples=200, deadline=None)
@given(contents)
def test_decoder_fed_byte_by_byte_matches_the_reference_model(data: bytes) -> None:
    assert decode([data[i : i + 1] for i in range(len(data))]) == reference(data)


def test_decoder_examples() -> None:
    assert decode([b">From a\n>>From b\nFrom c\n"]) == b"From a\r\n>From b\r\nFrom c\r\n"
    assert decode([b"a\n", b">From x\n"]) == b"a\r\nFrom x\r\n"  # fast path, then a quote
    assert decode([b">", b"x\n"]) == b">x\r\n"
    assert decode([b">F", b"r", b"om x"]) == b"From x\r\n"
    assert decode([b">Fx", b"om x\n"]) == b">Fxom x\r\n"
    assert decode([b"end\r"]) == b"end\r\r\n"
    assert decode([b"a\n>>"]) == b"a\r\n>>\r\n"
    assert decode([b"a\n>Fro"]) == b"a\r\n>Fro\r\n"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(TOKENS.filter(lambda t: t != b"\r"), max_size=30).map(b"".join),
    st.lists(st.integers(0, 200), max_size=12),
)
def test_what_the_encoder_stores_decodes_to_the_content(data: bytes, cuts: list[int]) -> None:
    """(Without lone CRs: one just before a line end is stored as part of a CRLF and read
    back as the line end.)"""
    encoder = MboxrdEncoder()
    stored = b"".join(encoder.feed(p) for p in cut(data, cuts)) + encoder.finish()
    assert stored.endswith(b"\n")
    expected = b"".join(line + b"\r\n" for line in _lines(data))
    assert decode(cut(stored[:-1], cuts)) == expected  # without the separator line


def quoted(data: bytes) -> bytes:
    """The encoder's reference: CRLF to LF, one more ">" on each ``>*From `` line."""
    return re.sub(rb"(?m)^(>*From )", rb">\1", data.replace(b"\r\n", b"\n"))


@settings(max_examples=400, deadline=None)
@given(contents, st.lists(st.integers(0, 200), max_size=12))
def test_encoder_matches_the_reference_model_however_cut(data: bytes, cuts: list[int]) -> None:
    for pieces in ([data], cut(data, cuts), [data[i : i + 1] for i in range(len(data))]):
        encoder = MboxrdEncoder()
        stored = b"".join(encoder.feed(p) for p in pieces) + encoder.finish()
        body = quoted(data)
        assert stored == body + (b"\n" if body and not body.endswith(b"\n") else b"") + b"\n"
