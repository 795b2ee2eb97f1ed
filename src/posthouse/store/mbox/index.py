"""The persistent index of an mbox maildrop: its file format, bringing it up to date, UIDs.

This module owns the index file ``index_dir/USER.idx`` (:func:`load_index`,
:func:`save_index`) and :func:`refresh_index`, which reuses it, parses only the new tail
or re-indexes the mailbox in full, handing out UIDs.

Index file ``index_dir/USER.idx`` (JSON lines, rewritten atomically via a temporary file,
``fsync`` and ``rename``)
----------------------------------------------------------------------------------------
Line 1, an object::

    {"format": "posthouse-mbox-index", "version": 2, "uidvalidity": 1767225600,
     "next_serial": 42, "dev": 2049, "ino": 1234, "size": 81234, "mtime_ns": ...,
     "end": 81234, "count": 2}

``dev``/``ino``/``size``/``mtime_ns`` describe the mailbox as indexed, ``end`` is where
the indexed region ends (after a rewrite, mail appended during the session lies beyond
it).  Then ``count`` lines, one per message, in file order::

    [offset, length, from_len, content_len, size, "uid", "ident", plain]

``offset`` is that of the ``From_`` line, ``length`` covers the message up to the next
``From_`` line, ``from_len`` is the ``From_`` line's length, ``content_len`` the raw
content's (without the separator line), ``size`` the CRLF size, ``ident`` a BLAKE2b-128
hex digest of the first 4 KiB of the message (``From_`` line included), ``plain`` 1 if
the message is plain (:mod:`posthouse.store.mbox.scan`), else 0.

A version 1 index (entries without ``plain``) is read for its UIDs only: the mailbox is
re-indexed in full, carrying the UIDs over as below.

At open the index is reused when the mailbox has the same device and inode, did not
shrink, was not modified in place at the same size (same size needs the same
``mtime_ns``), and the last indexed message still has its ``ident``.  Then only the region
from the last indexed message on is parsed (that message may have been completed by a
later append), and nothing at all when the size is unchanged.  Otherwise the mailbox is
re-indexed in full.

UIDs
----
``f"{uidvalidity}.{serial}"`` (Dovecot-style): ``serial`` comes from the index's counter
when a message is first indexed, ``uidvalidity`` is the time the index was created.  A
full re-index keeps the index's ``uidvalidity``/``next_serial`` and carries UIDs over to
messages with the same ``(ident, length)`` -- duplicates are matched in file order -- so
a rewrite by another program only renumbers the messages it really changed.  If the index
file is lost, a new ``uidvalidity`` makes all UIDs new (clients download again rather
than confuse messages).  ``X-UIDL:`` headers are not honoured: they are under the
sender's control and not guaranteed unique.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from posthouse.durable import sync_directory
from posthouse.store.mbox.scan import Scanned, ident_at, scan

__all__ = [
    "Entry",
    "Index",
    "IndexStats",
    "ScanFunction",
    "load_index",
    "refresh_index",
    "save_index",
]

_log = logging.getLogger("posthouse.store")

_INDEX_FORMAT = "posthouse-mbox-index"
_INDEX_VERSION = 2
_OLD_VERSION = 1  # entries without "plain": re-index, keep the UIDs

#: The signature of :func:`posthouse.store.mbox.scan.scan` (a parameter, so it can be spied on).
ScanFunction = Callable[[int, int, Path], tuple[list[Scanned], int]]


class Entry(NamedTuple):
    """An indexed message: the fields of :class:`Scanned`, then its UID."""

    offset: int
    length: int
    from_len: int
    content_len: int
    size: int
    ident: str
    plain: bool
    uid: str

    @classmethod
    def of(cls, scanned: Scanned, uid: str) -> Entry:
        return cls(*scanned, uid)

    @property
    def has_separator(self) -> bool:
        return self.length - self.from_len - self.content_len == 1


@dataclass(frozen=True)
class IndexStats:
    """How the index was brought up to date at open: a hook for tests and diagnostics.

    ``mode``: ``"missing"`` (no mailbox file), ``"unchanged"`` (nothing parsed), ``"tail"``
    (only the region from the last indexed message on was parsed) or ``"full"``.
    ``scanned_bytes``: how many bytes of the mailbox were parsed.
    """

    mode: Literal["missing", "unchanged", "tail", "full"]
    scanned_bytes: int


@dataclass
class Index:
    uidvalidity: int
    next_serial: int
    dev: int
    ino: int
    size: int
    mtime_ns: int
    end: int
    entries: list[Entry]
    #: Read from an older format: re-index in full (carrying the UIDs over) before use.
    outdated: bool = False


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_index(path: Path) -> Index | None:
    try:
        with open(path, "rb") as f:
            header: Any = json.loads(f.readline())
            if not isinstance(header, dict) or header.get("format") != _INDEX_FORMAT:
                raise ValueError("not a posthouse mbox index")
            version = header.get("version")
            if version not in (_INDEX_VERSION, _OLD_VERSION):
                raise ValueError(f"unsupported version {version!r}")
            fields = ("uidvalidity", "next_serial", "dev", "ino", "size", "mtime_ns", "end")
            if not all(_is_int(header.get(name)) for name in (*fields, "count")):
                raise ValueError("bad header")
            # One JSON array for all entry lines: one parser call instead of one per message.
            rows: Any = json.loads(b"[" + b",".join(f.read().splitlines()) + b"]")
            entries = _entries(rows, 8 if version == _INDEX_VERSION else 7)
            if len(entries) != header["count"]:
                raise ValueError("incomplete")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _log.warning("%s: unusable index, re-indexing: %s", path, exc)
        return None
    h = {name: int(header[name]) for name in fields}
    return Index(
        h["uidvalidity"],
        h["next_serial"],
        h["dev"],
        h["ino"],
        h["size"],
        h["mtime_ns"],
        h["end"],
        entries,
        outdated=version != _INDEX_VERSION,
    )


def _entries(rows: Any, width: int) -> list[Entry]:
    """The entries of an index's rows, checked column by column (quick for big maildrops)."""
    if not isinstance(rows, list) or not all(
        type(row) is list and len(row) == width for row in rows
    ):
        raise ValueError("bad entry")
    columns = list(zip(*rows, strict=True)) or [()] * width
    offset, length, from_len, content_len, size, uid, ident = columns[:7]
    plain = columns[7] if width == 8 else (0,) * len(rows)
    if (
        not all(_all_naturals(column) for column in columns[:5])
        or not _all_of(str, uid)
        or not _all_of(str, ident)
        or not (_all_of(int, plain) and set(plain) <= {0, 1})
    ):
        raise ValueError("bad entry")
    return list(
        map(Entry, offset, length, from_len, content_len, size, ident, map(bool, plain), uid)
    )


