"""Response serialisation (response.py): values, status responses, codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.protocols.imap import arguments, response
from posthouse.protocols.imap.response import Atom, Literal, Raw, Status, encode_value
from tests.protocols.imap.wire import read_whole


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (None, b"NIL"),
        (0, b"0"),
        (4294967295, b"4294967295"),
        ("", b'""'),
        ("plain", b'"plain"'),
        ('say "hi" \\ bye', b'"say \\"hi\\" \\\\ bye"'),
        ("NIL", b'"NIL"'),  # a string that reads NIL is still a string
        ("two\r\nlines", b"{10}\r\ntwo\r\nlines"),
        (b"caf\xc3\xa9", b"{5}\r\ncaf\xc3\xa9"),  # 8-bit without UTF8=ACCEPT: a literal
        (b"\xff", b"{1}\r\n\xff"),
        (b"a\x00b", b"{3}\r\na\x80b"),  # no NUL in a literal; the length is kept
        (Literal(b"a\x00b", binary=True), b"~{3}\r\na\x00b"),
        (Literal(b"short"), b"{5}\r\nshort"),
        (Atom("\\Seen"), b"\\Seen"),
        (Raw(b'("x" NIL)'), b'("x" NIL)'),
        ([], b"()"),
        ([Atom("A"), [1, None, "b"]], b'(A (1 NIL "b"))'),
    ],
)
def test_values(value: object, wire: bytes) -> None:
    assert encode_value(value) == wire


def test_utf8_is_quoted_only_when_enabled() -> None:
    assert encode_value("café", utf8=True) == '"café"'.encode()
    assert encode_value("café") == b"{5}\r\ncaf\xc3\xa9"
    assert encode_value(b"\xff", utf8=True) == b"{1}\r\n\xff"  # not UTF-8: still a literal


def test_long_strings_become_literals() -> None:
    text = "x" * (response.MAX_QUOTED + 1)
    assert encode_value(text).startswith(b"{1025}\r\n")
    assert encode_value("x" * response.MAX_QUOTED).startswith(b'"')


@pytest.mark.parametrize("bad", [True, -1, 1.5, object()])
def test_non_values_are_programming_errors(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_value(bad)


def test_status_responses() -> None:
    assert Status("OK", "LOGIN completed", "a001").to_bytes() == b"a001 OK LOGIN completed\r\n"
    assert Status(
        "OK", "UIDs valid", code=response.number_code("UIDVALIDITY", 3857529045)
    ).to_bytes() == (b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n")
    assert Status("OK", "SELECT completed", "a002", response.READ_WRITE).to_bytes() == (
        b"a002 OK [READ-WRITE] SELECT completed\r\n"
    )
    assert Status("BYE", "IMAP4rev1 server terminating connection").to_bytes() == (
        b"* BYE IMAP4rev1 server terminating connection\r\n"
    )
    with pytest.raises(ValueError):
        Status("BYE", "x", "a1")
    with pytest.raises(ValueError):
        Status("OK", "two\r\nlines", "a1")


def test_response_codes() -> None:
    flags = response.list_code("PERMANENTFLAGS", ["\\Deleted", "\\Seen", "\\*"])
    assert str(flags) == "PERMANENTFLAGS (\\Deleted \\Seen \\*)"
    # RFC 4315 §3 examples
    assert str(response.appenduid(38505, [3955])) == "APPENDUID 38505 3955"
    assert str(response.copyuid(38505, [304, 319, 320], [3956, 3957, 3958])) == (
        "COPYUID 38505 304,319:320 3956:3958"
    )
    assert str(response.appenduid(1, [5, 6, 7, 9])) == "APPENDUID 1 5:7,9"
    with pytest.raises(ValueError):
        response.copyuid(1, [1, 2], [3])
    # RFC 7162
    assert str(response.number_code("HIGHESTMODSEQ", 715194045007)) == "HIGHESTMODSEQ 715194045007"
    assert str(response.modified([7, 9, 8])) == "MODIFIED 7:9"
    assert str(response.NOMODSEQ) == "NOMODSEQ"
    assert str(response.capability_code(["IMAP4rev1", "IDLE"])) == "CAPABILITY IMAP4rev1 IDLE"
    for code in (response.TOOBIG, response.UNKNOWN_CTE, response.ALREADYEXISTS, response.CLOSED):
        assert Status("NO", "x", "t", code).to_bytes() == f"t NO [{code}] x\r\n".encode()
    with pytest.raises(ValueError):
        response.Code("BAD CODE")
    with pytest.raises(ValueError):
        response.Code("X", "a]b")


def test_data_fetch_continuation_and_esearch() -> None:
    assert response.data(18, Atom("EXISTS")).to_bytes() == b"* 18 EXISTS\r\n"
    flags = response.flags_value(["\\Answered", "\\Flagged"])
    assert response.data(Atom("FLAGS"), flags).to_bytes() == b"* FLAGS (\\Answered \\Flagged)\r\n"
    fetched = response.fetch(12, [("FLAGS", flags), ("BODY[HEADER]", b"a: b\r\n\r\n")])
    assert (
        fetched.to_bytes()
        == b"* 12 FETCH (FLAGS (\\Answered \\Flagged) BODY[HEADER] {8}\r\na: b\r\n\r\n)\r\n"
    )
    assert response.Continuation().to_bytes() == b"+ Ready for literal data\r\n"
    assert response.Continuation("").to_bytes() == b"+ \r\n"
    # RFC 4731 §3.1 examples
    assert response.esearch("A282", uid=False, results=[("MIN", 2), ("COUNT", 3)]).to_bytes() == (
        b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'
    )
    assert response.esearch("A284", uid=False, results=[("ALL", [])]).to_bytes() == (
        b'* ESEARCH (TAG "A284")\r\n'
    )
    assert response.esearch("A285", uid=True, results=[("ALL", [4, 5, 6, 20])]).to_bytes() == (
        b'* ESEARCH (TAG "A285") UID ALL 4:6,20\r\n'
    )
    assert response.data("café", utf8=True).to_bytes() == '* "café"\r\n'.encode()


def test_binary_values_use_literal8_only_for_nul() -> None:
    assert encode_value(response.binary_value(b"a\x00b")) == b"~{3}\r\na\x00b"
    assert encode_value(response.binary_value(b"plain")) == b"{5}\r\nplain"
    assert encode_value(response.binary_value(None)) == b"NIL"


values = st.recursive(
    st.none()
    | st.integers(0, 2**63)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.binary(max_size=1200),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


def _normal(value: object) -> object:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return [_normal(item) for item in value]
    return value


@given(values, st.booleans())
def test_every_value_reads_back_as_written(value: object, utf8: bool) -> None:
    wire = encode_value(value, utf8=utf8)
    expected = _normal(value)
    if isinstance(expected, bytes) or isinstance(value, list):
        expected = _without_nul(expected)
    assert read_whole(wire) == expected


def _without_nul(value: object) -> object:
    if isinstance(value, bytes):
        return value.replace(b"\x00", b"\x80")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def test_internal_date_format() -> None:
    import datetime as dt

    pst = dt.timezone(-dt.timedelta(hours=8))
    assert response.date_time(dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=pst)) == (
        " 7-Feb-1994 21:52:25 -0800"
    )
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert response.date_time(dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=ist)) == (
        "17-Jul-1996 02:44:25 +0530"
    )
    assert response.date_time(dt.datetime(2000, 1, 1)) == " 1-Jan-2000 00:00:00 +0000"
    # what APPEND reads back is what INTERNALDATE writes
    from posthouse.protocols.imap import commands
    from tests.protocols.imap.reading import read_all

    when = dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=pst)
    events = read_all(f'a APPEND x "{response.date_time(when)}" {{1+}}\r\nm\r\n'.encode())
    command = events[-1]
    assert isinstance(command, commands.Command) and isinstance(command.arguments, arguments.Append)
    assert command.arguments.messages[0].date == when


def test_search_and_vanished_data() -> None:
    # RFC 3501 §7.2.5 and RFC 7162 §3.1.5 / §3.2.10 examples
    assert response.search_data([2, 84, 882]).to_bytes() == b"* SEARCH 2 84 882\r\n"
    assert response.search_data([]).to_bytes() == b"* SEARCH\r\n"
    assert response.search_data(
        [2, 5, 6, 7, 11, 12, 18, 19, 20, 23], modseq=917162500
    ).to_bytes() == (b"* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n")
    assert response.search_data([], modseq=5).to_bytes() == b"* SEARCH\r\n"
    assert response.vanished([41, 43, 44, 45, 46], earlier=True).to_bytes() == (
        b"* VANISHED (EARLIER) 41,43:46\r\n"
    )
    assert response.vanished([405, 407], earlier=False).to_bytes() == b"* VANISHED 405,407\r\n"
    with pytest.raises(ValueError):
        response.vanished([], earlier=False)
