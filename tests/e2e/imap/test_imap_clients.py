"""IMAP end to end: a real ``posthouse serve`` on 127.0.0.1 and real clients (imaplib,
imapclient, curl), IDLE woken from another process, and hostile input."""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import imapclient
import pytest

from tests.e2e.conftest import PASSWORD, Server, wait_until
from tests.e2e.test_pop3 import set_type

MESSAGE = (
    b"From: Alice Example <alice@example.test>\r\n"
    b"To: bob@example.test\r\n"
    b"Subject: quarterly report\r\n"
    b"Message-ID: <r1@example.test>\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"the numbers are good\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAw==\r\n"
    b"--b1--\r\n"
)


def simple(subject: str, body: str = "hello") -> bytes:
    return f"From: x@example.test\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()


def flat(result: tuple[str, list[object]]) -> bytes:
    """A FETCH answer as it was on the wire (imaplib splits it at literals)."""
    out = bytearray()
    for item in ok(result):
        if isinstance(item, tuple):
            header, literal = item
            out += header + b"\r\n" + literal
        else:
            assert isinstance(item, bytes)
            out += item
    return bytes(out)


def login(server: Server, user: str = "alice") -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login(user, PASSWORD)
    return client


def ok(result: tuple[str, list[object]]) -> list[object]:
    status, data = result
    assert status == "OK", data
    return data