def _all_of(kind: type, column: tuple[Any, ...]) -> bool:
    return set(map(type, column)) <= {kind}  # exact types: a JSON true is no int here


def _all_naturals(column: tuple[Any, ...]) -> bool:
    return _all_of(int, column) and (not column or min(column) >= 0)


def save_index(path: Path, index: Index) -> None:
    tmp = path.with_name(path.name + ".tmp")
    header = {
        "format": _INDEX_FORMAT,
        "version": _INDEX_VERSION,
        "uidvalidity": index.uidvalidity,
        "next_serial": index.next_serial,
        "dev": index.dev,
        "ino": index.ino,
        "size": index.size,
        "mtime_ns": index.mtime_ns,
        "end": index.end,
        "count": len(index.entries),
    }
    try:
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
            for e in index.entries:
                row = [e.offset, e.length, e.from_len, e.content_len, e.size, e.uid, e.ident]
                row.append(int(e.plain))
                f.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


# --- bringing the index up to date -----------------------------------------------------------


def refresh_index(
    fd: int, old: Index | None, path: Path, *, scan: ScanFunction = scan
) -> tuple[Index, IndexStats]:
    """The index of the mailbox open at ``fd`` (at ``path``), reusing ``old`` if it can.

    Call under the mailbox lock.  ``old`` may get new serials handed out (its
    ``next_serial`` is advanced); the result is a new :class:`Index` describing the
    mailbox as it is now.
    """
    st = os.fstat(fd)
    reusable = (
        old is not None
        and not old.outdated
        and (old.dev, old.ino) == (st.st_dev, st.st_ino)
        and st.st_size >= old.size
        and st.st_size >= old.end
        and (st.st_size > old.size or st.st_mtime_ns == old.mtime_ns)
        and (
            not old.entries
            or ident_at(fd, old.entries[-1].offset, old.entries[-1].length) == old.entries[-1].ident
        )
    )
    if old is not None and reusable:
        if st.st_size == old.end:
            stats = IndexStats("unchanged", 0)
            entries = old.entries
        elif old.entries:
            last = old.entries[-1]
            scanned, nbytes = scan(fd, last.offset, path)
            if not scanned or scanned[0].offset != last.offset:  # pragma: no cover
                return _full(fd, st, old, path, scan)
            entries = [*old.entries[:-1], Entry.of(scanned[0], last.uid)]
            entries += [_new_entry(old, s) for s in scanned[1:]]
            stats = IndexStats("tail", nbytes)
        else:
            return _full(fd, st, old, path, scan)
        return _described(old, st, entries), stats
    if old is not None and old.outdated:
        _log.info("%s: index of an older format; re-indexing", path)
    elif old is not None and old.entries:
        _log.info("%s: mailbox changed by another program; re-indexing", path)
    return _full(fd, st, old, path, scan)


def _full(
    fd: int, st: os.stat_result, old: Index | None, path: Path, scan: ScanFunction
) -> tuple[Index, IndexStats]:
    if old is None:
        old = Index(int(time.time()), 1, 0, 0, 0, 0, 0, [])
    carry: dict[tuple[str, int], collections.deque[str]] = {}
    for e in old.entries:
        carry.setdefault((e.ident, e.length), collections.deque()).append(e.uid)
    scanned, nbytes = scan(fd, 0, path)
    entries = []
    for s in scanned:
        uids = carry.get((s.ident, s.length))
        if uids:
            entries.append(Entry.of(s, uids.popleft()))
        else:
            entries.append(_new_entry(old, s))
    return _described(old, st, entries), IndexStats("full", nbytes)


def _new_entry(index: Index, s: Scanned) -> Entry:
    uid = f"{index.uidvalidity}.{index.next_serial}"
    index.next_serial += 1
    return Entry.of(s, uid)


def _described(old: Index, st: os.stat_result, entries: list[Entry]) -> Index:
    return Index(
        old.uidvalidity,
        old.next_serial,
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_size,
        entries,
    )
