"""IMAP extensions end to end over a real server: LIST-EXTENDED/LIST-STATUS/SPECIAL-USE,
MULTIAPPEND and APPENDLIMIT, QRESYNC SELECT, ESEARCH SAVE, THREAD REFERENCES, SASL
AUTHENTICATE with SASL-IR, UTF8=ACCEPT and modified UTF-7 names, COMPRESS=DEFLATE."""

from __future__ import annotations

import base64
import imaplib
import re
import socket
import zlib

from tests.e2e.conftest import PASSWORD, Server


def login(server: Server, user: str = "alice") -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login(user, PASSWORD)
    return client


def command(client: imaplib.IMAP4, name: str, *args: str) -> tuple[str, list[bytes]]:
    """Send any command; returns the tagged status and every untagged line it drew."""
    client.untagged_responses.clear()
    typ, data = client._simple_command(name, *args)
    lines: list[bytes] = []
    for key, values in client.untagged_responses.items():
        lines += [key.encode() + b" " + v if isinstance(v, bytes) else key.encode() for v in values]
    return typ, [data[0] if isinstance(data[0], bytes) else b"", *lines]


class Raw:
    """A raw IMAP connection for what imaplib cannot say."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=30)
        self.buffer = b""
        self.inflate: zlib._Decompress | None = None
        self.deflate: zlib._Compress | None = None
        self.until(b"* OK")

    def recv(self) -> None:
        data = self.sock.recv(65536)
        assert data, "connection closed"
        self.buffer += self.inflate.decompress(data) if self.inflate else data

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self.recv()
        end = self.buffer.index(b"\r\n") + 2
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line

    def until(self, tag: bytes) -> bytes:
        """Every line up to the one starting with ``tag`` (the tagged response)."""
        lines = b""
        while True:
            line = self.line()
            lines += line
            if line.startswith(tag):
                return lines

    def send(self, data: bytes) -> None:
        if self.deflate:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def command(self, tag: bytes, line: bytes) -> bytes:
        self.send(tag + b" " + line + b"\r\n")
        return self.until(tag + b" ")

    def close(self) -> None:
        self.sock.close()


def test_list_extended_status_and_special_use(imap_server: Server) -> None:
    client = login(imap_server)
    client.append("INBOX.Sent", None, None, b"Subject: sent\r\n\r\nx\r\n")
    typ, lines = command(
        client, "LIST", "(SPECIAL-USE)", '""', '"*"', "RETURN", "(STATUS (MESSAGES UIDNEXT))"
    )
    assert typ == "OK"
    listed = b"\n".join(lines)
    assert b'(\\HasNoChildren \\Sent) "." "INBOX.Sent"' in listed
    assert b'"INBOX.Sent" (MESSAGES 1 UIDNEXT 2)' in listed
    assert b'"INBOX"' not in listed.replace(b'"INBOX.', b"")  # INBOX has no special use
    client.subscribe("INBOX.Sent")
    typ, lines = command(client, "LIST", "(SUBSCRIBED)", '""', '"INBOX.*"')
    listed = b"\n".join(lines)
    assert b"\\Subscribed" in listed and b"INBOX.Sent" in listed
    client.unsubscribe("INBOX.Sent")
    typ, lines = command(client, "LIST", "(SUBSCRIBED)", '""', '"INBOX.Sent"')
    assert b"INBOX.Sent" not in b"\n".join(lines[1:])
    client.logout()


def test_multiappend_appendlimit_and_toobig(imap_server: Server) -> None:
    raw = Raw(imap_server)
    raw.command(b"l", f"LOGIN alice {PASSWORD}".encode())
    one, two = b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n2\r\n"
    raw.send(
        b"m APPEND INBOX (\\Seen) {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(one), one, len(two), two)
    )
    answer = raw.until(b"m ")
    assert re.search(rb"m OK \[APPENDUID \d+ 1:2\]", answer)
    # A message over APPENDLIMIT is refused before one octet of it is sent.
    raw.send(b"t APPEND INBOX {999999999}\r\n")
    answer = raw.until(b"t ")
    assert answer.startswith(b"t NO [TOOBIG]") and b"+ " not in answer
    assert b"MESSAGES 2" in raw.command(b"s", b"STATUS INBOX (MESSAGES)")
    raw.close()


def test_qresync_select_reports_vanished_and_changed(imap_server: Server) -> None:
    client = login(imap_server, "bob")
    for subject in ("a", "b", "c"):
        client.append("INBOX", None, None, f"Subject: {subject}\r\n\r\nx\r\n".encode())
    command(client, "ENABLE", "QRESYNC")
    client.select("INBOX")
    uidvalidity = int(client.untagged_responses["UIDVALIDITY"][0])
    modseq = int(client.untagged_responses["HIGHESTMODSEQ"][0])
    client.store("1", "+FLAGS", r"(\Flagged)")
    client.store("2", "+FLAGS", r"(\Deleted)")
    client.expunge()
    client.close()
    typ, lines = command(client, "SELECT", "INBOX", f"(QRESYNC ({uidvalidity} {modseq} 1:3))")
    assert typ == "OK"
    seen = b"\n".join(lines)
    assert b"VANISHED (EARLIER) 2" in seen
    assert re.search(rb"FETCH 1 \(UID 1 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", seen)
    client.logout()


def test_esearch_save_and_thread_references(imap_server: Server) -> None:
    client = login(imap_server, "carol")
    client.append("INBOX", None, None, b"Message-ID: <a@x>\r\nSubject: topic\r\n\r\n1\r\n")
    client.append("INBOX", None, None, b"Message-ID: <c@x>\r\nSubject: other\r\n\r\n2\r\n")
    client.append(
        "INBOX",
        None,
        None,
        b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nSubject: Re: topic\r\n\r\n3\r\n",
    )
    client.select("INBOX")
    typ, lines = command(client, "SEARCH", "RETURN", "(SAVE)", "SUBJECT", "topic")
    assert typ == "OK" and not any(line.startswith(b"ESEARCH") for line in lines)
    typ, data = client.fetch("$", "(UID)")
    assert typ == "OK" and [d for d in data if d] == [b"1 (UID 1)", b"3 (UID 3)"]
    assert client.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(1 3)(2)"])
    client.logout()


def test_authenticate_plain_with_an_initial_response(imap_server: Server) -> None:
    raw = Raw(imap_server)
    token = base64.b64encode(f"\0bob\0{PASSWORD}".encode()).decode()
    answer = raw.command(b"a", f"AUTHENTICATE PLAIN {token}".encode())
    assert answer.startswith(b"a OK [CAPABILITY IMAP4rev1")
    raw.close()
    client = imaplib.IMAP4("127.0.0.1", imap_server.ports["imap"], timeout=30)
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0alice\0{PASSWORD}".encode())
    assert typ == "OK" and client.state == "AUTH"
    client.logout()


def test_international_mailbox_names(imap_server: Server) -> None:
    client = login(imap_server)
    assert client.create("INBOX.K&AOQ-se")[0] == "OK"  # "Käse" in modified UTF-7
    assert b'"INBOX.K&AOQ-se"' in b"\n".join(client.list('""', "INBOX.K*")[1])  # type: ignore[arg-type]
    raw = Raw(imap_server)
    raw.command(b"l", f"LOGIN alice {PASSWORD}".encode())
    raw.command(b"e", b"ENABLE UTF8=ACCEPT")
    listing = raw.command(b"t", b'LIST "" "INBOX.K*"')
    assert '"INBOX.Käse"'.encode() in listing
    raw.close()
    client.logout()


def test_compress_deflate(imap_server: Server) -> None:
    raw = Raw(imap_server)
    raw.command(b"l", f"LOGIN alice {PASSWORD}".encode())
    assert raw.command(b"c", b"COMPRESS DEFLATE").startswith(b"c OK")
    raw.inflate = zlib.decompressobj(-15)
    raw.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    answer = raw.command(b"s", b"SELECT INBOX")
    assert b"EXISTS" in answer and b"s OK [READ-WRITE]" in answer
    assert raw.command(b"n", b"NOOP") == b"n OK NOOP completed\r\n"
    raw.close()
