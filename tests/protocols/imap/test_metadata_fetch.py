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


MESSAGE = Meta(
    4242, 77, 5120, dt.datetime(2026, 2, 7, 21, 52, 25, tzinfo=dt.timezone(-dt.timedelta(hours=8)))
)


def general(seq: int, names: list[str], flags: frozenset[str], condstore: bool) -> bytes:
    values = {
        "UID": MESSAGE.uid,
        "FLAGS": response.flags_value(sorted(flags)),
        "MODSEQ": [MESSAGE.modseq],
        "RFC822.SIZE": MESSAGE.size,
        "INTERNALDATE": response.date_time(MESSAGE.internal_date),
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


def test_requests_with_content_or_structure_take_the_general_path() -> None:
    assert not metadata_only([FetchItem("UID"), FetchItem("ENVELOPE")])
    assert not metadata_only([FetchItem("FLAGS"), FetchItem("BODYSTRUCTURE")])
    assert not metadata_only([FetchItem("RFC822")])


def test_flag_forms_stay_bounded() -> None:
    forms = FlagForms()
    for n in range(MAX_FLAG_FORMS * 3):
        assert forms.wire(frozenset({f"$k{n}"})) == b"($k%d)" % n
    assert len(forms._forms) <= MAX_FLAG_FORMS
