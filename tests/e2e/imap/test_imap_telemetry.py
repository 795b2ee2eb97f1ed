"""The telemetry log (chapter 12.5.5) over a real server: a folder under the IMAP
configuration directory's log/ named after a user records that user's whole sessions,
passwords masked, one file per session; other users are not recorded."""

from __future__ import annotations

import base64
import imaplib
import re
import stat
import zlib

from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.imap.test_imap_extensions import Raw


def test_sessions_of_a_user_with_a_log_folder_are_recorded(imap_server: Server) -> None:
    logs = imap_server.home / "data" / "imap" / "log"
    (logs / "alice").mkdir(parents=True)

    client = imaplib.IMAP4("127.0.0.1", imap_server.ports["imap"], timeout=30)
    client.login("alice", PASSWORD)
    client.select("INBOX")
    client.append("INBOX", None, None, b"Subject: logged\r\n\r\nhello telemetry\r\n")
    client.logout()

    other = imaplib.IMAP4("127.0.0.1", imap_server.ports["imap"], timeout=30)
    other.login("bob", PASSWORD)
    other.select("INBOX")
    other.logout()

    raw = Raw(imap_server)  # AUTHENTICATE PLAIN with SASL-IR, then COMPRESS=DEFLATE
    plain = base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
    assert b"a OK" in raw.command(b"a", f"AUTHENTICATE PLAIN {plain}".encode())
    assert b"c OK" in raw.command(b"c", b"COMPRESS DEFLATE")
    raw.inflate = zlib.decompressobj(-15)
    raw.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert b"d OK" in raw.command(b"d", b"STATUS INBOX (MESSAGES)")
    raw.command(b"e", b"LOGOUT")
    raw.close()

    assert sorted(p.name for p in logs.iterdir()) == ["alice"]  # nothing made for bob
    files = sorted((logs / "alice").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert len(files) == 2
    for path in files:
        assert re.fullmatch(r"imap-\d+-\d+-\d+", path.name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_bytes()
        assert text.startswith(b"---------- alice ")
        assert PASSWORD.encode() not in text and plain.encode() not in text
    first, second = (path.read_bytes() for path in files)
    assert re.match(rb"---------- alice [^\n]*\n\n>\d+>\* OK \[CAPABILITY ", first)  # greeting
    assert re.search(rb"<\d+<[A-Z]+\d+ LOGIN \*\*\*\r\n", first)
    assert re.search(rb"<\d+<[A-Z]+\d+ SELECT INBOX\r\n", first)
    assert re.search(rb">\d+>\* FLAGS \([^)]*\)\r\n\* 0 EXISTS\r\n", first)
    assert b"hello telemetry" in first  # the APPEND literal, as sent
    assert re.search(rb"\* BYE", first)
    assert re.search(rb"<\d+<a AUTHENTICATE PLAIN \*\*\*\r\n", second)
    assert re.search(rb"<\d+<d STATUS INBOX \(MESSAGES\)\r\n", second)  # inside COMPRESS
    assert re.search(rb">\d+>\* STATUS \"INBOX\" \(MESSAGES 1\)\r\n", second)
