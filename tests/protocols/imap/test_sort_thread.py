"""SORT and THREAD (RFC 5256): base subject, sort keys, ORDEREDSUBJECT, REFERENCES."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posthouse.protocols.imap import thread
from posthouse.protocols.imap.arguments import SortCriterion
from posthouse.protocols.imap.sort import sort_messages
from posthouse.protocols.imap.subject import base_subject
from tests.protocols.imap.views import StoredMessage, simple


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Hello", "HELLO", False),
        ("Re: Hello", "HELLO", True),
        ("RE:re:  FW: Hello", "HELLO", True),
        ("Fwd: [list] Hello (fwd)", "HELLO", True),
        ("Re[2]: Hello", "HELLO", True),
        ("[list] Re: Hello", "HELLO", True),
        ("[list] Hello", "HELLO", False),
        ("Re: [list]", "[LIST]", True),  # a blob that would leave nothing stays
        ("[fwd: Re: Hello]", "HELLO", True),
        ("[Fwd: [list] Hello (fwd)]  ", "HELLO", True),
        ("Hello (fwd) (FWD)", "HELLO", True),
        ("Subject   with\t spaces\t", "SUBJECT WITH SPACES", False),
        ("Reply: x", "REPLY: X", False),
        ("Re:", "", True),
        ("", "", False),
        ("Grüße", "GRüßE", False),  # i;ascii-casemap: only ASCII letters fold
    ],
)
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2000, 3, day, hour, tzinfo=dt.UTC)


def msg(seq: int, headers: dict[str, str], *, arrived: dt.datetime | None = None) -> StoredMessage:
    return StoredMessage(
        simple(headers, "x" * seq * 10 + "\r\n"),
        uid=seq * 10,
        seq=seq,
        internal_date=arrived or at(1),
    )


def test_sort_keys_and_reverse() -> None:
    messages = [
        msg(
            1,
            {
                "Subject": "Re: beta",
                "From": "Zed <zed@x>",
                "Date": "Fri, 3 Mar 2000 10:00:00 +0000",
            },
            arrived=at(9),
        ),
        msg(
            2,
            {
                "Subject": "alpha",
                "From": "adam@x",
                "Cc": "c@x",
                "Date": "Thu, 2 Mar 2000 10:00:00 +0000",
            },
            arrived=at(8),
        ),
        msg(3, {"Subject": "[list] Beta", "From": '"Mo" <mo@x>', "Date": "garbage"}, arrived=at(1)),
        msg(4, {"Subject": "Alpha", "Date": "Sat, 4 Mar 2000 01:00:00 +0500"}, arrived=at(7)),
    ]

    def order(*criteria: SortCriterion) -> list[int]:
        return [m.seq for m in sort_messages(messages, criteria)]

    assert order(SortCriterion("ARRIVAL")) == [3, 4, 2, 1]
    # msg 3 has no usable Date: its internal date (1 Mar) is its sent date (RFC 5256 §2.2)
    assert order(SortCriterion("DATE")) == [3, 2, 1, 4]  # 4 Mar 01:00 +0500 is 3 Mar 20:00 UTC
    assert order(SortCriterion("DATE", reverse=True)) == [4, 1, 2, 3]
    sizes = {m.seq: m.size for m in messages}
    assert sizes == {1: 90, 2: 101, 3: 90, 4: 98}
    # REVERSE reverses the key only: equal sizes stay in sequence order (RFC 5256 §3)
    assert order(SortCriterion("SIZE", reverse=True)) == [2, 4, 1, 3]
    assert order(SortCriterion("SUBJECT")) == [2, 4, 1, 3]  # equal base subjects: by seq
    assert order(SortCriterion("SUBJECT"), SortCriterion("DATE", reverse=True)) == [4, 2, 1, 3]
    assert order(SortCriterion("FROM")) == [4, 2, 3, 1]  # missing From sorts as ""
    assert order(SortCriterion("CC")) == [1, 3, 4, 2]
    assert order(SortCriterion("DISPLAYFROM")) == [4, 2, 3, 1]  # "", adam@x, Mo, Zed


def test_orderedsubject() -> None:
    messages = [
        msg(1, {"Subject": "A", "Date": "Wed, 1 Mar 2000 10:00:00 +0000"}),
        msg(2, {"Subject": "Re: A", "Date": "Fri, 3 Mar 2000 10:00:00 +0000"}),
        msg(3, {"Subject": "B", "Date": "Thu, 2 Mar 2000 10:00:00 +0000"}),
        msg(4, {"Subject": "re: a", "Date": "Sat, 4 Mar 2000 10:00:00 +0000"}),
        msg(5, {"Subject": "a", "Date": "Tue, 29 Feb 2000 10:00:00 +0000"}),
    ]
    roots = thread.ordered_subject(messages)
    # the earliest "A" (5) is the parent; 1, 2, 4 its children by date
    assert thread.format_threads(roots, lambda m: m.seq) == "(5 (1)(2)(4))(3)"
    assert thread.format_threads(roots, lambda m: m.uid) == "(50 (10)(20)(40))(30)"
    assert thread.format_threads(thread.ordered_subject([]), lambda m: m.seq) == ""


def day(n: int) -> str:
    return f"{n:02d} Mar 2000 10:00:00 +0000"


def test_references() -> None:
    messages = [
        msg(1, {"Message-ID": "<1@x>", "Subject": "A", "Date": day(1)}),
        msg(2, {"Message-ID": "<2@x>", "References": "<1@x>", "Subject": "Re: A", "Date": day(2)}),
        msg(
            3,
            {
                "Message-ID": "<3@x>",
                "References": "<1@x> <2@x>",
                "Subject": "Re: A",
                "Date": day(3),
            },
        ),
        msg(4, {"Message-ID": "<4@x>", "In-Reply-To": "<1@x>", "Subject": "Re: A", "Date": day(4)}),
        msg(5, {"Message-ID": "<5@x>", "References": "<gone@x>", "Subject": "B", "Date": day(5)}),
        msg(
            6, {"Message-ID": "<6@x>", "References": "<gone@x>", "Subject": "Re: B", "Date": day(6)}
        ),
        msg(7, {"Message-ID": "<7@x>", "Subject": "Re: A", "Date": day(7)}),
        msg(8, {"Message-ID": "<8@x>", "Subject": "C", "Date": day(8)}),
        msg(9, {"Message-ID": "<9@x>", "Subject": "C", "Date": day(9)}),
        msg(10, {"Subject": "D", "Date": day(10)}),  # no Message-ID at all
        msg(11, {"Message-ID": "<1@x>", "Subject": "dup", "Date": day(11)}),  # a duplicate id
    ]
    roots = thread.references(messages)
    assert thread.format_threads(roots, lambda m: m.seq) == (
        "(1 (2 3)(4)(7))((5)(6))((8)(9))(10)(11)"
    )


def test_references_breaks_loops() -> None:
    messages = [
        msg(1, {"Message-ID": "<a@x>", "References": "<b@x>", "Subject": "loop", "Date": day(1)}),
        msg(2, {"Message-ID": "<b@x>", "References": "<a@x>", "Subject": "loop", "Date": day(2)}),
        msg(3, {"Message-ID": "<c@x>", "References": "<c@x>", "Subject": "self", "Date": day(3)}),
    ]
    text = thread.format_threads(thread.references(messages), lambda m: m.seq)
    assert sorted(text.replace("(", " ").replace(")", " ").split()) == ["1", "2", "3"]


def test_format_threads_rfc_5256_example() -> None:
    # RFC 5256 §4: "(2)(3 6 (4 23)(44 7 96))"
    def node(number: int, *children: thread.Node) -> thread.Node:
        made = thread.Node(StoredMessage(b"\r\n", uid=number, seq=number))
        for child in children:
            made.add(child)
        return made

    roots = [node(2), node(3, node(6, node(4, node(23)), node(44, node(7, node(96)))))]
    assert thread.format_threads(roots, lambda m: m.seq) == "(2)(3 6 (4 23)(44 7 96))"
    dummy = thread.Node()
    dummy.add(node(5))
    dummy.add(node(8))
    assert thread.format_threads([dummy], lambda m: m.seq) == "((5)(8))"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "Fri,",
                " 31",
                " Dec",
                " 9999",
                " 0000",
                " 23:59:59",
                " 99:99:99",
                " -1200",
                " +9999",
                " GMT",
                " 1",
                "x",
                ",",
            ]
        ),
        max_size=8,
    ).map("".join)
)
def test_any_date_header_sorts_and_threads(date: str) -> None:
    messages = [msg(1, {"Date": date, "Subject": "s"}), msg(2, {"Subject": "Re: s"})]
    assert len(sort_messages(messages, [SortCriterion("DATE")])) == 2
    assert thread.format_threads(thread.references(messages), lambda m: m.seq)
