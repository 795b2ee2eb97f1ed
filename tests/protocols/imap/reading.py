"""Test helper: feed a `CommandReader` whole, in chunks or byte by byte; collect events."""

from __future__ import annotations

from collections.abc import Iterable

from posthouse.protocols.imap.reader import NEED_DATA, CommandReader, Event, ReaderLimits


def drain(reader: CommandReader) -> list[Event]:
    out: list[Event] = []
    while (event := reader.next_event()) is not NEED_DATA:
        assert not isinstance(event, type(NEED_DATA))
        out.append(event)
    return out


def read_all(
    data: bytes, limits: ReaderLimits | None = None, chunks: Iterable[int] | None = None
) -> list[Event]:
    """Every event for ``data`` fed in ``chunks`` (whole when None)."""
    reader = CommandReader(limits)
    if chunks is None:
        reader.feed(data)
        return drain(reader)
    events: list[Event] = []
    pos = 0
    for size in chunks:
        reader.feed(data[pos : pos + size])
        events += drain(reader)
        pos += size
    reader.feed(data[pos:])
    return events + drain(reader)


def bytewise(data: bytes, limits: ReaderLimits | None = None) -> list[Event]:
    return read_all(data, limits, [1] * len(data))
