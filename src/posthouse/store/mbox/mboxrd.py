"""The mboxrd format (RFC 4155) both ways: what delivery writes and what POP3 serves.

This module owns the bytes of an mbox entry:

* :func:`mbox_from_line` -- the ``From_`` separator line (envelope sender, time of
  receipt in UTC ``asctime`` form);
* :class:`MboxrdEncoder` -- a message's content as stored: CRLF -> LF, one more ``>`` on
  every line matching ``^>*From ``, a final newline and one blank separator line;
  :func:`to_mbox_bytes` is one whole entry;
* :class:`MboxrdDecoder`, its inverse: removes one ``>`` from lines matching ``^>+From ``
  and makes every line end CRLF (``\\n`` and ``\\r\\n`` both count as a line end; a lone
  ``\\r`` is data).  The scanner (:mod:`posthouse.store.mbox.scan`) uses it to compute
  sizes and the maildrop to stream messages, so both always agree.

Both directions stream: state carried between chunks is bounded, and the output does not
depend on how the input is cut into chunks, so a ``From `` split across chunk boundaries
is still (un)quoted and memory use does not depend on message or line size.  A reader that
strips one ``>`` from such lines recovers the message exactly; trailing blank lines that
are part of the content are kept (a reader drops only the final separator).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["FROM", "MboxrdDecoder", "MboxrdEncoder", "mbox_from_line", "to_mbox_bytes"]

#: What a ``From_`` line (and a line that needs quoting) starts with.
FROM = b"From "
_GT_RUN = re.compile(rb">*")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNSAFE_SENDER = re.compile(r"[\s\x00-\x1f\x7f]")


def mbox_from_line(sender: str, when: datetime) -> bytes:
    """The ``From_`` separator line for a message from ``sender`` received at ``when``.

    ``when`` is converted to UTC (naive datetimes are taken to be UTC already), as RFC 4155
    asks, and written in ``asctime`` form without a zone.  The null sender (``""`` or
    ``"<>"``) becomes ``MAILER-DAEMON``; surrounding angle brackets are dropped and any
    whitespace or control character is replaced by ``_`` so the address stays one token.
    """
    address = sender.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    address = _UNSAFE_SENDER.sub("_", address) or "MAILER-DAEMON"
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    stamp = (
        f"{_DAYS[when.weekday()]} {_MONTHS[when.month - 1]} {when.day:2d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {when.year}"
    )
    return f"From {address} {stamp}\n".encode()


class _CarriesCR(Protocol):
    _cr: bool  # a "\r" ended the previous chunk


def _crlf_to_lf(state: _CarriesCR, data: bytes) -> bytes:
    """``data`` with CRLF turned into LF, the same whatever the chunking: a final ``\r``
    is withheld in ``state`` until the next chunk shows whether an LF follows it."""
    if state._cr:
        data = b"\r" + data
        state._cr = False
    if data.endswith(b"\r"):
        state._cr = True
        data = data[:-1]
    return data.replace(b"\r\n", b"\n")


class MboxrdEncoder:
    """Streaming CRLF -> LF conversion plus mboxrd ``>*From `` quoting.

    Feed chunks with :meth:`feed`, then call :meth:`finish` once; concatenating the
    results gives the message body as stored in the mbox, including the trailing newline
    and the blank separator line.  State carried between chunks is bounded: a pending
    ``\\r`` and at most four bytes of a possible ``From`` (a run of leading ``>`` is
    emitted at once, since the extra quoting ``>`` may go anywhere within the run).
    """

    def __init__(self) -> None:
        self._cr = False  # a "\r" ended the previous chunk
        self._line_start = True  # in the leading ">" run of a line
        self._partial = b""  # proper prefix of b"From " seen after the ">" run
        self._last = b"\n"  # last byte emitted (b"\n" before any output)

    def feed(self, data: bytes) -> bytes:
        return self._quote(_crlf_to_lf(self, data))

    def finish(self) -> bytes:
        out = bytearray(self._quote(b"\r") if self._cr else b"")
        self._cr = False
        if self._partial:
            out += self._partial
            self._last = self._partial[-1:]
            self._partial = b""
        if self._last != b"\n":
            out += b"\n"
        out += b"\n"
        return bytes(out)

    def _quote(self, data: bytes) -> bytes:
        if data and not self._partial and FROM not in data:
            # Nothing to quote; only the last line may still become a ``>*From `` line.
            newline = data.rfind(b"\n")
            tail = data[newline + 1 :]
            if not tail:
                self._line_start = True
            elif newline < 0 and not self._line_start:
                pass  # the rest of a line that is no From_ line
            elif FROM.startswith(tail.lstrip(b">")):
                return self._quote_lines(data)  # undecided until the next chunk
            else:
                self._line_start = False
            self._last = data[-1:]
            return data
        return self._quote_lines(data)

    def _quote_lines(self, data: bytes) -> bytes:
        out = bytearray()
        pos, end = 0, len(data)
        while pos < end:
            if self._line_start:
                if not self._partial:
                    run_end = _GT_RUN.match(data, pos)
                    assert run_end is not None  # ">*" always matches
                    out += data[pos : run_end.end()]
                    pos = run_end.end()
                    if pos == end:
                        break
                need = FROM[len(self._partial) :]
                got = data[pos : pos + len(need)]
                if got == need:
                    out += b">" + self._partial + got
                    pos += len(got)
                    self._partial = b""
                    self._line_start = False
                elif pos + len(got) == end and need.startswith(got):
                    self._partial += got  # undecided until the next chunk
                    pos = end
                    break
                else:
                    out += self._partial
                    self._partial = b""
                    self._line_start = False
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                out += data[pos:]
                pos = end
            else:
                out += data[pos : newline + 1]
                pos = newline + 1
                self._line_start = True
        if out:
            self._last = bytes(out[-1:])
        return bytes(out)


def to_mbox_bytes(sender: str, content: bytes, when: datetime) -> bytes:
    """One complete mbox entry: ``From_`` line, quoted content, blank separator line."""
    encoder = MboxrdEncoder()
    return mbox_from_line(sender, when) + encoder.feed(content) + encoder.finish()


class MboxrdDecoder:
    """Streaming inverse of :class:`MboxrdEncoder`.

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

    def feed(self, data: bytes) -> bytes:
        return self._emit(self._unquote(_crlf_to_lf(self, data)))

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
        if self._last != b"\n":
            out += b"\r\n"
            self._last = b"\n"
        return out

    def _emit(self, data: bytes) -> bytes:
        if data:
            self._last = data[-1:]
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