def test_imaplib_every_command(imap_server: Server) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server.ports["imap"], timeout=30)
    assert "IMAP4REV1" in client.capabilities
    ok(client.login("alice", PASSWORD))
    caps = ok(client.capability())[0]
    for name in (b"UIDPLUS", b"MOVE", b"CONDSTORE", b"QRESYNC", b"ESEARCH", b"IDLE"):
        assert name in caps  # type: ignore[operator]
    assert ok(client.namespace())[0] == b'(("INBOX." ".")) (("user." ".")) (("" "."))'
    typ, data = client._simple_command("ID", "NIL")
    assert typ == "OK"
    assert client.untagged_responses.pop("ID") == [b'("name" "posthouse")']
    listing = ok(client.list())
    assert b'(\\HasChildren) "." "INBOX"' in listing
    assert any(b"\\Sent" in line and b"INBOX.Sent" in line for line in listing)  # type: ignore[operator]
    ok(client.create("INBOX.work"))
    ok(client.create("INBOX.work.old"))
    assert client.create("INBOX.work")[0] == "NO"
    ok(client.rename("INBOX.work.old", "INBOX.work.archive"))
    ok(client.subscribe("INBOX.work"))
    assert b'() "." "INBOX.work"' in ok(client.lsub('""', "INBOX.w*"))
    ok(client.unsubscribe("INBOX.work"))
    # APPEND with flags and an internal date; UIDPLUS APPENDUID.
    date = imaplib.Time2Internaldate(time.mktime((2026, 11, 2, 8, 30, 0, 0, 0, -1)))
    appended = ok(client.append("INBOX", r"(\Flagged $Work)", date, MESSAGE))[0]
    match = re.match(rb"\[APPENDUID (\d+) (\d+)\]", appended)  # type: ignore[arg-type]
    assert match
    uidvalidity, uid = int(match.group(1)), int(match.group(2))
    ok(client.append("INBOX", None, None, simple("second", "second body")))
    status = ok(client.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"))
    assert f"UIDVALIDITY {uidvalidity}".encode() in status[0]  # type: ignore[operator]
    assert b"MESSAGES 2" in status[0] and b"UNSEEN 2" in status[0]  # type: ignore[operator]
    # EXAMINE is read-only: FETCH BODY[] does not set \Seen.
    assert ok(client.select("INBOX", readonly=True)) == [b"2"]
    ok(client.fetch("1", "(BODY[TEXT])"))
    assert client.store("1", "+FLAGS", r"(\Seen)")[0] == "NO"
    ok(client.select("INBOX"))
    assert ok(client.check()) == [b"CHECK completed"]
    data = ok(client.fetch("1", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)"))
    text = data[0]
    assert isinstance(text, bytes)
    assert f"UID {uid} ".encode() in text and b"\\Flagged" in text and b"$Work" in text
    assert f"RFC822.SIZE {len(MESSAGE)}".encode() in text
    assert b'INTERNALDATE " 2-Nov-2026 08:30:00' in text
    assert (
        b'"quarterly report"' in text and b'(("Alice Example" NIL "alice" "example.test"))' in text
    )
    assert b'"MIXED" ("BOUNDARY" "b1")' in text
    parts = flat(
        client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[1] BODY.PEEK[]<0.4>)")
    )
    assert b"{29}\r\nSubject: quarterly report\r\n\r\n" in parts
    assert b'BODY[1] "the numbers are good"' in parts
    assert b'BODY[]<0> "From"' in parts
    binary = flat(client.fetch("1", "(BINARY.PEEK[2] BINARY.SIZE[2])"))
    assert b"BINARY[2] ~{4}\r\n\x00\x01\x02\x03 BINARY.SIZE[2] 4" in binary
    assert b"\\Seen" not in ok(client.fetch("1", "FLAGS"))[0]  # type: ignore[operator]
    ok(client.fetch("1", "(BODY[1])"))  # not PEEK: sets \Seen
    assert b"\\Seen" in ok(client.fetch("1", "FLAGS"))[0]  # type: ignore[operator]
    # SEARCH, UID SEARCH, ESEARCH.
    assert ok(client.search(None, "SUBJECT", "quarterly")) == [b"1"]
    assert ok(client.search(None, "BODY", '"second body"')) == [b"2"]
    assert ok(client.uid("SEARCH", "SEEN")) == [str(uid).encode()]
    assert ok(client.search(None, "OR", "FLAGGED", "UNSEEN")) == [b"1 2"]
    typ, _ = client._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    assert typ == "OK"
    esearch = client.untagged_responses.pop("ESEARCH")[0]
    assert esearch.endswith(b" MIN 1 MAX 2 COUNT 2")  # type: ignore[union-attr]
    # SORT and THREAD.
    assert ok(client.sort("(SUBJECT)", "UTF-8", "ALL")) == [b"1 2"]
    assert ok(client.sort("(REVERSE ARRIVAL)", "UTF-8", "ALL")) == [b"2 1"]
    assert ok(client.thread("ORDEREDSUBJECT", "UTF-8", "ALL")) == [b"(1)(2)"]
    # STORE, COPY (COPYUID), MOVE, EXPUNGE, UID EXPUNGE.
    assert b"\\Answered" in ok(client.store("2", "+FLAGS", r"(\Answered)"))[0]  # type: ignore[operator]
    copied = ok(client.copy("1:2", "INBOX.work"))[0]
    assert copied.startswith(b"[COPYUID ")  # type: ignore[union-attr]
    assert client.copy("1", "INBOX.nowhere")[0] == "NO"
    assert b"TRYCREATE" in client.copy("1", "INBOX.nowhere")[1][0]  # type: ignore[operator]
    ok(client._simple_command("MOVE", "2", "INBOX.work.archive"))
    assert client.untagged_responses.pop("EXPUNGE") == [b"2"]
    ok(client.store("1", "+FLAGS", r"(\Deleted)"))
    assert ok(client.expunge()) == [b"1"]
    assert ok(client.select("INBOX.work")) == [b"2"]
    ok(client.uid("STORE", "1:*", "+FLAGS", r"(\Deleted)"))
    ok(client.uid("EXPUNGE", "1"))
    assert ok(client.status("INBOX.work", "(MESSAGES)"))[0] == b'"INBOX.work" (MESSAGES 1)'
    ok(client._simple_command("UNSELECT"))
    assert client.state == "SELECTED"  # imaplib does not know UNSELECT; the server does:
    with pytest.raises(imaplib.IMAP4.error, match="FETCH needs a selected mailbox"):
        client.fetch("1", "FLAGS")
    ok(client.select("INBOX.work"))
    ok(client.close())  # expunges the \Deleted message silently
    assert ok(client.status("INBOX.work", "(MESSAGES)"))[0] == b'"INBOX.work" (MESSAGES 0)'
    ok(client.delete("INBOX.work.archive"))
    assert client.select("INBOX.work.archive")[0] == "NO"
    assert client.logout()[0] == "BYE"


def test_imaplib_starttls_condstore_and_qresync(imap_server: Server) -> None:
    context = ssl.create_default_context()
    imap_server.ca.configure_trust(context)
    client = imaplib.IMAP4("127.0.0.1", imap_server.ports["imap"], timeout=30)
    client.starttls(context)
    ok(client.login("alice", PASSWORD))
    ok(client.append("INBOX", None, None, simple("one")))
    ok(client.append("INBOX", None, None, simple("two")))
    typ, data = client._simple_command("ENABLE", "QRESYNC")
    assert typ == "OK"
    assert client.untagged_responses.pop("ENABLED") == [b"QRESYNC"]
    ok(client.select("INBOX"))
    modseq = int(client.untagged_responses.pop("HIGHESTMODSEQ")[0])
    typ, data = client._simple_command(
        "UID", "STORE", "1", "(UNCHANGEDSINCE 1) +FLAGS.SILENT", r"(\Seen)"
    )
    assert typ == "OK" and b"MODIFIED 1" in data[0]  # type: ignore[operator]
    typ, data = client.uid("STORE", "1", f"(UNCHANGEDSINCE {modseq}) +FLAGS", r"(\Seen)")
    assert typ == "OK" and b"MODSEQ" in data[0]  # type: ignore[operator]
    fetched = ok(client.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {modseq})"))
    assert len(fetched) == 1 and b"UID 1 " in fetched[0]  # type: ignore[operator]
    ok(client.store("2", "+FLAGS", r"(\Deleted)"))
    ok(client.expunge())
    assert client.untagged_responses.pop("VANISHED") == [b"2"]
    assert client.logout()[0] == "BYE"


def test_implicit_tls_listener(imap_server: Server) -> None:
    context = ssl.create_default_context()
    imap_server.ca.configure_trust(context)
    client = imaplib.IMAP4_SSL("127.0.0.1", imap_server.ports["imaps"], ssl_context=context)
    assert "AUTH=PLAIN" in client.capabilities
    ok(client.login("bob", PASSWORD))
    ok(client.select("INBOX"))
    assert client.logout()[0] == "BYE"


def test_wrong_password_and_privacy(imap_server: Server) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server.ports["imap"], timeout=30)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login("alice", "wrong")
    ok(client.login("alice", PASSWORD))
    # A mailbox of another user that alice may not see answers like a missing one.
    other = client.select("user.bob")
    missing = client.select("user.nobody")
    assert other[0] == missing[0] == "NO"
    assert b"NONEXISTENT" in other[1][0] and b"NONEXISTENT" in missing[1][0]  # type: ignore[operator]
    client.logout()


