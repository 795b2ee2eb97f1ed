"""Messages of the selected mailbox as SEARCH, SORT, THREAD and FETCH see them.

`StoredMessage` is the protocol's ``MessageView`` (protocols/imap/view.py) over the
store's metadata, reading and parsing the message itself only when a key or an item
needs its content.  `fetch_items` builds one FETCH response's items (RFC 3501 §7.4.2):
ENVELOPE and BODYSTRUCTURE come from the blobs cached at APPEND time when they are
there, section and BINARY items from the message octets (sections.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from posthouse.protocols.imap import bodystructure, envelope, message, sections, text
from posthouse.protocols.imap.fetchatt import FetchItem, FetchRequest
from posthouse.protocols.imap.response import Raw, binary_value, date_time, flags_value
from posthouse.store.backend import MessageMeta, NewMessage


@dataclass
class StoredMessage:
    """One message: metadata now, content (``load``) on demand."""

    meta: MessageMeta
    seq: int
    flags: frozenset[str]
    content: bytes | None = None
    _part: message.Part | None = field(default=None, repr=False)

    @property
    def uid(self) -> int:
        return self.meta.uid

    @property
    def internal_date(self) -> dt.datetime:
        return self.meta.internal_date

    @property
    def size(self) -> int:
        return self.meta.size

    @property
    def modseq(self) -> int:
        return self.meta.modseq

    @property
    def part(self) -> message.Part:
        """The parsed message, or only its header when just the cached header section is
        at hand (enough for header keys: SEARCH HEADER, SORT, THREAD)."""
        if self._part is None:
            source = self.content if self.content is not None else self.meta.header
            assert source is not None, "load the message (or its cached header) first"
            self._part = message.parse(source)
        return self._part

    def structure_for(self, item: FetchItem, data: bytes) -> message.Part:
        """The structure ``item`` needs to be cut out of ``data`` (the content or the cached
        header): the full parse, or only the header end for the message's own sections."""
        if self._part is None and sections.top_level_only(item):
            return message.outline(data)
        return self.part

    def use_content(self, content: bytes) -> None:
        """The message octets are loaded (a parse of the header alone is dropped)."""
        self.content = content
        self._part = None

    def forget_content(self) -> None:
        """Drop the loaded octets and their parse (memory stays bounded over a mailbox)."""
        self.content = None
        self._part = None

    def header_values(self, name: str) -> Sequence[str]:
        return text.header_values(self.part, name)

    def header_text(self) -> str:
        return text.header_text(self.part)

    def body_text(self) -> str:
        assert self.content is not None
        return text.body_text(self.content, self.part)


def prepared(content: bytes, date: dt.datetime, flags: frozenset[str]) -> NewMessage:
    """A message to append with its ENVELOPE, BODYSTRUCTURE and header section cached."""
    part = message.parse(content)
    return NewMessage(
        content,
        date,
        flags,
        envelope=envelope.envelope_bytes(part),
        bodystructure=bodystructure.bodystructure_bytes(content, part),
        header=content[part.start : part.body_start],
    )


def missing_blobs(stored: StoredMessage) -> dict[str, bytes] | None:
    """The ENVELOPE, BODYSTRUCTURE and header blobs of a loaded message that had none
    cached (delivered mail), for ``UserSession.store_cache``; None when nothing is missing."""
    meta = stored.meta
    if stored.content is None or None not in (meta.envelope, meta.bodystructure):
        return None
    content, part = stored.content, stored.part
    return {
        "envelope": envelope.envelope_bytes(part),
        "bodystructure": bodystructure.bodystructure_bytes(content, part),
        "header": content[part.start : part.body_start],
    }


CONTENT_ITEMS = frozenset(
    {"RFC822", "RFC822.HEADER", "RFC822.TEXT", "BINARY", "BINARY.SIZE", "BODY"}
)


_HEADER_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"})


def header_only(item: FetchItem) -> bool:
    """The item is (part of) the message's own header: the cached header section has it."""
    if item.name == "RFC822.HEADER":
        return True
    section = item.section
    return (
        item.name == "BODY"
        and section is not None
        and not section.part
        and section.text in _HEADER_TEXTS
    )


def needs_cache(request: FetchRequest) -> bool:
    """Whether the request is served (partly) from the blobs cached at APPEND time."""
    return any(
        item.name in ("ENVELOPE", "BODYSTRUCTURE") or header_only(item) for item in request.items
    )


async def fetch_items(
    stored: StoredMessage,
    request: FetchRequest,
    *,
    load: Callable[[int], Awaitable[bytes]],
    condstore: bool,
) -> list[tuple[str, object]]:
    """The (name, value) items of one FETCH response, UID first when asked."""
    items: list[tuple[str, object]] = []
    meta = stored.meta
    for item in request.items:
        if stored.content is None and (
            (item.name in CONTENT_ITEMS and not (header_only(item) and meta.header is not None))
            or (item.name == "ENVELOPE" and meta.envelope is None)
            or (item.name == "BODYSTRUCTURE" and meta.bodystructure is None)
        ):
            stored.use_content(await load(meta.uid))
        items.append((item.response_name(), _value(stored, item)))
    if condstore and not any(name == "MODSEQ" for name, _ in items):
        items.append(("MODSEQ", [meta.modseq]))
    return items


def _value(stored: StoredMessage, item: FetchItem) -> object:
    meta = stored.meta
    match item.name:
        case "UID":
            return meta.uid
        case "FLAGS":
            return flags_value(sorted(stored.flags))
        case "INTERNALDATE":
            return date_time(meta.internal_date)
        case "RFC822.SIZE":
            return meta.size
        case "MODSEQ":
            return [meta.modseq]
        case "ENVELOPE":
            if meta.envelope is not None:
                return Raw(meta.envelope)
            return Raw(envelope.envelope_bytes(_parse_loaded(stored)))
        case "BODYSTRUCTURE":
            if meta.bodystructure is not None:
                return Raw(meta.bodystructure)
            return Raw(bodystructure.bodystructure_bytes(_loaded(stored), stored.part))
        case "BODY" if item.section is None:
            return Raw(bodystructure.body_bytes(_loaded(stored), stored.part))
        case "BINARY.SIZE":
            assert item.section is not None
            return sections.binary_size(_loaded(stored), stored.part, item.section.part)
        case "BINARY":
            return binary_value(sections.item_octets(_loaded(stored), stored.part, item))
    data = stored.content
    if data is None:  # a header item, from the cached header section
        assert meta.header is not None
        data = meta.header
    return sections.item_octets(data, stored.structure_for(item, data), item)


def _loaded(stored: StoredMessage) -> bytes:
    assert stored.content is not None
    return stored.content


def _parse_loaded(stored: StoredMessage) -> message.Part:
    return stored.part
