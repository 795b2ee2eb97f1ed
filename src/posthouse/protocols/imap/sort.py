"""SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO) as a pure function over message views.

Each key follows RFC 5256 §3: ARRIVAL the internal date, DATE the sent date (the
internal date where the Date: header is missing or unreadable, §2.2), CC/FROM/TO the
local part of the first address, SIZE, SUBJECT the base subject (subject.py); strings
compare i;ascii-casemap.  Messages equal on every key stay in sequence-number order.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence

from posthouse.protocols.imap.arguments import SortCriterion
from posthouse.protocols.imap.envelope import Address, parse_address_list
from posthouse.protocols.imap.search import sent_date
from posthouse.protocols.imap.subject import base_subject
from posthouse.protocols.imap.view import MessageView

SortValue = int | float | str


def sort_date(message: MessageView) -> float:
    """RFC 5256 §2.2 sent date as a UTC timestamp (internal date as the fallback)."""
    sent = sent_date(message)
    when = sent or message.internal_date
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _first_address(message: MessageView, name: str) -> Address | None:
    for value in message.header_values(name):
        for address in parse_address_list(value.encode("utf-8", "surrogateescape")):
            if address.host is not None:
                return address
    return None


def _ascii_upper(text: str) -> str:
    return "".join(c.upper() if c.isascii() else c for c in text)


def _mailbox(message: MessageView, name: str) -> str:
    address = _first_address(message, name)
    if address is None or address.mailbox is None:
        return ""
    return _ascii_upper(address.mailbox.decode("utf-8", "replace"))


def _display(message: MessageView, name: str) -> str:
    """RFC 5957 §3: the display name, or the addr-spec when there is none."""
    address = _first_address(message, name)
    if address is None:
        return ""
    if address.name:
        text = address.name.decode("utf-8", "replace")
    else:
        host = (address.host or b"").decode("utf-8", "replace")
        text = (address.mailbox or b"").decode("utf-8", "replace") + ("@" + host if host else "")
    return _ascii_upper(text)


def key_value(message: MessageView, key: str) -> SortValue:
    """The value ``message`` sorts by for one RFC 5256 sort key."""
    match key:
        case "ARRIVAL":
            return message.internal_date.timestamp()
        case "DATE":
            return sort_date(message)
        case "SIZE":
            return message.size
        case "SUBJECT":
            subjects = message.header_values("Subject")
            return base_subject(subjects[0] if subjects else "")[0]
        case "CC" | "FROM" | "TO":
            return _mailbox(message, key)
        case "DISPLAYFROM":
            return _display(message, "FROM")
        case "DISPLAYTO":
            return _display(message, "TO")
    raise ValueError(f"unknown sort key {key!r}")


def sort_messages(
    messages: Iterable[MessageView], criteria: Sequence[SortCriterion]
) -> list[MessageView]:
    """``messages`` sorted by ``criteria`` (RFC 5256 §3); ties by sequence number."""
    rows = [
        ([key_value(message, criterion.key) for criterion in criteria], message.seq, message)
        for message in messages
    ]

    def compare(
        left: tuple[list[SortValue], int, MessageView],
        right: tuple[list[SortValue], int, MessageView],
    ) -> int:
        for index, criterion in enumerate(criteria):
            a, b = left[0][index], right[0][index]
            if a != b:
                less = a < b  # type: ignore[operator]
                result = -1 if less else 1
                return -result if criterion.reverse else result
        return (left[1] > right[1]) - (left[1] < right[1])

    rows.sort(key=functools.cmp_to_key(compare))
    return [row[2] for row in rows]