def test_imapclient(imap_server: Server) -> None:
    client = imapclient.IMAPClient("127.0.0.1", port=imap_server.ports["imap"], ssl=False)
    client.login("carol", PASSWORD)
    assert client.has_capability("IDLE") and client.has_capability("MOVE")
    assert client.folder_exists("INBOX.Sent")
    assert not client.folder_exists("INBOX.none")
    assert client.enable("CONDSTORE") == [b"CONDSTORE"]
    client.create_folder("INBOX.Lists")
    specials = {name: flags for flags, _, name in client.list_folders()}
    assert b"\\Trash" in specials["INBOX.Trash"]
    client.append("INBOX", MESSAGE, flags=[imapclient.SEEN])
    client.append("INBOX", simple("ping"))
    info = client.select_folder("INBOX")
    assert info[b"EXISTS"] == 2 and info[b"UIDVALIDITY"] > 0
    uids = client.search(["SUBJECT", "ping"])
    assert len(uids) == 1
    fetched = client.fetch(uids, ["ENVELOPE", "FLAGS", "BODY.PEEK[TEXT]"])
    envelope = fetched[uids[0]][b"ENVELOPE"]
    assert envelope.subject == b"ping"
    assert fetched[uids[0]][b"BODY[TEXT]"] == b"hello\r\n"
    client.add_flags(uids, [imapclient.FLAGGED])
    assert imapclient.FLAGGED in client.get_flags(uids)[uids[0]]
    by_subject = client.sort(["SUBJECT"])
    assert by_subject == [uids[0], uids[0] - 1]  # "ping" before "quarterly report"
    client.move(uids, "INBOX.Lists")
    assert client.folder_status("INBOX.Lists", [b"MESSAGES"])[b"MESSAGES"] == 1
    assert client.search() == [uids[0] - 1]
    client.logout()


