"""Every command Python's imaplib writes is parsed as the command it meant.

imaplib runs against an in-memory stand-in for the server: what it sends is fed to a
`CommandReader`, continuation requests and tagged OKs are answered from the reader's
events, so imaplib's real command generation (quoting, literals, APPEND, SEARCH with a
charset) is what the grammar sees.
"""

from __future__ import annotations

import imaplib
from collections import deque
from typing import Any

from posthouse.protocols.imap import arguments, commands, search, seqset
from posthouse.protocols.imap.reader import NEED_DATA, CommandReader, ContinuationRequest, Refused


class LoopbackIMAP(imaplib.IMAP4):
    """An imaplib client whose "server" is a CommandReader."""

    def __init__(self) -> None:
        self.reader = CommandReader()
        self.parsed: list[commands.Command] = []
        self.refused: list[Refused] = []
        self.replies: deque[bytes] = deque()
        super().__init__()

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:
        self.host, self.port = host, port
        self.replies.append(
            b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SORT THREAD=REFERENCES ENABLE"
            b" NAMESPACE UNSELECT MOVE UIDPLUS] ready\r\n"
        )

    def send(self, data: bytes) -> None:
        self.reader.feed(data)
        while (event := self.reader.next_event()) is not NEED_DATA:
            if isinstance(event, ContinuationRequest):
                self.replies.append(b"+ Ready for literal data\r\n")
            elif isinstance(event, Refused):
                self.refused.append(event)
                self.replies.append(event.response.to_bytes())
            elif isinstance(event, commands.Command):
                self.parsed.append(event)
                if event.name == "SELECT":
                    self.replies.append(b"* 3 EXISTS\r\n")
                if event.name == "LOGOUT":
                    self.replies.append(b"* BYE bye\r\n")
                self.replies.append(f"{event.tag} OK {event.name} completed\r\n".encode())

    def readline(self) -> bytes:
        return self.replies.popleft()

    def read(self, size: int) -> bytes:
        raise AssertionError("no literal in these replies")

    def shutdown(self) -> None:
        pass


def last(client: LoopbackIMAP) -> Any:
    assert not client.refused, client.refused
    return client.parsed[-1].arguments


def test_imaplib_commands_parse_as_meant() -> None:
    client = LoopbackIMAP()
    client.login("alice", 'pa ss"w\\rd')
    assert last(client) == arguments.Login("alice", 'pa ss"w\\rd')
    client.enable("CONDSTORE")
    assert last(client) == arguments.Enable(("CONDSTORE",))
    client.select("INBOX")
    assert last(client) == arguments.Select("INBOX")
    client.select('"Sent Items"', readonly=True)
    assert client.parsed[-1].name == "EXAMINE" and last(client) == arguments.Select("Sent Items")
    client.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])")
    fetch = last(client)
    assert isinstance(fetch, arguments.Fetch) and len(fetch.request.items) == 3
    client.uid("FETCH", "5:*", "(RFC822.SIZE BODY[]<0.100>)")
    assert client.parsed[-1].uid
    client.store("1,3", "+FLAGS", "(\\Deleted)")
    assert last(client) == arguments.Store(seqset.parse("1,3"), "add", False, ("\\Deleted",))
    client.search(None, "UNSEEN", "FROM", '"bob"')
    assert last(client).key == search.And(
        (search.Not(search.Flag("\\Seen")), search.Header("FROM", "bob"))
    )
    client.literal = "café".encode()  # imaplib sends a literal with CHARSET
    client.search("UTF-8", "TEXT")
    assert last(client) == search.SearchRequest(search.Text("café"), "UTF-8")
    client.append(
        "INBOX", "(\\Seen)", imaplib.Time2Internaldate(1_000_000_000), b"Subject: x\r\n\r\nbody\r\n"
    )
    append = last(client)
    assert isinstance(append, arguments.Append)
    (appended,) = append.messages
    assert appended.flags == ("\\Seen",) and appended.data == b"Subject: x\r\n\r\nbody\r\n"
    assert appended.date is not None and appended.date.timestamp() == 1_000_000_000
    client.copy("1:2", "Archive")
    assert last(client) == arguments.Transfer(seqset.parse("1:2"), "Archive")
    client.sort("(REVERSE DATE)", "UTF-8", "ALL")
    assert last(client) == arguments.Sort(
        (arguments.SortCriterion("DATE", True),), search.SearchRequest(search.All(), "UTF-8")
    )
    client.thread("REFERENCES", "UTF-8", "ALL")
    assert isinstance(last(client), arguments.Thread)
    client.status("INBOX", "(MESSAGES UIDNEXT UNSEEN)")
    assert last(client) == arguments.Status("INBOX", ("MESSAGES", "UIDNEXT", "UNSEEN"))
    client.list('""', "*")
    assert last(client) == arguments.ListMailboxes("", ("*",))
    client.lsub('""', "%")
    client.create("Archive/2024")
    client.rename("Archive/2024", "Old")
    assert last(client) == arguments.Rename("Archive/2024", "Old")
    client.subscribe("Old")
    client.unsubscribe("Old")
    client.delete("Old")
    client.namespace()
    client.noop()
    client.check()
    client.expunge()
    client.unselect()
    client.logout()
    names = [command.name for command in client.parsed]
    assert names[-6:] == ["NAMESPACE", "NOOP", "CHECK", "EXPUNGE", "UNSELECT", "LOGOUT"]
    assert not client.refused
