"""Per-transaction state of the SMTP engine: recipients, message size, content events.

A `Transaction` lives from an accepted MAIL to the end of the message (or a
reset).  It enforces the message size limit while content streams through
(RFC 1870 §4) and guarantees that every `DataStart` is followed by exactly one
`MessageEnd` or `MessageAborted`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from posthouse.protocols.smtp.events import DataStart, Event, MessageAborted, MessageData
from posthouse.protocols.smtp.replies import Reply

TOO_BIG: Final = Reply(552, "5.3.4", ("Message size exceeds fixed maximum message size",))


class Transaction:
    """Envelope bookkeeping and streaming content accounting."""

    __slots__ = ("_emit", "_max_size", "accepted", "failed", "in_message", "size", "smtputf8")

    def __init__(self, *, smtputf8: bool, max_size: int, emit: Callable[[Event], None]) -> None:
        self.smtputf8 = smtputf8
        self._max_size = max_size
        self._emit = emit
        self.accepted = 0  # recipients answered 2xx
        self.size = 0  # content octets so far (RFC 1870 §5 message size)
        self.in_message = False  # DataStart emitted, no MessageEnd/MessageAborted yet
        self.failed: Reply | None = None  # content refused: reply owed at its end

    def start_message(self) -> None:
        self.in_message = True
        self._emit(DataStart())

    def content(self, data: bytes) -> None:
        """Emit message content, cutting it off at the size limit."""
        if self.failed is not None or not data:
            return
        room = self._max_size - self.size
        if len(data) > room:
            # RFC 1870 §4: too large -> 552, and the message is discarded.
            if room > 0:
                self._emit(MessageData(data[:room]))
            self.size = self._max_size + 1
            self.fail("message size exceeds maximum", TOO_BIG)
            return
        self.size += len(data)
        self._emit(MessageData(data))

    def fail(self, reason: str, reply: Reply) -> None:
        """Discard the message now; ``reply`` is owed once its content is consumed."""
        if self.failed is None:
            self.failed = reply
            self.abort(reason)

    def abort(self, reason: str) -> None:
        """Emit MessageAborted if content is in progress."""
        if self.in_message:
            self.in_message = False
            self._emit(MessageAborted(reason))

    def finish(self) -> None:
        """The message ended normally (MessageEnd is emitted by the engine)."""
        self.in_message = False
