"""The lexical level of RFC 3501 §9: a cursor over one complete, framed command.

The reader frames a command as line segments with the literals between them (segment
*i* ends with the marker ``{n}``, ``{n+}`` or ``~{n}`` of literal *i*; RFC 3501 §4.3,
RFC 7888 §3, RFC 3516 §4.3).  `Cursor` walks that structure with the grammar's
primitives (atoms, numbers, quoted strings, literals, astring, nstring, dates) and
counts what it hands out, so the argument count and the parenthesis nesting depth are
limited in one place.  Every failure is a `CommandError` (BAD) with a human sentence.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from posthouse.protocols.imap.errors import CommandError

_CTL: Final = frozenset(range(0x00, 0x20)) | {0x7F}
# RFC 3501 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
# quoted-specials / resp-specials.
ATOM_CHARS: Final = frozenset(range(0x01, 0x80)) - _CTL - frozenset(b'(){ %*"\\]')
ASTRING_CHARS: Final = ATOM_CHARS | {ord("]")}
LIST_CHARS: Final = ATOM_CHARS | frozenset(b"%*]")  # RFC 3501 §9 list-char
TAG_CHARS: Final = ASTRING_CHARS - {ord("+")}
SEQUENCE_CHARS: Final = frozenset(b"0123456789:,*$")
_DIGITS: Final = frozenset(b"0123456789")
MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DATE: Final = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME: Final = re.compile(
    rb'"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
# RFC 3501 §9 literal, RFC 7888 §3 literal+ ("{n+}"), RFC 3516 §4.3 literal8 ("~{n}").
LITERAL_MARKER: Final = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")


@dataclass(frozen=True)
class Literal:
    """A literal's octets and how it was announced."""

    data: bytes
    binary: bool = False  # literal8 "~{n}" (RFC 3516 §4.3): may hold NUL
    synchronizing: bool = True  # False for "{n+}" (RFC 7888)


@dataclass(frozen=True)
class ParseLimits:
    """Limits on one command's structure."""

    arguments: int = 10_000  # tokens (atoms, numbers, strings, list openings) per command
    depth: int = 32  # nesting of parentheses (and of SEARCH keys, see search.py)


