"""Python's imapclient library against a real posthouse, used through its high-level API:
select_folder, search, fetch (BODY[], ENVELOPE, BODYSTRUCTURE), add_flags, move, IDLE
woken by an APPEND from another connection, and folders, SPECIAL-USE, NAMESPACE, STATUS,
SORT, THREAD, UTF-8 SEARCH, CONDSTORE, COPY and UID EXPUNGE."""

from __future__ import annotations

import datetime
import threading

import imapclient

from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.imap.mailbox import append, message, server_view

REPORT = (
    b"From: Alice Example <alice@example.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: quarterly report\r\n"
    b"Message-ID: <q1@example.test>\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"the numbers are good\r\n"
    b"--b1\r\n"
    b"Content-Type: application/pdf; name=report.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--b1--\r\n"
)


def open_client(server: Server) -> imapclient.IMAPClient:
    client = imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=30)
    client.login("bob", PASSWORD)
    return client


def test_imapclient_high_level_session(imap_server: Server) -> None:
    append(imap_server, "INBOX", message("lunch", "sandwiches"), REPORT)
    client = open_client(imap_server)
    selected = client.select_folder("INBOX")
    assert selected[b"EXISTS"] == 2 and selected[b"UIDNEXT"] == 3

    assert client.search(["SUBJECT", "quarterly"]) == [2]
    assert client.search(["BODY", "sandwiches"]) == [1]
    assert client.search("ALL") == [1, 2]

    fetched = client.fetch([2], ["BODY.PEEK[]", "ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE"])[2]
    assert fetched[b"BODY[]"] == REPORT and fetched[b"RFC822.SIZE"] == len(REPORT)
    envelope = fetched[b"ENVELOPE"]
    assert envelope.subject == b"quarterly report"
    assert envelope.message_id == b"<q1@example.test>"
    assert envelope.from_[0].name == b"Alice Example"
    assert (envelope.from_[0].mailbox, envelope.from_[0].host) == (b"alice", b"example.test")
    assert envelope.to[0].mailbox == b"bob"
    structure = fetched[b"BODYSTRUCTURE"]  # media types compare without case (RFC 2045 §5.1)
    assert structure.is_multipart
    parts, subtype = structure[0], structure[1]
    assert subtype.lower() == b"mixed"
    assert (parts[0][0].lower(), parts[0][1].lower()) == (b"text", b"plain")
    assert [part.lower() for part in (parts[1][0], parts[1][1], parts[1][5])] == [
        b"application",
        b"pdf",
        b"base64",
    ]

    client.add_flags([1], [imapclient.FLAGGED, b"$Label1"])
    # \Recent: this is the first session to see the message (RFC 3501 §2.3.2)
    assert set(client.get_flags([1])[1]) == {imapclient.FLAGGED, b"$Label1", imapclient.RECENT}
    assert server_view(imap_server)["lunch"] == {"\\Flagged", "$Label1"}

    client.create_folder("INBOX.Reports")
    client.move([2], "INBOX.Reports")
    assert set(server_view(imap_server)) == {"lunch"}
    assert server_view(imap_server, "INBOX.Reports") == {"quarterly report": set()}
    client.logout()


def test_imapclient_idle_is_woken_by_an_append(imap_server: Server) -> None:
    client = open_client(imap_server)
    client.select_folder("INBOX")
    client.idle()
    other = threading.Thread(target=append, args=(imap_server, "INBOX", message("while idle")))
    other.start()
    responses: list[object] = []
    for _ in range(30):  # a bounded wait: 30 checks of 2 s for the EXISTS
        responses += client.idle_check(timeout=2)
        if (1, b"EXISTS") in responses:
            break
    other.join(timeout=60)
    client.idle_done()
    assert (1, b"EXISTS") in responses, responses
    assert client.fetch([1], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[1][
        b"BODY[HEADER.FIELDS (SUBJECT)]"
    ].startswith(b"Subject: while idle")
    client.logout()


def test_imapclient_folders_sort_thread_and_condstore(imap_server: Server) -> None:
    client = open_client(imap_server)
    assert client.find_special_folder(imapclient.imapclient.SENT) == "INBOX.Sent"
    assert client.find_special_folder(imapclient.imapclient.TRASH) == "INBOX.Trash"
    personal = client.namespace().personal
    assert personal == (("INBOX.", "."),)
    names = {name for _flags, _delim, name in client.list_folders()}
    assert {"INBOX", "INBOX.Sent", "INBOX.Drafts", "INBOX.Trash", "INBOX.Junk"} <= names

    when = datetime.datetime(2026, 11, 30, 9, 0, tzinfo=datetime.UTC)
    client.append("INBOX", message("zebra crossing", "z"), msg_time=when)
    client.append("INBOX", message("Re: apple pie", "a"), flags=[imapclient.SEEN])
    client.append("INBOX", message("apple pie", "café au lait"))
    status = client.folder_status("INBOX", [b"MESSAGES", b"UNSEEN", b"UIDNEXT"])
    assert status == {b"MESSAGES": 3, b"UNSEEN": 2, b"UIDNEXT": 4}

    client.enable("CONDSTORE")
    selected = client.select_folder("INBOX")
    modseq = selected[b"HIGHESTMODSEQ"]
    assert client.fetch([1], ["INTERNALDATE"])[1][b"INTERNALDATE"].date() == when.date()
    # base subjects "apple pie" (twice: ties in sequence order, RFC 5256 §3), "zebra crossing"
    assert client.sort(["SUBJECT"]) == [2, 3, 1]
    assert client.sort(["REVERSE", "ARRIVAL"])[-1] == 1  # 2 and 3 may share their second
    assert client.search(["UNSEEN"]) == [1, 3]
    assert client.search(["TEXT", "café"], charset="UTF-8") == [3]
    threads = client.thread("ORDEREDSUBJECT")
    assert sorted(map(sorted_thread, threads)) == [[1], [2, 3]]

    client.add_flags([2], [imapclient.FLAGGED])
    changed = client.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {modseq}"])
    assert list(changed) == [2] and changed[2][b"MODSEQ"][0] > modseq

    client.copy([1], "INBOX.Trash")
    client.delete_messages([1])
    client.uid_expunge([1])
    assert client.search("ALL") == [2, 3]
    assert set(server_view(imap_server, "INBOX.Trash")) == {"zebra crossing"}
    client.unselect_folder()
    client.logout()


def sorted_thread(thread: tuple[object, ...]) -> list[int]:
    flat: list[int] = []
    for item in thread:
        flat += sorted_thread(item) if isinstance(item, tuple) else [int(str(item))]
    return sorted(flat)
