"""Streaming reader for DATA message content: end detection and dot-unstuffing.

Only the exact sequence CRLF "." CRLF ends the message (RFC 5321 §4.1.1.4);
bare-LF or bare-CR variants such as ``<LF>.<LF>`` are ordinary content, which
closes the SMTP smuggling hole.  A leading dot is removed only at the start of
a CRLF-delimited line (RFC 5321 §4.5.2).  The reader keeps at most two octets
of look-ahead and never buffers whole lines or messages.
"""

from __future__ import annotations

from typing import Final

from posthouse.protocols.lines import LineBuffer

_CR: Final = 0x0D
_LF: Final = 0x0A
_DOT: Final = 0x2E


class DotReader:
    """Consumes DATA content from a `LineBuffer` until CRLF.CRLF.

    ``too_long`` becomes True the first time a line reaches ``max_line``
    octets before its LF (i.e. the line including its LF exceeds
    ``max_line``).  Content is then cut deterministically after the first
    ``max_line - 1`` octets of that line and nothing further is returned.
    Setting ``discard`` stops returning content while still looking for the
    end of the message.
    """

    __slots__ = ("_line_len", "_line_start", "_max_line", "_prev_cr", "discard", "done", "too_long")

    def __init__(self, max_line: int) -> None:
        if max_line < 2:
            raise ValueError("max_line must be at least 2")
        self._max_line = max_line
        # At the start of a CRLF-delimited line (the DATA command's own line
        # ending counts as the CRLF before the first line).
        self._line_start = True
        self._prev_cr = False  # last consumed octet was CR
        self._line_len = 0  # raw octets of the current line consumed so far
        self.too_long = False
        self.discard = False
        self.done = False

    def consume(self, source: LineBuffer) -> bytes:
        """Consume what can be decided from ``source``; return the new content."""
        buf, start = source.peek()
        end = len(buf)
        i = start
        out: list[bytes] = []
        while i < end and not self.done:
            if self._prev_cr and buf[i] == _LF:
                # CR was the last octet of the previous chunk.
                self._region(buf, i, i + 1, out)
                i += 1
                continue
            if self._line_start:
                if buf[i] == _DOT:
                    if i + 1 >= end:
                        break
                    if buf[i + 1] == _CR:
                        if i + 2 >= end:
                            break
                        if buf[i + 2] == _LF:
                            i += 3
                            self.done = True
                            break
                    # RFC 5321 §4.5.2: drop the transparency dot.
                    i += 1
                    self._line_len += 1
                    self._prev_cr = False
                self._line_start = False
                continue
            # Everything up to the next CRLF "." needs no per-octet attention.
            hit = buf.find(b"\r\n.", i)
            stop = end if hit < 0 else hit + 2
            self._region(buf, i, stop, out)
            i = stop
        source.advance(i - start)
        return b"".join(out)

    def _region(self, buf: bytearray, a: int, b: int, out: list[bytes]) -> None:
        """Account for raw content octets ``buf[a:b]`` (no dot handling needed)."""
        if not self.too_long:
            cut = self._find_overflow(buf, a, b)
            if cut is not None:
                self.too_long = True
                if not self.discard:
                    out.append(bytes(buf[a:cut]))
            elif not self.discard:
                out.append(bytes(buf[a:b]))
        last_lf = buf.rfind(b"\n", a, b)
        if last_lf < 0:
            self._line_len += b - a
        else:
            self._line_len = b - last_lf - 1
        last = buf[b - 1]
        if last == _LF:
            self._line_start = buf[b - 2] == _CR if b - 1 > a else self._prev_cr
        self._prev_cr = last == _CR

    def _find_overflow(self, buf: bytearray, a: int, b: int) -> int | None:
        """Cut position if some line in ``buf[a:b]`` reaches ``max_line`` octets before LF."""
        limit = self._max_line
        first = buf.find(b"\n", a, b)
        if first < 0:
            if self._line_len + (b - a) >= limit:
                return a + (limit - 1 - self._line_len)
            return None
        if self._line_len + (first - a) >= limit:
            return a + (limit - 1 - self._line_len)
        last = buf.rfind(b"\n", a, b)
        if last - first - 1 >= limit:
            # Some complete line inside the region may be too long: scan them.
            pos = first
            while pos < last:
                nxt = buf.find(b"\n", pos + 1, last + 1)
                if nxt - pos - 1 >= limit:
                    return pos + limit
                pos = nxt
        if b - last - 1 >= limit:
            return last + limit
        return None