class Cursor:
    """A position in a framed command (see the module docstring)."""

    __slots__ = ("_count", "_depth", "_limits", "_literals", "_pos", "_segment", "_segments")

    def __init__(
        self,
        segments: Sequence[bytes],
        literals: Sequence[Literal] = (),
        limits: ParseLimits | None = None,
    ) -> None:
        if len(literals) != len(segments) - 1:
            raise ValueError("a framed command has one literal between each two segments")
        self._segments = segments
        self._literals = literals
        self._limits = limits or ParseLimits()
        self._segment = 0
        self._pos = 0
        self._count = 0
        self._depth = 0

    # ------------------------------------------------------------ position

    @property
    def _line(self) -> bytes:
        return self._segments[self._segment]

    def peek(self) -> int | None:
        """The next octet, or None at the end of a segment (before a literal or the end)."""
        line = self._line
        return line[self._pos] if self._pos < len(line) else None

    def at_end(self) -> bool:
        return self._segment == len(self._segments) - 1 and self._pos == len(self._line)

    def at(self, text: bytes) -> bool:
        """True if the input continues with ``text`` (ASCII letters case-insensitive)."""
        line = self._line
        return line[self._pos : self._pos + len(text)].upper() == text.upper()

    def take(self, text: bytes) -> bool:
        """Consume ``text`` if the input continues with it."""
        if self.at(text):
            self._pos += len(text)
            return True
        return False

    def expect(self, text: bytes, what: str | None = None) -> None:
        if not self.take(text):
            raise self.error(f"expected {what or repr(text.decode('ascii'))}")

    def sp(self) -> None:
        """RFC 3501 §9 SP: exactly one space."""
        if not self.take(b" "):
            raise self.error("expected a space")

    def end(self) -> None:
        """The command must end here."""
        if not self.at_end():
            raise self.error("unexpected text at the end of the command")

    def error(self, text: str) -> CommandError:
        rest = self._line[self._pos : self._pos + 20].decode("ascii", "replace")
        where = f" near {rest!r}" if rest else " at the end of the line"
        return CommandError(f"Syntax error: {text}{where}")

    def counted(self) -> None:
        """Count one argument against `ParseLimits.arguments`."""
        self._count += 1
        if self._count > self._limits.arguments:
            raise CommandError("Too many arguments in one command")

    def enter(self) -> None:
        """One nesting level deeper (a parenthesised list or a SEARCH key)."""
        self._depth += 1
        if self._depth > self._limits.depth:
            raise CommandError(f"Nested more than {self._limits.depth} levels deep")

    def leave(self) -> None:
        self._depth -= 1

    # ------------------------------------------------------------ tokens

    def chars(self, allowed: frozenset[int], what: str) -> bytes:
        """One or more octets from ``allowed``."""
        line, start = self._line, self._pos
        pos = start
        while pos < len(line) and line[pos] in allowed:
            pos += 1
        if pos == start:
            raise self.error(f"expected {what}")
        self._pos = pos
        self.counted()
        return line[start:pos]

    def atom(self, what: str = "an atom") -> str:
        """RFC 3501 §9 atom, as text (upper-casing is the caller's choice)."""
        return self.chars(ATOM_CHARS, what).decode("ascii")

    def number(self, *, limit: int = 4294967295, nonzero: bool = False) -> int:
        """RFC 3501 §9 number / nz-number; RFC 7162 §7 number64 with a larger ``limit``."""
        text = self.chars(_DIGITS, "a number")
        value = int(text)
        if value > limit or (nonzero and value == 0) or (nonzero and text[0] == 0x30):
            raise CommandError(f"Syntax error: number {text.decode()} out of range")
        return value

    def quoted(self) -> bytes:
        """RFC 3501 §9 quoted: DQUOTE *QUOTED-CHAR DQUOTE, only \\" and \\\\ escaped.

        8-bit octets are accepted (RFC 6855 §3 utf8-quoted); whether they are valid
        UTF-8 is for the caller to check where it matters.
        """
        line = self._line
        if self.peek() != 0x22:
            raise self.error("expected a quoted string")
        out = bytearray()
        pos = self._pos + 1
        while True:
            nxt = _next_special(line, pos)
            if nxt < 0:
                raise self.error("unterminated quoted string")
            out += line[pos:nxt]
            if line[nxt] == 0x22:
                self._pos = nxt + 1
                break
            if nxt + 1 >= len(line) or line[nxt + 1] not in (0x22, 0x5C):
                self._pos = nxt
                raise self.error('backslash must escape only \\" or \\\\ in a quoted string')
            out.append(line[nxt + 1])
            pos = nxt + 2
        if 0 in out or 0x0D in out or 0x0A in out:
            raise self.error("NUL, CR or LF in a quoted string")
        self.counted()
        return bytes(out)

    def literal(self) -> Literal:
        """A literal whose marker starts here; the cursor moves past it to the next segment."""
        line = self._line
        match = LITERAL_MARKER.match(line, self._pos)
        if match is None or self._segment == len(self._segments) - 1:
            raise self.error("expected a literal")
        literal = self._literals[self._segment]
        self._segment += 1
        self._pos = 0
        if 0 in literal.data and not literal.binary:
            raise CommandError("Syntax error: NUL in a literal (only literal8 ~{n} may hold it)")
        self.counted()
        return literal

    def string(self) -> bytes:
        """RFC 3501 §9 string: quoted or literal (literal8 is not a string)."""
        if self.peek() == 0x22:
            return self.quoted()
        if self.peek() == 0x7B:
            return self.literal().data
        raise self.error("expected a string")

    def astring(self) -> bytes:
        """RFC 3501 §9 astring: 1*ASTRING-CHAR or string."""
        if self.peek() in (0x22, 0x7B):
            return self.string()
        return self.chars(ASTRING_CHARS, "a string")

    def nstring(self) -> bytes | None:
        """RFC 3501 §9 nstring: string or NIL."""
        if self.peek() in (0x22, 0x7B):
            return self.string()
        if self.keyword(b"NIL"):
            self.counted()
            return None
        raise self.error("expected a string or NIL")

    def keyword(self, word: bytes) -> bool:
        """Consume ``word`` (case-insensitive) if it is the whole next atom."""
        end = self._pos + len(word)
        line = self._line
        if self.at(word) and (end == len(line) or line[end] not in ATOM_CHARS):
            self._pos = end
            return True
        return False

    def utf8(self, raw: bytes, what: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandError(f"Syntax error: {what} is not valid UTF-8") from exc

    def astring_text(self, what: str = "a string") -> str:
        """An astring as UTF-8 text."""
        return self.utf8(self.astring(), what)

    def open_list(self) -> None:
        """A "(" that opens a nested list."""
        self.expect(b"(")
        self.counted()
        self.enter()

    def close_list(self) -> None:
        self.expect(b")")
        self.leave()

    def date(self) -> dt.date:
        """RFC 3501 §9 date: date-text or DQUOTE date-text DQUOTE (SEARCH)."""
        quoted = self.take(b'"')
        match = _DATE.match(self._line, self._pos)
        if match is None:
            raise self.error("expected a date like 1-Feb-1994")
        self._pos = match.end()
        if quoted:
            self.expect(b'"', "a closing quote")
        self.counted()
        day, month, year = match.groups()
        return _calendar_date(int(day), month, int(year))

    def date_time(self) -> dt.datetime:
        """RFC 3501 §9 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" (APPEND)."""
        match = _DATE_TIME.match(self._line, self._pos)
        if match is None:
            raise self.error('expected a date-time like "17-Jul-1996 02:44:25 -0700"')
        self._pos = match.end()
        self.counted()
        day, month, year, hour, minute, second, sign, zh, zm = match.groups()
        date = _calendar_date(int(day.strip()), month, int(year))
        offset = dt.timedelta(hours=int(zh), minutes=int(zm))
        if int(zm) > 59:
            raise CommandError("Syntax error: invalid time zone in date-time")
        try:
            return dt.datetime(
                date.year,
                date.month,
                date.day,
                int(hour),
                int(minute),
                int(second),
                tzinfo=dt.timezone(-offset if sign == b"-" else offset),
            )
        except ValueError as exc:
            raise CommandError(f"Syntax error: invalid time in date-time ({exc})") from exc


def _next_special(line: bytes, pos: int) -> int:
    quote = line.find(b'"', pos)
    backslash = line.find(b"\\", pos)
    if backslash < 0 or (0 <= quote < backslash):
        return quote
    return backslash


def _calendar_date(day: int, month: bytes, year: int) -> dt.date:
    name = month.decode("ascii").upper()
    if name not in MONTHS:
        raise CommandError(f"Syntax error: unknown month {name!r}")
    try:
        return dt.date(year, MONTHS.index(name) + 1, day)
    except ValueError as exc:
        raise CommandError(f"Syntax error: invalid date ({exc})") from exc
