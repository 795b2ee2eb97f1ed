"""Streaming transforms for RETR/TOP content: CRLF normalisation, dot-stuffing, TOP cut.

Both classes work chunk by chunk with O(1) state, so a message of any size
is sent without holding more than one chunk in memory, and the output never
depends on where the application split the content.

`ContentWriter` turns bare LF into CRLF (an existing CRLF is kept; a CR not
followed by LF is ordinary content) and byte-stuffs every line that starts
with "." (RFC 1939 §3).  `ReadyWriter` is its shortcut for content the
application vouches is in wire form already (CRLF line ends, no line
starting with "."): it only notes whether the last line was ended.
`TopFilter` passes through the header, the blank
line and the first *k* body lines (RFC 1939 §7 TOP); lines are delimited by
LF, with or without a preceding CR.
"""

from __future__ import annotations

from typing import Final

_CR: Final = 0x0D
_LF: Final = 0x0A
_DOT: Final = 0x2E
TERMINATOR: Final = b".\r\n"


class ContentWriter:
    """Encodes message content for a multi-line response."""

    __slots__ = ("_line_start", "_prev_cr")

    def __init__(self) -> None:
        self._line_start = True  # the "+OK" line's CRLF precedes the first line
        self._prev_cr = False  # the last octet written was CR

    def feed(self, data: bytes) -> bytes:
        """Return the wire form of the next slice of content."""
        if not data:
            return b""
        prefix = b""
        line_start = self._line_start
        if self._prev_cr and data[0] == _LF:
            # CRLF split across chunks: the CR is already out, only the LF follows.
            prefix, data, line_start = b"\n", data[1:], True
            self._line_start, self._prev_cr = True, False
            if not data:
                return prefix
        if b"\n" in data:
            if data.count(b"\n") != data.count(b"\r\n"):  # some bare LF: normalise
                data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            if b"\n." in data:
                data = data.replace(b"\n.", b"\n..")  # RFC 1939 §3 byte-stuffing
        if line_start and data[0] == _DOT:
            data = b"." + data
        self._line_start = data[-1] == _LF
        self._prev_cr = data[-1] == _CR
        return prefix + data

    def finish(self) -> bytes:
        """The end of the response: a CRLF if the content lacked one, then ".CRLF"."""
        return TERMINATOR if self._line_start else b"\r\n" + TERMINATOR


class ReadyWriter(ContentWriter):
    """A `ContentWriter` for content that is in wire form already."""

    __slots__ = ()

    def feed(self, data: bytes) -> bytes:
        if data:
            self._line_start = data[-1] == _LF
        return data


class TopFilter:
    """Cuts content after the header, the blank line and ``body_lines`` body lines."""

    __slots__ = ("_in_header", "_last_cr", "_line_len", "_remaining", "done")

    def __init__(self, body_lines: int) -> None:
        if body_lines < 0:
            raise ValueError("body_lines must not be negative")
        self._remaining = body_lines
        self._in_header = True
        self._line_len = 0  # octets of the current header line seen so far
        self._last_cr = False  # the last of those octets was CR
        self.done = False  # everything wanted has been passed through

    def feed(self, data: bytes) -> bytes:
        """Return the part of ``data`` that belongs to the TOP response."""
        if self.done:
            return b""
        pos, end = 0, len(data)
        while pos < end:
            if not self._in_header:
                if self._remaining == 0:
                    self.done = True
                    break
                if data.count(b"\n", pos) < self._remaining:
                    self._remaining -= data.count(b"\n", pos)
                    return data
                nl = data.index(b"\n", pos)
                self._remaining -= 1
                pos = nl + 1
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._line_len += end - pos
                self._last_cr = data[end - 1] == _CR
                return data
            length = self._line_len + nl - pos
            last_cr = data[nl - 1] == _CR if nl > pos else self._last_cr
            self._line_len, self._last_cr = 0, False
            pos = nl + 1
            if length == 0 or (length == 1 and last_cr):
                self._in_header = False  # the blank line ends the header
        if not self._in_header and self._remaining == 0:
            self.done = True
        return data if pos == end else data[:pos]
