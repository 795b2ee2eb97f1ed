"""SEARCH keys parsed into a tree and evaluated against message views (search.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from posthouse.protocols.imap import commands, search
from posthouse.protocols.imap.cursor import ParseLimits
from posthouse.protocols.imap.reader import ReaderLimits, Refused
from tests.protocols.imap.reading import read_all
from tests.protocols.imap.views import StoredMessage, simple

UTC = dt.UTC


def mailbox() -> list[StoredMessage]:
    return [
        StoredMessage(
            simple(
                {
                    "From": '"Smith, John" <john@smith.example>',
                    "To": "ann@x.example",
                    "Subject": "=?utf-8?q?Caf=C3=A9?= meeting",
                    "Date": "Tue, 1 Feb 1994 23:00:00 -0800",
                    "X-Tag": "Alpha",
                },
                "Let's meet at the CAFÉ.\r\n",
            ),
            uid=10,
            seq=1,
            flags=frozenset({"\\Seen", "\\Flagged", "$Work"}),
            internal_date=dt.datetime(1994, 2, 2, 8, 0, tzinfo=UTC),
            modseq=5,
        ),
        StoredMessage(
            simple(
                {"From": "ann@x.example", "Cc": "bob@y.example", "Subject": "Re: lunch"},
                "see you\r\n",
            ),
            uid=20,
            seq=2,
            flags=frozenset({"\\Recent", "\\Answered"}),
            internal_date=dt.datetime(1994, 1, 31, 12, 0, tzinfo=UTC),
            modseq=9,
        ),
        StoredMessage(
            simple(
                {
                    "From": "carl@z.example",
                    "Bcc": "secret@x.example",
                    "Subject": "big",
                    "Content-Type": "text/plain; charset=utf-8",
                    "Content-Transfer-Encoding": "base64",
                },
                "w6l0w6kgaW4gYmFzZTY0\r\n",  # "été in base64"
            )
            + b"x" * 500,
            uid=30,
            seq=3,
            flags=frozenset({"\\Recent", "\\Seen", "\\Deleted", "\\Draft"}),
            internal_date=dt.datetime(1994, 2, 1, 0, 30, tzinfo=UTC),
            modseq=12,
        ),
    ]


def request(text: str) -> search.SearchRequest:
    events = read_all(b"a SEARCH " + text.encode() + b"\r\n")
    command = events[-1]
    assert isinstance(command, commands.Command), command
    assert isinstance(command.arguments, search.SearchRequest)
    return command.arguments


def hits(text: str, saved: frozenset[int] = frozenset()) -> list[int]:
    messages = mailbox()
    context = search.SearchContext(
        len(messages), messages[-1].uid, saved, now=dt.datetime(1994, 2, 2, 12, tzinfo=UTC)
    )
    return [m.seq for m in search.search(request(text).key, messages, context)]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("ALL", [1, 2, 3]),
        ("ANSWERED", [2]),
        ("UNANSWERED", [1, 3]),
        ("DELETED", [3]),
        ("UNDELETED", [1, 2]),
        ("DRAFT", [3]),
        ("UNDRAFT", [1, 2]),
        ("FLAGGED", [1]),
        ("UNFLAGGED", [2, 3]),
        ("SEEN", [1, 3]),
        ("UNSEEN", [2]),
        ("RECENT", [2, 3]),
        ("NEW", [2]),
        ("OLD", [1]),
        ("KEYWORD $work", [1]),
        ("UNKEYWORD $Work", [2, 3]),
        ("FROM smith", [1]),
        ('FROM "SMITH, JOHN"', [1]),
        ("TO ann", [1]),
        ("CC bob", [2]),
        ("BCC secret", [3]),
        ('SUBJECT "café"', [1]),  # RFC 2047 decoded, case-insensitive
        ("SUBJECT LUNCH", [2]),
        ('BODY "café"', [1]),
        ('BODY "été"', [3]),  # base64 and charset decoded
        ("TEXT meeting", [1]),  # in the header
        ("TEXT see", [2]),  # in the body
        ("HEADER X-Tag alpha", [1]),
        ('HEADER X-Tag ""', [1]),  # an empty string matches the field's presence
        ("HEADER Cc bob", [2]),
        ("BEFORE 1-Feb-1994", [2]),
        ("ON 1-Feb-1994", [3]),
        ("SINCE 1-Feb-1994", [1, 3]),
        ('SINCE "2-Feb-1994"', [1]),
        ("SENTON 1-Feb-1994", [1, 3]),  # the Date: header's own day; else the internal date
        ("SENTBEFORE 1-Feb-1994", [2]),
        ("SENTSINCE 2-Feb-1994", []),
        ("LARGER 400", [3]),
        ("SMALLER 400", [1, 2]),
        ("1", [1]),
        ("2:*", [2, 3]),
        ("*", [3]),
        ("5:*", [3]),
        ("UID 20", [2]),
        ("UID 25:*", [3]),
        ("UID 1:15,30", [1, 3]),
        ("NOT SEEN", [2]),
        ("OR ANSWERED DELETED", [2, 3]),
        ("(SEEN FLAGGED)", [1]),
        ("SEEN (OR FLAGGED DRAFT) NOT FROM carl", [1]),
        ("MODSEQ 9", [2, 3]),
        ('MODSEQ "/flags/\\\\draft" all 10', [3]),  # RFC 7162 §3.1.5 example shape
        ("YOUNGER 86400", [1]),
        ("OLDER 86400", [2, 3]),
        ("SUBJECT café", None),  # 8-bit octets are not atom characters: quote them
    ],
)
def test_keys(keys: str, expected: list[int] | None) -> None:
    if expected is None:
        events = read_all(b"a SEARCH " + keys.encode() + b"\r\n")
        assert isinstance(events[0], Refused) and events[0].response.status == "BAD"
        return
    assert hits(keys) == expected


def test_saved_result() -> None:
    # RFC 5182: "$" is the saved result, kept as UIDs.
    assert hits("$", saved=frozenset({10, 30})) == [1, 3]
    assert hits("UID $ SEEN", saved=frozenset({10, 20})) == [1]


def test_charsets() -> None:
    assert request("CHARSET US-ASCII TEXT x").charset == "US-ASCII"
    events = read_all(b"a SEARCH CHARSET US-ASCII TEXT \xc3\xa9\r\n")
    assert isinstance(events[0], Refused) and events[0].response.status == "BAD"
    events = read_all(b"a SEARCH CHARSET UTF-8 TEXT {2}\r\n\xc3\xa9\r\n")
    command = events[-1]
    assert isinstance(command, commands.Command)
    assert command.arguments == search.SearchRequest(search.Text("é"), "UTF-8")
    events = read_all(b"a SEARCH CHARSET ISO-2022-JP ALL\r\n")
    assert isinstance(events[0], Refused)
    assert str(events[0].response.code) == "BADCHARSET (UTF-8 US-ASCII)"


@pytest.mark.parametrize(
    "bad",
    [
        "SINCE",
        "SINCE 1994-02-01",
        "SINCE 30-Feb-1994",
        "ON 1-Foo-1994",
        "LARGER x",
        "OR SEEN",
        "NOT",
        "(SEEN",
        "SEEN)",
        "()",
        "UID",
        "UID 0",
        "1:0",
        "KEYWORD",
        "HEADER X",
        "MODSEQ",
        'MODSEQ "/x" frob 5',
        "FROB",
        "SEEN  DELETED",
    ],
)
def test_malformed_keys_are_bad(bad: str) -> None:
    events = read_all(b"a SEARCH " + bad.encode() + b"\r\n")
    assert len(events) == 1 and isinstance(events[0], Refused), events
    assert events[0].response.status == "BAD"
    assert events[0].response.tag == "a"


def test_nesting_depth_is_limited_for_parentheses_not_and_or() -> None:
    limits = ReaderLimits(parse=ParseLimits(depth=10))
    for deep in ["(" * 12 + "ALL" + ")" * 12, "NOT " * 12 + "ALL", "OR ALL " * 12 + "ALL"]:
        events = read_all(b"a SEARCH " + deep.encode() + b"\r\n", limits)
        assert isinstance(events[0], Refused), deep
        assert "Nested more than 10" in events[0].response.text
    for shallow in ["(" * 4 + "ALL" + ")" * 4, "NOT " * 4 + "ALL", "OR ALL " * 4 + "ALL"]:
        events = read_all(b"a SEARCH " + shallow.encode() + b"\r\n", limits)
        assert isinstance(events[0], commands.Command), shallow


def test_many_keys_side_by_side_are_not_nesting() -> None:
    keys = " ".join(["SEEN"] * 2000)
    assert hits(keys) == [1, 3]


def test_esearch_return_results() -> None:
    # RFC 4731 §3.1: MIN/MAX only with matches; COUNT always; ALL as a set.
    everything = frozenset({"MIN", "MAX", "ALL", "COUNT"})
    assert search.return_results([2, 3, 5], everything) == [
        ("MIN", 2),
        ("MAX", 5),
        ("ALL", [2, 3, 5]),
        ("COUNT", 3),
    ]
    assert search.return_results([], everything) == [("ALL", []), ("COUNT", 0)]
    assert search.return_results([4], frozenset({"MAX"})) == [("MAX", 4)]
