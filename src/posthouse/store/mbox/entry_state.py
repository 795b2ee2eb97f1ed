"""What an mbox entry says about itself, for moving it into the IMAP store (``mailcv -I``).

* :func:`from_line_date` -- the time of receipt on the ``From_`` line (RFC 4155: ``asctime``
  form, UTC unless a zone follows), which becomes the message's internal date;
* :func:`status_flags` -- the ``Status:`` and ``X-Status:`` header fields mail readers
  (mail, mutt, UW imapd, Pine) keep in mbox files: ``R`` read -> ``\\Seen``, ``O`` old (seen
  by a reader: not ``\\Recent``), and in ``X-Status`` ``A`` -> ``\\Answered``, ``F`` ->
  ``\\Flagged``, ``D`` -> ``\\Deleted``, ``T`` -> ``\\Draft`` (UW imapd's letters);
  the fields themselves are removed from the message, being the old mailbox's bookkeeping
  and not part of the mail, as UW imapd and Dovecot do when they read an mbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["EntryState", "from_line_date", "status_flags"]

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
# "From sender Thu Dec  3 14:00:00 2026", optionally a zone before or after the year.
_DATE = re.compile(
    rb"[A-Z][a-z]{2} +([A-Z][a-z]{2}) +(\d{1,2}) +(\d{1,2}):(\d{2})(?::(\d{2}))?"
    rb"(?: +([+-]\d{4}|[A-Z]{3,4}))? +(\d{4})(?: +([+-]\d{4}))?"
)
_STATUS_FIELD = re.compile(rb"^(x-)?status:[ \t]*([^\r\n]*)\r?\n", re.IGNORECASE | re.MULTILINE)
_X_STATUS_FLAGS = {
    ord("A"): "\\Answered",
    ord("F"): "\\Flagged",
    ord("D"): "\\Deleted",
    ord("T"): "\\Draft",
}


def from_line_date(from_line: bytes) -> datetime | None:
    """The date of a ``From_`` line, or None when it has none that can be read."""
    match = _DATE.search(from_line)
    if match is None or match.group(1).decode() not in _MONTHS:
        return None
    month = _MONTHS[match.group(1).decode()]
    day, hour, minute = int(match.group(2)), int(match.group(3)), int(match.group(4))
    second, year = int(match.group(5) or 0), int(match.group(7))
    zone = UTC
    offset = match.group(8) or match.group(6)
    if offset is not None and offset[:1] in (b"+", b"-"):
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        zone = timezone(timedelta(minutes=-minutes if offset[:1] == b"-" else minutes))
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None


@dataclass(frozen=True)
class EntryState:
    """The content without its status fields, its flags, and whether it was seen (``O``)."""

    content: bytes
    flags: frozenset[str]
    old: bool


def status_flags(content: bytes) -> EntryState:
    """The flags of the status fields in the header section of ``content`` (module docstring)."""
    end = content.find(b"\r\n\r\n")
    header = content[: end + 2] if end >= 0 else content
    flags: set[str] = set()
    old = False
    for match in _STATUS_FIELD.finditer(header):
        letters = match.group(2).strip()
        if match.group(1):  # X-Status
            flags.update(_X_STATUS_FLAGS[c] for c in letters if c in _X_STATUS_FLAGS)
            continue
        if b"R" in letters:
            flags.add("\\Seen")
        old = old or b"O" in letters or b"R" in letters
    stripped = _STATUS_FIELD.sub(b"", header) + (content[end + 2 :] if end >= 0 else b"")
    return EntryState(stripped, frozenset(flags), old)
