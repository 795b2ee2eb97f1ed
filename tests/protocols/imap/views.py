"""Test helper: a `MessageView` built from message octets, as the store will build one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from posthouse.protocols.imap import message, text


@dataclass
class StoredMessage:
    """A message with index data; header and body text come from the parsed octets."""

    data: bytes
    uid: int
    seq: int
    flags: frozenset[str] = frozenset()
    internal_date: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    modseq: int = 1
    root: message.Part = field(init=False)

    def __post_init__(self) -> None:
        self.root = message.parse(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def header_values(self, name: str) -> Sequence[str]:
        return text.header_values(self.root, name)

    def header_text(self) -> str:
        return text.header_text(self.root)

    def body_text(self) -> str:
        return text.body_text(self.data, self.root)


def simple(headers: dict[str, str] | list[tuple[str, str]], body: str = "body\r\n") -> bytes:
    """A message of the given header fields and body, CRLF line ends."""
    items = headers.items() if isinstance(headers, dict) else headers
    head = "".join(f"{name}: {value}\r\n" for name, value in items)
    return (head + "\r\n" + body).encode("utf-8")
