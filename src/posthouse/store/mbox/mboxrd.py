"""Streaming decoding of mboxrd message content (RFC 4155) into what POP3 serves.

This module owns :class:`MboxrdDecoder`, the inverse of
:class:`posthouse.store.mbox.append.MboxrdEncoder`: it removes one ``>`` from lines matching
``^>+From `` and makes every line end CRLF (``\\n`` and ``\\r\\n`` both count as a line
end; a lone ``\\r`` is data).  The scanner (:mod:`posthouse.store.mbox.scan`) uses it to
compute sizes and the maildrop to stream messages, so both always agree.
"""

from __future__ import annotations

import re

__all__ = ["FROM", "MboxrdDecoder"]

#: What a ``From_`` line (and a line that needs quoting) starts with.
FROM = b"From "
_GT_RUN = re.compile(rb">*")


class MboxrdDecoder:
    """Streaming inverse of :class:`posthouse.store.mbox.append.MboxrdEncoder`.

    Removes one ``>`` from lines matching ``^>+From ``, turns every ``\\n`` (or ``\\r\\n``)
    into ``\\r\\n`` and, in :meth:`finish`, ends an unterminated last line with CRLF.  The
    output does not depend on how the input is cut into chunks.  Carried state is bounded:
    a pending ``\\r``, one withheld ``>`` and at most four bytes of a possible ``From``.
    """

    def __init__(self) -> None:
        self._cr = False
        self._line_start = True
        self._held = False  # one ">" of the leading run withheld until we know what follows
        self._partial = b""  # proper prefix of b"From " seen after a ">" run
        self._last = b"\n"
        self._empty = True

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            self._cr = True
            data = data[:-1]
        return self._emit(self._unquote(data.replace(b"\r\n", b"\n")))

    def finish(self) -> bytes:
        pending = bytearray()
        if self._cr:
            self._cr = False
            pending += self._unquote(b"\r")
        if self._held:
            pending += b">"
            self._held = False
        pending += self._partial
        self._partial = b""
        out = self._emit(bytes(pending))
        if not self._empty and self._last != b"\n":
            out += b"\r\n"
            self._last = b"\n"
        return out

    def _emit(self, data: bytes) -> bytes:
        if data:
            self._last = data[-1:]
            self._empty = False
        return data.replace(b"\n", b"\r\n")

    def _unquote(self, data: bytes) -> bytes:
        if (
            data
            and not self._held
            and not self._partial
            and b"\n>" not in data
            and not (self._line_start and data[0] == 0x3E)
        ):
            # Fast path (almost every chunk): no line starts with ">", nothing to unquote.
            self._line_start = data[-1] == 0x0A
            return data
        out = bytearray()
        pos, end = 0, len(data)
        while pos < end:
            if self._line_start:
                if not self._partial:
                    run = _GT_RUN.match(data, pos)
                    assert run is not None  # ">*" always matches
                    if run.end() > pos:
                        out += data[pos + (0 if self._held else 1) : run.end()]
                        self._held = True
                        pos = run.end()
                        if pos == end:
                            break
                    elif not self._held:
                        self._line_start = False  # no ">" run: nothing to unquote
                        continue
                need = FROM[len(self._partial) :]
                got = data[pos : pos + len(need)]
                if got == need:  # ">+From ": drop the withheld ">"
                    out += self._partial + got
                    pos += len(got)
                elif pos + len(got) == end and need.startswith(got):
                    self._partial += got  # undecided until the next chunk
                    break
                else:
                    out += b">" + self._partial
                self._held = False
                self._partial = b""
                self._line_start = False
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                out += data[pos:]
                break
            out += data[pos : newline + 1]
            pos = newline + 1
            self._line_start = True
        return bytes(out)
