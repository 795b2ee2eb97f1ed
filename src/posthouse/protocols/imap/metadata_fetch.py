"""FETCH responses that carry message metadata only, written straight to octets.

``FETCH 1:* (UID FLAGS)`` is what every client sends on opening a mailbox, so on a big
mailbox it is the FETCH that matters most.  When a request asks for nothing but UID,
FLAGS, MODSEQ, RFC822.SIZE and INTERNALDATE, `MetadataFetch` writes each
``* n FETCH (...)`` line (RFC 3501 §7.4.2) without building response values, and keeps
the wire form of every distinct flag list it has written: a mailbox holds a handful of
flag combinations, sent again and again.  The octets are exactly those `response.fetch`
writes for the same items.

`MetadataFetch.block` writes many lines at once without a Python step per line: each
distinct flag list gets a line template (``* %d FETCH (UID %d FLAGS (\\Seen))``), the
templates of the rows are joined, and the numbers of all rows are put in with one ``%``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container, Sequence
from operator import attrgetter
from typing import Final, Protocol, TypeVar

from posthouse.protocols.imap.fetchatt import FetchItem
from posthouse.protocols.imap.response import date_time, encode_value, flags_value

METADATA_ITEMS: Final = frozenset({"UID", "FLAGS", "MODSEQ", "RFC822.SIZE", "INTERNALDATE"})
MAX_FLAG_FORMS: Final = 512  # distinct flag lists remembered; beyond, start afresh
_RECENT: Final = frozenset({"\\Recent"})
_NUMBERS: Final = {"UID": b"UID %d", "MODSEQ": b"MODSEQ (%d)", "RFC822.SIZE": b"RFC822.SIZE %d"}
_COLUMNS: Final = {"MODSEQ": "modseq", "RFC822.SIZE": "size"}
T = TypeVar("T")


def metadata_only(items: Sequence[FetchItem]) -> bool:
    """Whether every item is one `MetadataFetch` writes (no section, no partial)."""
    return all(item.name in METADATA_ITEMS for item in items)


class Metadata(Protocol):
    """What a line needs of a message (the store's metadata row)."""

    @property
    def uid(self) -> int: ...
    @property
    def modseq(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def internal_date(self) -> dt.datetime: ...
    @property
    def flags(self) -> frozenset[str]: ...


class FlagForms:
    """The wire form of flag lists (``(\\Seen $Label)``, sorted), one computation per set."""

    def __init__(self) -> None:
        self._forms: dict[frozenset[str], bytes] = {}

    def wire(self, flags: frozenset[str]) -> bytes:
        form = self._forms.get(flags)
        if form is None:
            form = encode_value(flags_value(sorted(flags)))
            if len(self._forms) >= MAX_FLAG_FORMS:
                self._forms.clear()
            self._forms[flags] = form
        return form


class MetadataFetch:
    """Writes FETCH lines of metadata items, in the order the request names them;
    ``condstore``: MODSEQ is added when not asked for (RFC 7162 §3.1.4.1)."""

    def __init__(self, items: Sequence[FetchItem], forms: FlagForms, *, condstore: bool) -> None:
        names = [item.name for item in items]
        if condstore and "MODSEQ" not in names:
            names.append("MODSEQ")
        self.names = tuple(names)
        self.forms = forms

    def line(self, seq: int, meta: Metadata, flags: frozenset[str]) -> bytes:
        """``* seq FETCH (...)`` and its CRLF; ``flags`` as this session shows them."""
        parts: list[bytes] = []
        for name in self.names:
            if name == "UID":
                parts.append(b"UID %d" % meta.uid)
            elif name == "FLAGS":
                parts.append(b"FLAGS " + self.forms.wire(flags))
            elif name == "MODSEQ":
                parts.append(b"MODSEQ (%d)" % meta.modseq)
            elif name == "RFC822.SIZE":
                parts.append(b"RFC822.SIZE %d" % meta.size)
            else:
                date = date_time(meta.internal_date).encode("ascii")
                parts.append(b'INTERNALDATE "' + date + b'"')
        return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"

    def block(
        self,
        seqs: Sequence[int],
        metas: Sequence[Metadata] | None,
        recent: Container[int],
        *,
        uids: Sequence[int] | None = None,
        flags: Sequence[frozenset[str]] | None = None,
        modseqs: Sequence[int] | None = None,
    ) -> bytes:
        """The lines of ``metas`` (numbered ``seqs``) in one piece, each message's stored
        flags shown with \\Recent when its UID is in ``recent``: the same octets as
        `line` for each.  ``uids``, ``flags`` and ``modseqs``: the messages' UIDs, flags
        and MODSEQs when the caller has them as lists already (each pass over 100,000 rows
        counts); ``metas`` may be None when those are all the lines need."""
        uids = self._column("uid", metas, uids)
        flags = self._column("flags", metas, flags)
        shown = flags
        if recent:
            with_recent = {f: f | _RECENT for f in set(flags)}  # one set per flag list
            shown = [with_recent[f] if u in recent else f for f, u in zip(flags, uids, strict=True)]
        if "INTERNALDATE" in self.names:  # a date per row: line by line
            assert metas is not None
            return b"".join(map(self.line, seqs, metas, shown))
        templates = {value: self._template(value) for value in set(shown)}
        columns: list[Sequence[int]] = [seqs]
        for name in self.names:
            if name == "UID":
                columns.append(uids)
            elif name == "MODSEQ":
                columns.append(self._column("modseq", metas, modseqs))
            elif name in _COLUMNS:
                columns.append(self._column(_COLUMNS[name], metas, None))
        numbers: list[int] = [0] * (len(columns) * len(seqs))
        for offset, column in enumerate(columns):
            numbers[offset :: len(columns)] = column
        return b"".join(map(templates.__getitem__, shown)) % tuple(numbers)

    @staticmethod
    def _column(
        name: str, metas: Sequence[Metadata] | None, given: Sequence[T] | None
    ) -> Sequence[T]:
        if given is not None:
            return given
        assert metas is not None, f"block() needs metas or {name} column"
        return list(map(attrgetter(name), metas))

    def _template(self, flags: frozenset[str]) -> bytes:
        """A line with ``%d`` for the sequence number and each number item, in order."""
        parts = [
            b"FLAGS " + self.forms.wire(flags).replace(b"%", b"%%")
            if name == "FLAGS"
            else _NUMBERS[name]
            for name in self.names
        ]
        return b"* %d FETCH (" + b" ".join(parts) + b")\r\n"