def append_from_another_process(server: Server, user: str, subject: str) -> None:
    """A message put into the store by a separate process (as delivery or a tool would)."""
    script = (
        "import asyncio, sys, datetime as dt\n"
        "from posthouse.app import mail_store_for\n"
        "from posthouse.config.load import load_settings\n"
        "from posthouse.server.imap.views import prepared\n"
        "store = mail_store_for(load_settings(sys.argv[1]))\n"
        "async def main():\n"
        "    m = prepared(sys.argv[3].encode(), dt.datetime.now(dt.UTC), frozenset())\n"
        "    await store.deliver(sys.argv[2], [m])\n"
        "    await store.backend.close()\n"
        "asyncio.run(main())\n"
    )
    message = f"From: x@example.test\r\nSubject: {subject}\r\n\r\nhi\r\n"
    subprocess.run(
        [sys.executable, "-c", script, str(server.config_path), user, message],
        check=True,
        timeout=60,
    )


def test_idle_is_woken_by_a_message_from_another_process(imap_server: Server) -> None:
    client = imapclient.IMAPClient("127.0.0.1", port=imap_server.ports["imap"], ssl=False)
    client.login("alice", PASSWORD)
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    client.idle()
    append_from_another_process(imap_server, "alice", "while idling")
    delivered = time.monotonic()
    responses: list[object] = []
    deadline = time.monotonic() + 30
    while not any(r == (1, b"EXISTS") for r in responses) and time.monotonic() < deadline:
        responses += client.idle_check(timeout=1)
    woken = time.monotonic() - delivered
    assert (1, b"EXISTS") in responses
    assert woken < 5  # within the poll interval of one second, plus a loaded machine
    client.idle_done()
    assert client.search(["SUBJECT", "idling"]) == [1]
    client.logout()


