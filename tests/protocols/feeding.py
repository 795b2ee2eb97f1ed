"""Test helper: what the SMTP and POP3 engine drivers share (smtp_driver.py, pop3_driver.py).

`FeedingDriver` feeds an engine bytes whole, in given chunks, byte by byte or in random
pieces, hands every event to the protocol driver's ``answer`` (which answers decisions by
its rules), and collects the output; ``take`` returns what was written since the last one.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from posthouse.protocols.engine_base import NEED_DATA, PAUSED


class FeedingDriver:
    """Feeding, pumping and output of a test driver; subclasses set ``engine`` and answer."""

    engine: Any
    events: list[Any]
    output: bytearray
    event_type: type

    def start(self) -> None:
        """Call once ``engine`` is set: collects the greeting."""
        self._read = 0
        self.pump()

    def feed(self, data: bytes | str, *, chunks: Iterable[int] | None = None) -> Any:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if chunks is None:
            self.engine.receive_data(raw)
            self.pump()
            return self
        pos = 0
        for size in chunks:
            self.engine.receive_data(raw[pos : pos + size])
            self.pump()
            pos += size
        if pos < len(raw):
            self.engine.receive_data(raw[pos:])
            self.pump()
        return self

    def feed_bytewise(self, data: bytes | str) -> Any:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        return self.feed(raw, chunks=[1] * len(raw))

    def feed_random(self, data: bytes, seed: int) -> Any:
        rng = random.Random(seed)
        sizes = []
        left = len(data)
        while left > 0:
            size = min(left, rng.randint(1, 9))
            sizes.append(size)
            left -= size
        return self.feed(data, chunks=sizes)

    def eof(self) -> Any:
        self.engine.receive_eof()
        self.pump()
        return self

    def pump(self) -> None:
        while True:
            event = self.engine.next_event()
            if event is NEED_DATA:
                break
            assert event is not PAUSED, "driver answers every decision"
            assert isinstance(event, self.event_type)
            self.events.append(event)
            self.answer(event)
        self.output += self.engine.data_to_send()

    def answer(self, event: Any) -> None:
        raise NotImplementedError

    def take(self) -> str:
        """Output produced since the last take(), decoded."""
        text = self.output[self._read :].decode("utf-8")
        self._read = len(self.output)
        return text
