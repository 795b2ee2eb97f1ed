"""Parsing an mbox spool file (mboxrd, RFC 4155) into the messages it holds.

This module owns :func:`scan`, which finds the messages from a given offset to end of file
and measures them (:class:`Scanned`), and the message identity :func:`ident` /
:func:`ident_at` (a BLAKE2b-128 hex digest of the first :data:`IDENT_PREFIX` bytes).

A message starts at a line beginning with ``From `` that is the first such line of the
file or follows an empty line; it extends to the next such line or to the end of file.
Its content is everything after the ``From_`` line, minus the final empty separator line.
Its ``size`` is the number of octets the decoded content has
(:class:`~posthouse.store.mbox.mboxrd.MboxrdDecoder`: ``>From`` unquoted, CRLF line ends).
A message is *plain* when decoding it is nothing but turning each LF into CRLF and the
result needs no POP3 byte-stuffing: its content has no CR, no line matching ``^>+From ``,
no line starting with ``.``, and ends with LF (or is empty).  Mail delivered by posthouse
almost always is; the maildrop serves plain messages without the per-line decoder.

Damage is tolerated, never fatal, and logged to ``posthouse.store`` with file and offset:

* bytes before the first ``From_`` line are skipped (logged as an error);
* a last message without its final newline (a truncated write by some other program) is
  served with what is there, plus a CRLF to end the last line (logged as a warning);
* text between messages that does not start with ``From `` after an empty line cannot be
  told from message text and is served as part of the preceding message.

Memory use is bounded (lines are parsed in pieces of at most 64 KiB).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import NamedTuple

from posthouse.store.mbox.mboxrd import FROM, MboxrdDecoder

__all__ = ["CHUNK", "IDENT_PREFIX", "Scanned", "ident", "ident_at", "scan"]

_log = logging.getLogger("posthouse.store")

#: Bytes read or written at a time everywhere in the mbox maildrop.
CHUNK = 64 * 1024
IDENT_PREFIX = 4096
_LINE_LIMIT = 64 * 1024


def ident(prefix: bytes) -> str:
    return hashlib.blake2b(prefix, digest_size=16).hexdigest()


class Scanned(NamedTuple):
    """One message found by :func:`scan` (a tuple: the index holds many of these)."""

    offset: int
    length: int
    from_len: int
    content_len: int
    size: int
    ident: str
    plain: bool


class _Builder:
    """Accumulates one message while scanning."""

    def __init__(self, offset: int, from_piece: bytes, from_done: bool) -> None:
        self.offset = offset
        self.length = 0
        self.from_len = 0
        self.in_from = True
        self.content_len = 0
        self.size = 0
        self.prefix = bytearray()
        self.pending_blank = False
        self.plain = True  # so far: no CR, no line to unquote or to byte-stuff
        self._ends_lf = True  # the content so far is empty or ends with LF
        self._decoder = MboxrdDecoder()
        self._batch = bytearray()
        self.add_from(from_piece, from_done)

    def _raw(self, piece: bytes) -> None:
        self.length += len(piece)
        if len(self.prefix) < IDENT_PREFIX:
            self.prefix += piece[: IDENT_PREFIX - len(self.prefix)]

    def add_from(self, piece: bytes, done: bool) -> None:
        self._raw(piece)
        self.from_len += len(piece)
        self.in_from = not done

    def add_line(self, piece: bytes, line_start: bool) -> None:
        self._raw(piece)
        if self.pending_blank:
            self._content(b"\n")
            self.pending_blank = False
        if line_start and piece == b"\n":
            self.pending_blank = True  # the separator, unless more text follows
        else:
            self._content(piece)
            if self.plain and not _plain_piece(piece, line_start):
                self.plain = False

    def _content(self, piece: bytes) -> None:
        self._ends_lf = piece.endswith(b"\n")
        self.content_len += len(piece)
        self._batch += piece
        if len(self._batch) >= CHUNK:
            self.size += len(self._decoder.feed(bytes(self._batch)))
            self._batch.clear()

    def done(self) -> Scanned:
        self.size += len(self._decoder.feed(bytes(self._batch)))
        self.size += len(self._decoder.finish())
        self._batch.clear()
        return Scanned(
            self.offset,
            self.length,
            self.from_len,
            self.content_len,
            self.size,
            ident(bytes(self.prefix)),
            self.plain and self._ends_lf,
        )


def _plain_piece(piece: bytes, line_start: bool) -> bool:
    """False if this piece of content keeps its message from being plain (see above)."""
    if b"\r" in piece:
        return False
    if not line_start or piece[0] not in b">.":
        return True
    rest = piece.lstrip(b">")
    # "." must be byte-stuffed; ">+From " unquoted (or might be, if the piece was cut short).
    return piece[0] == 0x3E and not (rest.startswith(FROM) or FROM.startswith(rest))


def scan(fd: int, start: int, path: Path) -> tuple[list[Scanned], int]:
    """Parse the mailbox from ``start`` (a ``From_`` line, or 0) to end of file.

    Returns the messages found and the number of bytes read.  Damage is logged.
    """
    messages: list[Scanned] = []
    current: _Builder | None = None
    garbage_at: int | None = None
    at_line_start = True
    pos = start
    with open(fd, "rb", buffering=CHUNK, closefd=False) as f:
        f.seek(start)
        while piece := f.readline(_LINE_LIMIT):
            line_start = at_line_start
            at_line_start = piece.endswith(b"\n")
            if line_start and piece.startswith(FROM) and (current is None or current.pending_blank):
                if current is not None:
                    messages.append(current.done())
                elif garbage_at is not None:
                    _log.error(
                        "%s: skipped %d bytes of garbage at offset %d before the first From_ line",
                        path,
                        pos - garbage_at,
                        garbage_at,
                    )
                current = _Builder(pos, piece, at_line_start)
            elif current is None:
                if garbage_at is None:
                    garbage_at = pos
            elif current.in_from:
                current.add_from(piece, at_line_start)
            else:
                current.add_line(piece, line_start)
            pos += len(piece)
    if current is not None:
        if not at_line_start:
            _log.warning(
                "%s: last message (offset %d) is truncated: it does not end with a newline; "
                "serving what is there",
                path,
                current.offset,
            )
        messages.append(current.done())
    elif garbage_at is not None:
        _log.error(
            "%s: no From_ line found; ignoring %d bytes at offset %d",
            path,
            pos - garbage_at,
            garbage_at,
        )
    return messages, pos - start


def ident_at(fd: int, offset: int, length: int) -> str:
    return ident(os.pread(fd, min(length, IDENT_PREFIX), offset))
