"""Reading Qualcomm's popauth database, for ``mailauth -convert`` (§12.4.2.2).

qpopper's ``popauth`` keeps the APOP secrets in a dbm database (``/etc/pop.auth`` by
default): one record per user, keyed by the user name, whose value is the secret made
unreadable at a glance ("obscured", not encrypted).  This module reads such a file in the
two forms a qpopper installation leaves:

* **ndbm** as BSD and Tru64 UNIX write it: ``FILE.pag`` (the records) and ``FILE.dir``
  (the hash bitmap, not needed to list the records).  ``FILE.pag`` is a sequence of pages
  of 1024 bytes (``PBLKSIZ``; 4096 and 8192 are tried too) in the machine's byte order:
  a 16-bit count ``n`` of items, then ``n`` 16-bit offsets; item ``i`` lies from
  ``offset[i]`` to ``offset[i-1]`` (the page's end for the first), keys and values
  alternating.  Empty pages (holes of a sparse file) have ``n = 0``.
* **gdbm** (Linux builds, and the ndbm emulation of gdbm, whose ``FILE.pag`` is a gdbm
  file): read through the system's libgdbm, as its format is the library's business.

Keys may carry the terminating NUL the C code stored (``strlen + 1``); it is dropped.
A value is the secret, NUL-terminated, each byte complemented by qpopper's ``obscure``
(every byte then has its high bit set); a value whose bytes are not all complemented is
taken as the clear secret, as older releases stored it.  An empty secret or ``*`` means
the user may not use APOP and is skipped.

This module only reads: :func:`popauth_records` yields what the file holds, the caller
stores it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_POPAUTH", "PopauthError", "PopauthRecord", "popauth_records"]

DEFAULT_POPAUTH = "/etc/pop.auth"

#: gdbm's magic numbers (original, 32- and 64-bit offsets, and the numsync variants).
_GDBM_MAGICS = (0x13579ACE, 0x13579ACD, 0x13579ACF, 0x13579AD0, 0x13579AD1)
_PAGE_SIZES = (1024, 4096, 8192)
MAX_RECORDS = 1_000_000  # a limit on input: no popauth database has more users


class PopauthError(ValueError):
    """The file looks like a popauth database but cannot be read."""


@dataclass(frozen=True)
class PopauthRecord:
    """One user of the database: ``secret`` is None when the record is not usable
    (``problem`` says why)."""

    user: str
    secret: str | None
    problem: str = ""


def popauth_records(path: Path) -> Iterator[PopauthRecord] | None:
    """The records of the popauth database ``path`` (``FILE``, ``FILE.pag`` or ``FILE.dir``
    all name it); None when ``path`` is no dbm database (a text dump, say)."""
    base = path.with_suffix("") if path.suffix in (".pag", ".dir") else path
    for candidate in (base, base.with_name(base.name + ".pag")):
        head = _head(candidate)
        if head is None:
            continue
        if _is_gdbm(head):
            return _records(_gdbm_items(candidate))
        if candidate.name.endswith(".pag"):
            return _records(_ndbm_items(candidate.read_bytes()))
    return None


def _head(path: Path) -> bytes | None:
    try:
        with path.open("rb") as file:
            return file.read(4)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _is_gdbm(head: bytes) -> bool:
    if len(head) < 4:
        return False
    return any(struct.unpack(order + "I", head)[0] in _GDBM_MAGICS for order in "<>")


def _records(items: Iterator[tuple[bytes, bytes]]) -> Iterator[PopauthRecord]:
    for key, value in items:
        user = key.rstrip(b"\0").decode("utf-8", "replace")
        secret = _reveal(value)
        if not user:
            continue
        if secret is None:
            yield PopauthRecord(user, None, "the secret is not text")
        elif secret in ("", "*"):
            yield PopauthRecord(user, None, "no APOP secret (APOP disabled for the user)")
        else:
            yield PopauthRecord(user, secret)


def _reveal(value: bytes) -> str | None:
    """Undo qpopper's ``obscure`` (module docstring); None for a secret that is not text."""
    data = value.split(b"\0", 1)[0] if b"\0" in value else value
    if data and all(byte >= 0x80 for byte in data):
        data = bytes(byte ^ 0xFF for byte in data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


# -- ndbm (BSD) ------------------------------------------------------------------------------


def _ndbm_items(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    for size in _PAGE_SIZES:
        for order in "<>":
            pages = _ndbm_pages(data, size, order)
            if pages is not None:
                for items in pages:
                    yield from zip(items[0::2], items[1::2], strict=True)
                return
    raise PopauthError("not an ndbm .pag file (no page size and byte order fits its pages)")


def _ndbm_pages(data: bytes, size: int, order: str) -> list[list[bytes]] | None:
    """Every page's items, or None when some page is not valid in this layout."""
    if not data or len(data) % size:
        return None
    pages: list[list[bytes]] = []
    total = 0
    for start in range(0, len(data), size):
        page = data[start : start + size]
        (count,) = struct.unpack_from(order + "h", page)
        if count < 0 or count % 2 or 2 * (count + 1) > size:
            return None
        offsets = struct.unpack_from(f"{order}{count}h", page, 2)
        end = size
        items: list[bytes] = []
        for offset in offsets:
            if not 2 * (count + 1) <= offset <= end:
                return None
            items.append(page[offset:end])
            end = offset
        total += count // 2
        if total > MAX_RECORDS:
            raise PopauthError(f"more than {MAX_RECORDS} records")
        pages.append(items)
    return pages


# -- gdbm (through the system's library) -------------------------------------------------------


class _Datum(ctypes.Structure):
    _fields_ = [("dptr", ctypes.c_void_p), ("dsize", ctypes.c_int)]


_GDBM_READER = 0


def gdbm_library() -> ctypes.CDLL:
    """The system's libgdbm, with the prototypes this module uses (PopauthError if none)."""
    name = ctypes.util.find_library("gdbm")
    if name is None:
        raise PopauthError("this is a gdbm database and libgdbm is not installed")
    lib = ctypes.CDLL(name)
    lib.gdbm_open.restype = ctypes.c_void_p
    lib.gdbm_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.gdbm_open.argtypes += [ctypes.c_void_p]
    lib.gdbm_firstkey.restype = _Datum
    lib.gdbm_firstkey.argtypes = [ctypes.c_void_p]
    lib.gdbm_nextkey.restype = _Datum
    lib.gdbm_nextkey.argtypes = [ctypes.c_void_p, _Datum]
    lib.gdbm_fetch.restype = _Datum
    lib.gdbm_fetch.argtypes = [ctypes.c_void_p, _Datum]
    lib.gdbm_close.argtypes = [ctypes.c_void_p]
    return lib


def _take(datum: _Datum) -> bytes | None:
    """The bytes of a datum libgdbm allocated, which is then freed."""
    if not datum.dptr:
        return None
    try:
        return ctypes.string_at(datum.dptr, datum.dsize)
    finally:
        _libc().free(ctypes.c_void_p(datum.dptr))


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def _gdbm_items(path: Path) -> Iterator[tuple[bytes, bytes]]:
    lib = gdbm_library()
    handle = lib.gdbm_open(str(path).encode(), 0, _GDBM_READER, 0, None)
    if not handle:
        raise PopauthError(f"{path}: libgdbm cannot open it")
    try:
        key = _take(lib.gdbm_firstkey(handle))
        count = 0
        while key is not None:
            count += 1
            if count > MAX_RECORDS:
                raise PopauthError(f"more than {MAX_RECORDS} records")
            buffer = ctypes.create_string_buffer(key, len(key))  # alive while datum is used
            datum = _Datum(ctypes.addressof(buffer), len(key))
            value = _take(lib.gdbm_fetch(handle, datum))
            if value is not None:
                yield key, value
            key = _take(lib.gdbm_nextkey(handle, datum))
    finally:
        lib.gdbm_close(handle)
