"""The metadata FETCH writer writes the octets the general response writer writes."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import pytest

from posthouse.protocols.imap import response
from posthouse.protocols.imap.fetchatt import FetchItem
from posthouse.protocols.imap.metadata_fetch import (
    MAX_FLAG_FORMS,
    FlagForms,
    MetadataFetch,
    metadata_only,
)


class Meta(NamedTuple):
    uid: int
    modseq: int
    size: int
    internal_date: dt.datetime
    flags: frozenset[str] = frozenset()


MESSAGE = Meta(
    4242, 77, 5120, dt.datetime(2026, 2, 7, 21, 52, 25, tzinfo=dt.timezone(-dt.timedelta(hours=8)))
)


def general(
    seq: int, names: list[str], flags: frozenset[str], condstore: bool, message: Meta = MESSAGE
) -> bytes:
    values = {
        "UID": message.uid,
        "FLAGS": response.flags_value(sorted(flags)),
        "MODSEQ": [message.modseq],
        "RFC822.SIZE": message.size,
        "INTERNALDATE": response.date_time(message.internal_date),
    }
    items = [(name, values[name]) for name in names]
    if condstore and "MODSEQ" not in names:
        items.append(("MODSEQ", values["MODSEQ"]))
    return response.fetch(seq, items).to_bytes()


@pytest.mark.parametrize(
    "names",
    [["UID", "FLAGS"], ["FLAGS"], ["RFC822.SIZE", "INTERNALDATE", "UID", "MODSEQ", "FLAGS"]],
)
@pytest.mark.parametrize(
    "flags",
    [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Recent", "\\Seen", "$Label", "\\Answered"})],
)
@pytest.mark.parametrize("condstore", [False, True])
def test_lines_equal_the_general_writers(
    names: list[str], flags: frozenset[str], condstore: bool
) -> None:
    items = [FetchItem(name) for name in names]
    assert metadata_only(items)
    writer = MetadataFetch(items, FlagForms(), condstore=condstore)
    for _ in range(2):  # the second time from the remembered flag form
        assert writer.line(17, MESSAGE, flags) == general(17, names, flags, condstore)


FLAG_LISTS = [
    frozenset(),
    frozenset({"\\Seen"}),
    frozenset({"\\Seen", "$Label", "\\Answered"}),
    frozenset({"\\Deleted"}),
    frozenset({"50%off"}),  # a "%" in a keyword must not become a format directive
]


@pytest.mark.parametrize(
    "names",
    [
        ["UID", "FLAGS"],
        ["FLAGS"],
        ["FLAGS", "UID"],
        ["UID", "RFC822.SIZE", "FLAGS", "MODSEQ"],
        ["RFC822.SIZE", "INTERNALDATE", "UID", "MODSEQ", "FLAGS"],
    ],
)
@pytest.mark.parametrize("condstore", [False, True])
@pytest.mark.parametrize("recent", [set(), {9, 12, 30}])
def test_blocks_equal_the_general_writers_line_by_line(
    names: list[str], condstore: bool, recent: set[int]
) -> None:
    when = MESSAGE.internal_date
    messages = [
        Meta(uid, 1000 + uid * 3, 400 + uid, when + dt.timedelta(minutes=uid), FLAG_LISTS[uid % 5])
        for uid in range(5, 40, 1)
    ]
    seqs = [n * 2 + 1 for n in range(len(messages))]  # any numbering, not just 1, 2, 3 ...
    writer = MetadataFetch([FetchItem(name) for name in names], FlagForms(), condstore=condstore)
    expected = b"".join(
        general(seq, names, m.flags | ({"\\Recent"} if m.uid in recent else set()), condstore, m)
        for seq, m in zip(seqs, messages, strict=True)
    )
    assert writer.block(seqs, messages, recent) == expected
    uids, flags = [m.uid for m in messages], [m.flags for m in messages]
    assert writer.block(seqs, messages, recent, uids=uids, flags=flags) == expected
    assert writer.block([], [], recent) == b""


def test_requests_with_content_or_structure_take_the_general_path() -> None:
    assert not metadata_only([FetchItem("UID"), FetchItem("ENVELOPE")])
    assert not metadata_only([FetchItem("FLAGS"), FetchItem("BODYSTRUCTURE")])
    assert not metadata_only([FetchItem("RFC822")])


def test_flag_forms_stay_bounded() -> None:
    forms = FlagForms()
    for n in range(MAX_FLAG_FORMS * 3):
        assert forms.wire(frozenset({f"$k{n}"})) == b"($k%d)" % n
    assert len(forms._forms) <= MAX_FLAG_FORMS
