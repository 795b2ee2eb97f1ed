"""Counting Received: fields for loop detection, whole and in arbitrary chunks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from posthouse.mta.hops import HopCounter

MESSAGE = (
    b"Received: from a by b; Thu, 26 Nov 2026 00:00:00 +0000\r\n"
    b"X-Note: Received: not a field of its own\r\n"
    b"received :from c\r\n\tby d\r\n"
    b"RECEIVED: from e\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"Received: in the body does not count\r\n"
)


def count(data: bytes, cuts: list[int] | None = None, **kwargs: int) -> int:
    counter = HopCounter(**kwargs)
    points = sorted({c % (len(data) + 1) for c in cuts or []})
    start = 0
    for point in [*points, len(data)]:
        counter.feed(data[start:point])
        start = point
    return counter.hops


def test_fields_of_the_header_section_count_and_nothing_else() -> None:
    assert count(MESSAGE) == 3


def test_bare_lf_line_ends() -> None:
    assert count(MESSAGE.replace(b"\r\n", b"\n")) == 3


@given(st.lists(st.integers(min_value=0, max_value=len(MESSAGE)), max_size=12))
def test_any_chunking_gives_the_same_count(cuts: list[int]) -> None:
    assert count(MESSAGE, cuts) == 3
    assert count(MESSAGE.replace(b"\r\n", b"\n"), cuts) == 3


def test_only_the_first_bytes_are_examined() -> None:
    many = b"Received: from x\r\n" * 100 + b"\r\nbody\r\n"
    assert count(many) == 100
    assert count(many, max_header_bytes=18 * 10) == 10


def test_a_message_without_body_counts_while_streaming() -> None:
    counter = HopCounter()
    counter.feed(b"Received: from x\r\nReceived: from y\r\n")
    assert counter.hops == 2