def curl(server: Server, *args: str, path: str = "") -> str:
    url = f"imap://127.0.0.1:{server.ports['imap']}/{path}"
    result = subprocess.run(
        ["curl", "-sS", "--user", f"alice:{PASSWORD}", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_curl(imap_server: Server, tmp_path: Path) -> None:
    message = tmp_path / "message.eml"
    message.write_bytes(simple("from curl", "curl body"))
    curl(imap_server, "-T", str(message), path="INBOX")  # APPEND
    assert "INBOX.Sent" in curl(imap_server)  # LIST
    curl(imap_server, "-X", "CREATE INBOX.curl")
    assert "INBOX.curl" in curl(imap_server)
    assert "* SEARCH 1" in curl(imap_server, "-X", "UID SEARCH SUBJECT curl", path="INBOX")
    assert "EXISTS" in curl(imap_server, "-X", "EXAMINE INBOX")
    fetched = curl(imap_server, path="INBOX;UID=1")  # SELECT + FETCH BODY[]
    assert "Subject: from curl" in fetched and "curl body" in fetched


# -- hostile input -------------------------------------------------------------------------


def test_ten_thousand_pipelined_commands(imap_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", imap_server.ports["imap"]), timeout=60) as sock:
        sock.recv(4096)
        sock.sendall(f"l LOGIN alice {PASSWORD}\r\nl2 SELECT INBOX\r\n".encode())
        batch = b"".join(f"n{i} NOOP\r\n".encode() for i in range(10_000))
        sender = threading.Thread(target=sock.sendall, args=(batch + b"z LOGOUT\r\n",))
        sender.start()
        received = bytearray()
        while not received.endswith(b"z OK LOGOUT completed\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        sender.join()
    assert received.count(b" OK NOOP completed\r\n") == 10_000
    assert received.endswith(b"z OK LOGOUT completed\r\n")


def test_disconnect_in_the_middle_of_an_append_literal_writes_nothing(
    imap_server: Server,
) -> None:
    with socket.create_connection(("127.0.0.1", imap_server.ports["imap"]), timeout=30) as sock:
        sock.recv(4096)
        sock.sendall(f"l LOGIN bob {PASSWORD}\r\na APPEND INBOX {{100000}}\r\n".encode())
        received = b""
        while b"+ " not in received:
            received += sock.recv(4096)
        sock.sendall(b"x" * 50_000)
    client = login(imap_server, "bob")
    assert ok(client.status("INBOX", "(MESSAGES UIDNEXT)"))[0] == b'"INBOX" (MESSAGES 0 UIDNEXT 1)'
    spool = imap_server.home / "data" / "imap" / "spool"
    leftovers = [p for p in spool.rglob("*") if p.is_file() and p.stat().st_size >= 50_000]
    assert leftovers == []
    client.logout()


def test_select_of_a_mailbox_another_session_is_deleting(imap_server: Server) -> None:
    deleter, selector = login(imap_server), login(imap_server)
    outcomes: set[str] = set()
    for round_ in range(30):
        ok(deleter.create(f"INBOX.gone{round_}"))
        thread = threading.Thread(target=deleter.delete, args=(f"INBOX.gone{round_}",))
        thread.start()
        typ, data = selector.select(f"INBOX.gone{round_}")
        thread.join()
        outcomes.add(typ)
        if typ == "NO":
            assert b"NONEXISTENT" in data[0]  # type: ignore[operator]
        ok(selector.noop())
    assert outcomes <= {"OK", "NO"}
    selector.logout()
    deleter.logout()


def test_store_racing_expunge_from_another_session(imap_server: Server) -> None:
    storer, expunger = login(imap_server, "carol"), login(imap_server, "carol")
    for number in range(20):
        ok(storer.append("INBOX", None, None, simple(f"m{number}")))
    ok(storer.select("INBOX"))
    ok(expunger.select("INBOX"))
    ok(expunger.store("1:*", "+FLAGS", r"(\Deleted)"))
    thread = threading.Thread(target=expunger.expunge)
    thread.start()
    results = [storer.store("1:20", "+FLAGS", r"(\Seen)")[0] for _ in range(10)]
    thread.join()
    assert set(results) == {"OK"}
    # Until told, the sequence numbers stay valid; the NOOP then reports the EXPUNGEs.
    typ, _ = storer.noop()
    assert typ == "OK"
    assert len(storer.untagged_responses.pop("EXPUNGE", [])) == 20
    assert ok(storer.search(None, "ALL")) == [b""]
    storer.logout()
    expunger.logout()


def imap_login(server: Server, user: str, password: str) -> tuple[str, bytes]:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        typ, data = client._simple_command("LOGIN", user, password)
        return typ, data[0]  # type: ignore[return-value]
    finally:
        client.shutdown()


def test_service_types_pick_the_imap_password(imap_server: Server) -> None:
    """12.5.2: IMAP and "IMAP with mail password" exactly as POP3 uses them."""
    set_type(imap_server, "alice", "imap-mailpass", "mail-only-secret")
    assert imap_login(imap_server, "alice", "mail-only-secret")[0] == "OK"
    typ, text = imap_login(imap_server, "alice", PASSWORD)
    assert typ == "NO" and b"[AUTHENTICATIONFAILED]" in text
    set_type(imap_server, "bob", "pop")
    typ, text = imap_login(imap_server, "bob", PASSWORD)
    assert typ == "NO" and b"not enabled for IMAP" in text
    set_type(imap_server, "carol", "imap")
    assert imap_login(imap_server, "carol", PASSWORD)[0] == "OK"
    log = imap_server.home / "server.log"
    wait_until(
        lambda: "NOTICE imap: carol logged in from 127.0.0.1" in log.read_text(),
        30,
        "the login logged at NOTICE",
    )
