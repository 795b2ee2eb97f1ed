"""``mailauth -convert`` of Qualcomm's popauth database (§12.4.2.2): ndbm and gdbm files."""

from __future__ import annotations

import ctypes
import io
import struct
from pathlib import Path

import pytest

from posthouse.admin.popauth import PopauthRecord, gdbm_library, popauth_records
from posthouse.auth.mailauth import MailAuthDatabase, apop_digest
from posthouse.cli.mailauth import MailAuthFiles
from tests.auth.test_mailauth_cli import Run

pytestmark = pytest.mark.usefixtures("cheap_hashes")


def obscured(secret: str) -> bytes:
    """A secret as qpopper's popauth stores it: each byte complemented, NUL-terminated."""
    return bytes(byte ^ 0xFF for byte in secret.encode()) + b"\0"


RECORDS = {
    b"alice\0": obscured("alice's apop secret"),
    b"bob\0": obscured("b0b-secret"),
    b"carol\0": obscured("*"),  # APOP disabled for carol
    b"dave\0": b"dave-plain\0",  # an older release: the clear secret
}


def write_ndbm(base: Path, records: dict[bytes, bytes], *, page: int = 1024) -> None:
    """``base.pag`` and ``base.dir`` in the BSD ndbm layout: two records per page, with an
    empty page (a hole) between, little-endian as on Alpha and x86."""
    pages = []
    items = list(records.items())
    for start in range(0, len(items), 2):
        chunk = [part for pair in items[start : start + 2] for part in pair]
        offsets, data, end = [], b"", page
        for item in chunk:
            end -= len(item)
            offsets.append(end)
            data = item + data
        head = struct.pack(f"<h{len(offsets)}h", len(offsets), *offsets)
        body = head + b"\0" * (page - len(head) - len(data)) + data
        pages += [body, b"\0" * page]
    base.with_name(base.name + ".pag").write_bytes(b"".join(pages))
    base.with_name(base.name + ".dir").write_bytes(b"\0" * 4096)


class _Datum(ctypes.Structure):
    _fields_ = [("dptr", ctypes.c_char_p), ("dsize", ctypes.c_int)]


def write_gdbm(path: Path, records: dict[bytes, bytes]) -> None:
    """A gdbm file made by the system's libgdbm (GDBM_NEWDB, GDBM_REPLACE)."""
    lib = gdbm_library()
    lib.gdbm_store.argtypes = [ctypes.c_void_p, _Datum, _Datum, ctypes.c_int]
    handle = lib.gdbm_open(str(path).encode(), 0, 3, 0o600, None)
    assert handle, "libgdbm could not create the file"
    try:
        for key, value in records.items():
            assert lib.gdbm_store(handle, _Datum(key, len(key)), _Datum(value, len(value)), 1) == 0
    finally:
        lib.gdbm_close(handle)


def expected_records() -> list[PopauthRecord]:
    return [
        PopauthRecord("alice", "alice's apop secret"),
        PopauthRecord("bob", "b0b-secret"),
        PopauthRecord("carol", None, "no APOP secret (APOP disabled for the user)"),
        PopauthRecord("dave", "dave-plain"),
    ]


def test_an_ndbm_database_is_read_by_any_of_its_names(tmp_path: Path) -> None:
    base = tmp_path / "pop.auth"
    write_ndbm(base, RECORDS)
    for name in (base, tmp_path / "pop.auth.pag", tmp_path / "pop.auth.dir"):
        found = popauth_records(name)
        assert found is not None
        assert sorted(found, key=lambda r: r.user) == expected_records()


@pytest.mark.parametrize("page", [1024, 4096])
def test_ndbm_pages_of_other_sizes(tmp_path: Path, page: int) -> None:
    write_ndbm(tmp_path / "pop.auth", RECORDS, page=page)
    found = popauth_records(tmp_path / "pop.auth")
    assert found is not None and len(list(found)) == 4


def test_a_gdbm_database(tmp_path: Path) -> None:
    path = tmp_path / "pop.auth"
    write_gdbm(path, RECORDS)
    found = popauth_records(path)
    assert found is not None
    assert sorted(found, key=lambda r: r.user) == expected_records()


def test_a_text_dump_is_not_a_database(tmp_path: Path) -> None:
    dump = tmp_path / "dump.txt"
    dump.write_text("alice:secret\n")
    assert popauth_records(dump) is None
    assert popauth_records(tmp_path / "missing") is None


@pytest.mark.parametrize("kind", ["ndbm", "gdbm"])
def test_mailauth_convert_imports_the_secrets(tmp_path: Path, kind: str) -> None:
    files = MailAuthFiles(tmp_path / "mailauth.db", tmp_path / "mailauth.key", tmp_path / "u.db")
    run = Run(files)
    assert run.mailauth("-init") == 0
    base = tmp_path / "pop.auth"
    if kind == "ndbm":
        write_ndbm(base, RECORDS)
    else:
        write_gdbm(base, RECORDS)
    assert run.mailauth("-convert", str(base), stdin=io.StringIO()) == 0, run.err
    assert "imported 3 users, skipped 1 lines" in run.out
    assert "carol: no APOP secret" in run.err
    with MailAuthDatabase(files.database, files.key) as db:
        assert db.users() == ["alice", "bob", "dave"]
        assert db.verify("bob", "b0b-secret")
        # The secret still answers APOP (RFC 1939 §7) after the move.
        stamp = "<1.2@host>"
        assert db.verify_apop("alice", stamp, apop_digest(stamp, "alice's apop secret"))
        assert not db.verify_apop("alice", stamp, apop_digest(stamp, "wrong"))


def test_a_damaged_pag_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    files = MailAuthFiles(tmp_path / "mailauth.db", tmp_path / "mailauth.key", tmp_path / "u.db")
    run = Run(files)
    assert run.mailauth("-init") == 0
    (tmp_path / "pop.auth.pag").write_bytes(b"\x07\x00" + b"\xff" * 1022)
    assert run.mailauth("-convert", str(tmp_path / "pop.auth")) == 64
    assert "popauth database: not an ndbm .pag file" in run.err
