"""The plumbing every sans-I/O engine shares: input buffer, event queue, decisions, output.

An engine subclass interprets input in ``_step`` (returning False when it
needs more octets) and says in ``_accepting`` whether input is read at all:
after the session closed, or while a STARTTLS/STLS handshake is pending, it
is not (RFC 3207 §4.2, RFC 2595 §4: plaintext after the go-ahead is never
interpreted).  A *decision* event sets ``_pending``; ``next_event`` then
returns PAUSED until the application has answered it.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Final, Generic, TypeVar

from posthouse.protocols.lines import LineBuffer


class Signal(enum.Enum):
    """What ``next_event`` returns when it has no event."""

    NEED_DATA = "NEED_DATA"  # feed more input (or, if the engine is closed, flush and close)
    PAUSED = "PAUSED"  # a decision event is waiting for its answer


NEED_DATA: Final = Signal.NEED_DATA
PAUSED: Final = Signal.PAUSED

EventT = TypeVar("EventT")
DecisionT = TypeVar("DecisionT")


class EngineCore(Generic[EventT, DecisionT]):
    """Input buffer, event queue, pending decision and output of one session."""

    def __init__(self) -> None:
        self._buf = LineBuffer()
        self._events: deque[EventT] = deque()
        self._out = bytearray()
        self._pending: DecisionT | None = None
        self._eof = False

    def _accepting(self) -> bool:
        """Whether received octets are interpreted now."""
        raise NotImplementedError

    def _step(self) -> bool:
        """Interpret buffered input; False when more octets are needed."""
        raise NotImplementedError

    def receive_data(self, data: bytes) -> None:
        """Feed octets from the peer (ignored once closed or awaiting TLS)."""
        if self._accepting() and not self._eof:
            self._buf.feed(data)

    def receive_eof(self) -> None:
        """The peer closed its sending side."""
        self._eof = True

    def next_event(self) -> EventT | Signal:
        """Return the next event, PAUSED (answer the decision first) or NEED_DATA."""
        while not self._events:
            if self._pending is not None:
                return PAUSED
            if not self._step():
                return NEED_DATA
        return self._events.popleft()

    def data_to_send(self) -> bytes:
        """Drain and return the queued output."""
        data = bytes(self._out)
        self._out.clear()
        return data
