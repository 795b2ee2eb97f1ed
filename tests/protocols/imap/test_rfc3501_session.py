"""The server side of the RFC 3501 §8 sample session, written with the response pieces."""

from __future__ import annotations

import datetime as dt

from posthouse.protocols.imap import bodystructure, envelope, message, response, sections
from posthouse.protocols.imap.fetchatt import Section
from posthouse.protocols.imap.response import Atom, Raw, Status
from tests.protocols.imap.test_message import RFC3501_MESSAGE

ENVELOPE = (
    b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes"'
    b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
    b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
    b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
    b' ((NIL NIL "imap" "cac.washington.edu"))'
    b' ((NIL NIL "minutes" "CNRI.Reston.VA.US") ("John Klensin" NIL "KLENSIN" "MIT.EDU"))'
    b' NIL NIL "<B27397-0100000@cac.washington.edu>")'
)


def test_the_server_lines_of_the_sample_session() -> None:
    root = message.parse(RFC3501_MESSAGE)
    system = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
    internal = dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(-dt.timedelta(hours=7)))
    header = sections.section_bytes(RFC3501_MESSAGE, root, Section((), "HEADER"))
    assert header is not None
    lines = [
        Status("OK", "IMAP4rev1 Service Ready"),
        Status("OK", "LOGIN completed", "a001"),
        response.data(18, Atom("EXISTS")),
        response.data(Atom("FLAGS"), response.flags_value(system)),
        response.data(2, Atom("RECENT")),
        Status(
            "OK",
            "Message 17 is the first unseen message",
            code=response.number_code("UNSEEN", 17),
        ),
        Status("OK", "UIDs valid", code=response.number_code("UIDVALIDITY", 3857529045)),
        Status("OK", "SELECT completed", "a002", response.READ_WRITE),
        response.fetch(
            12,
            [
                ("FLAGS", response.flags_value(["\\Seen"])),
                ("INTERNALDATE", response.date_time(internal)),
                ("RFC822.SIZE", 4286),
                ("ENVELOPE", Raw(envelope.envelope_bytes(root))),
                ("BODY", Raw(bodystructure.body_bytes(RFC3501_MESSAGE, root))),
            ],
        ),
        Status("OK", "FETCH completed", "a003"),
        response.fetch(12, [("BODY[HEADER]", header)]),
        Status("OK", "FETCH completed", "a004"),
        response.fetch(12, [("FLAGS", response.flags_value(["\\Seen", "\\Deleted"]))]),
        Status("OK", "+FLAGS completed", "a005"),
        Status("BYE", "IMAP4rev1 server terminating connection"),
        Status("OK", "LOGOUT completed", "a006"),
    ]
    wire = b"".join(line.to_bytes() for line in lines)
    expected = (
        b"* OK IMAP4rev1 Service Ready\r\n"
        b"a001 OK LOGIN completed\r\n"
        b"* 18 EXISTS\r\n"
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        b"* 2 RECENT\r\n"
        b"* OK [UNSEEN 17] Message 17 is the first unseen message\r\n"
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
        b"a002 OK [READ-WRITE] SELECT completed\r\n"
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700"'
        b" RFC822.SIZE 4286 ENVELOPE " + ENVELOPE + b' BODY ("TEXT" "PLAIN"'
        b' ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))\r\n'
        b"a003 OK FETCH completed\r\n"
        b"* 12 FETCH (BODY[HEADER] {" + str(len(header)).encode() + b"}\r\n" + header + b")\r\n"
        b"a004 OK FETCH completed\r\n"
        b"* 12 FETCH (FLAGS (\\Seen \\Deleted))\r\n"
        b"a005 OK +FLAGS completed\r\n"
        b"* BYE IMAP4rev1 server terminating connection\r\n"
        b"a006 OK LOGOUT completed\r\n"
    )
    assert wire == expected
