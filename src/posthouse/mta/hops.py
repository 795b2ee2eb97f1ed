"""Mail loop detection by hop count (RFC 5321 §6.3).

Every relay prepends a ``Received:`` field, so a message caught in a loop
between hosts (two servers routing a domain to each other, a forwarding
cycle) carries more of them at each pass.  :class:`HopCounter` counts them in
the header section of a message as it streams in, looking at no more than
``max_header_bytes``; a message with more than the limit (``[smtp] max_hops``,
50 as Postfix's ``hopcount_limit``) is refused with ``554 5.4.6``, so the loop
ends with a bounce from the previous hop instead of going round forever.
"""

from __future__ import annotations

import re

__all__ = ["HopCounter"]

_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


class HopCounter:
    """Counts ``Received:`` fields in the header section of a message fed in chunks."""

    def __init__(self, max_header_bytes: int = 256 * 1024) -> None:
        self.max_header_bytes = max_header_bytes
        self._head = bytearray()
        self._done = False
        self._hops = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """The next chunk of the message (cheap once the header section has ended)."""
        if self._done:
            return
        # Search only the new data (plus 3 bytes that may start a blank line).
        start = max(len(self._head) - 3, 0)
        self._head += data
        del self._head[self.max_header_bytes :]
        end = _HEADER_END.search(self._head, start)
        if end is not None:
            del self._head[end.start() :]
            self._finish()
        elif len(self._head) >= self.max_header_bytes:
            self._finish()

    @property
    def hops(self) -> int:
        """``Received:`` fields seen so far (all of them once the header section ended)."""
        if self._done:
            return self._hops
        return len(_RECEIVED.findall(self._head))

    def _finish(self) -> None:
        self._hops = len(_RECEIVED.findall(self._head))
        self._head = bytearray()
        self._done = True
