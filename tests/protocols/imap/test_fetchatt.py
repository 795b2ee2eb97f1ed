"""FETCH attributes (RFC 3501 §6.4.5, RFC 3516, RFC 7162)."""

from __future__ import annotations

import pytest

from posthouse.protocols.imap import arguments, commands
from posthouse.protocols.imap.fetchatt import FetchItem, FetchRequest, Section
from tests.protocols.imap.reading import read_all
from tests.protocols.imap.test_commands import parse, refusal


def request(attributes: bytes) -> FetchRequest:
    command = parse(b"a FETCH 1 " + attributes)
    assert isinstance(command.arguments, arguments.Fetch)
    return command.arguments.request


def test_macros_expand() -> None:
    assert [i.name for i in request(b"ALL").items] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
    ]
    assert [i.name for i in request(b"fast").items] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    assert refusal(b"a FETCH 1 (ALL)").response.status == "BAD"  # macros stand alone


@pytest.mark.parametrize(
    ("text", "item", "name"),
    [
        (b"BODY[]", FetchItem("BODY", Section()), "BODY[]"),
        (b"BODY.PEEK[]", FetchItem("BODY", Section(), peek=True), "BODY[]"),
        (b"body[header]", FetchItem("BODY", Section((), "HEADER")), "BODY[HEADER]"),
        (
            b"BODY[TEXT]<0.2048>",
            FetchItem("BODY", Section((), "TEXT"), partial=(0, 2048)),
            "BODY[TEXT]<0>",
        ),
        (b"BODY[1.2.3]", FetchItem("BODY", Section((1, 2, 3))), "BODY[1.2.3]"),
        (b"BODY[4.2.HEADER]", FetchItem("BODY", Section((4, 2), "HEADER")), "BODY[4.2.HEADER]"),
        (b"BODY[3.MIME]", FetchItem("BODY", Section((3,), "MIME")), "BODY[3.MIME]"),
        (
            b"BODY.PEEK[HEADER.FIELDS (DATE From)]<10.20>",
            FetchItem("BODY", Section((), "HEADER.FIELDS", ("DATE", "From")), True, (10, 20)),
            "BODY[HEADER.FIELDS (DATE From)]<10>",
        ),
        (
            b'BODY[1.HEADER.FIELDS.NOT ("X-Odd" {5}\r\nX-Lit)]',
            FetchItem("BODY", Section((1,), "HEADER.FIELDS.NOT", ("X-Odd", "X-Lit"))),
            "BODY[1.HEADER.FIELDS.NOT (X-Odd X-Lit)]",
        ),
        (b"BINARY[1]", FetchItem("BINARY", Section((1,))), "BINARY[1]"),
        (b"BINARY.PEEK[]<0.100>", FetchItem("BINARY", Section(), True, (0, 100)), "BINARY[]<0>"),
        (b"BINARY.SIZE[2.1]", FetchItem("BINARY.SIZE", Section((2, 1))), "BINARY.SIZE[2.1]"),
        (b"MODSEQ", FetchItem("MODSEQ"), "MODSEQ"),
        (b"RFC822.HEADER", FetchItem("RFC822.HEADER"), "RFC822.HEADER"),
    ],
)
def test_attributes(text: bytes, item: FetchItem, name: str) -> None:
    events = read_all(b"a FETCH 1 (UID " + text + b")\r\n")
    command = events[-1]
    assert isinstance(command, commands.Command), command
    assert isinstance(command.arguments, arguments.Fetch)
    assert command.arguments.request.items == (FetchItem("UID"), item)
    assert item.response_name() == name


def test_which_attributes_set_seen() -> None:
    assert request(b"BODY[]").items[0].sets_seen
    assert not request(b"BODY.PEEK[]").items[0].sets_seen
    assert request(b"RFC822").items[0].sets_seen
    assert not request(b"RFC822.HEADER").items[0].sets_seen
    assert request(b"BINARY[1]").items[0].sets_seen
    assert not request(b"BINARY.SIZE[1]").items[0].sets_seen
    assert not request(b"BODY").items[0].sets_seen


def test_condstore_modifiers() -> None:
    # RFC 7162 §3.1.4.2 and §3.2.6 examples
    assert request(b"(FLAGS) (CHANGEDSINCE 12345)").changed_since == 12345
    vanished = request(b"(FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert vanished.vanished and vanished.changed_since == 12345


@pytest.mark.parametrize(
    "bad",
    [
        b"BODY[",
        b"BODY[FROB]",
        b"BODY[MIME]",  # MIME needs a part
        b"BODY[1.]",
        b"BODY[0]",
        b"BODY[HEADER.FIELDS]",
        b"BODY[HEADER.FIELDS ()]",
        b"BODY[]<1>",
        b"BODY[]<1.0>",
        b"BINARY[TEXT]",
        b"FROB",
        b"(FLAGS",
        b"(FLAGS) (FROB)",
    ],
)
def test_malformed_attributes_are_bad(bad: bytes) -> None:
    assert refusal(b"a FETCH 1 " + bad).response.status == "BAD"
