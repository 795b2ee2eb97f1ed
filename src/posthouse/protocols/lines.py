"""Input buffering and LF-terminated line framing for the text protocol engines.

`LineBuffer` owns the octets received from the peer but not yet consumed.  It
hands out complete lines (terminated by LF, a preceding CR stripped) with a
hard length cap, and gives scanners such as the SMTP DATA reader direct,
copy-free access to the pending octets.
"""

from __future__ import annotations

import enum
from typing import Final

_LF: Final = 0x0A
_CR: Final = 0x0D
# Compact the buffer once at least this many consumed octets sit at its front.
_COMPACT_AT: Final = 64 * 1024


class LineStatus(enum.Enum):
    """Non-line results of `LineBuffer.read_line`."""

    TOO_LONG = "TOO_LONG"


TOO_LONG: Final = LineStatus.TOO_LONG


class LineBuffer:
    """Octets received but not yet consumed, with line extraction.

    Over-long lines are reported once, as soon as it is certain the line
    exceeds the limit, and the rest of that line (up to and including its LF)
    is then silently discarded.  The outcome therefore never depends on how
    the input was split into chunks.
    """

    __slots__ = ("_buf", "_discarding", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._discarding = False

    def __len__(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """Append octets received from the peer."""
        self._buf += data

    def clear(self) -> None:
        """Forget every pending octet (and any half-discarded over-long line)."""
        self._buf.clear()
        self._pos = 0
        self._discarding = False

    def read_line(self, limit: int) -> bytes | LineStatus | None:
        """Return the next line without its terminator, `TOO_LONG`, or None.

        ``limit`` counts the whole line including its LF (and CR, if any).
        None means no complete line is buffered yet.
        """
        if self._discarding:
            end = self._buf.find(b"\n", self._pos)
            if end < 0:
                self._advance_to(len(self._buf))
                return None
            self._advance_to(end + 1)
            self._discarding = False
        end = self._buf.find(b"\n", self._pos)
        if end < 0:
            if len(self) >= limit:
                # Even the LF still to come would make the line exceed the limit.
                self._advance_to(len(self._buf))
                self._discarding = True
                return TOO_LONG
            return None
        start = self._pos
        too_long = end + 1 - start > limit
        stop = end - 1 if end > start and self._buf[end - 1] == _CR else end
        line = b"" if too_long else bytes(self._buf[start:stop])
        self._advance_to(end + 1)
        return TOO_LONG if too_long else line

    def read(self, count: int) -> bytes:
        """Consume and return up to ``count`` octets."""
        start = self._pos
        stop = min(len(self._buf), start + count)
        data = bytes(self._buf[start:stop])
        self._advance_to(stop)
        return data

    def peek(self) -> tuple[bytearray, int]:
        """Return the raw buffer and the offset of the first unconsumed octet.

        The caller must not modify the buffer; it reports what it used
        with `advance`.
        """
        return self._buf, self._pos

    def advance(self, count: int) -> None:
        """Mark ``count`` octets (from the `peek` offset) as consumed."""
        self._advance_to(min(len(self._buf), self._pos + count))

    def _advance_to(self, pos: int) -> None:
        self._pos = pos
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos >= _COMPACT_AT and self._pos * 2 >= len(self._buf):
            # Amortised O(1): only move the tail once it is at most as long as the gap.
            del self._buf[: self._pos]
            self._pos = 0
