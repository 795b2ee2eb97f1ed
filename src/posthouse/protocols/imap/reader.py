"""Command framing: octets in arbitrary chunks in, complete commands and refusals out.

`CommandReader` is fed whatever the connection delivers and hands out, one at a time:

* `Command` -- a complete, parsed command (commands.py);
* `ContinuationRequest` -- a synchronising literal ``{n}`` was accepted: send ``+``
  now (RFC 3501 §7.5), its octets follow;
* `Refused` -- a tagged (or, without a usable tag, untagged) BAD/NO to send; the
  stream continues with the next command;
* `Fatal` -- an untagged BYE to send before closing the connection.

Framing is by lines: a line that ends with a literal marker outside a quoted string
(``{n}``, ``{n+}`` RFC 7888, ``~{n}`` RFC 3516) is followed by n octets and then more of
the same command.  Limits: the line length, the size of one literal (APPEND messages
have their own, APPENDLIMIT RFC 7889), the largest non-synchronising literal (4096 for
LITERAL-, RFC 7888 §4), the size of one whole command and its number of literals.  A
literal over its limit is refused before one octet of it is read: a synchronising one
with NO [TOOBIG] instead of the continuation request (the client then sends nothing
more of that command), a non-synchronising one with BAD [TOOBIG] while its octets are
read and thrown away (or, beyond what is worth discarding, BYE).  An over-long line is
answered BAD when its end arrives, and is never kept in memory.  The outcome never
depends on how the input was split into chunks.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Final

from posthouse.protocols.errors import UsageError
from posthouse.protocols.imap.commands import Command, parse_after_tag, read_tag
from posthouse.protocols.imap.cursor import LITERAL_MARKER, TAG_CHARS, Cursor, Literal, ParseLimits
from posthouse.protocols.imap.errors import CommandError
from posthouse.protocols.imap.response import TOOBIG, Code, Status
from posthouse.protocols.lines import LineBuffer

_TAIL: Final = 32  # octets of an over-long line kept to see a literal marker at its end
_APPEND: Final = re.compile(rb"[^ ]+ APPEND ", re.IGNORECASE)


@dataclass(frozen=True)
class ReaderLimits:
    """Octet limits (lines count their CRLF)."""

    line: int = 64 * 1024  # one line; RFC 7162 §4 asks servers to take at least 8192
    literal: int = 64 * 1024  # one literal of any command but APPEND
    append: int = 64 * 1024 * 1024  # one APPEND message (announce as APPENDLIMIT)
    append_total: int = 256 * 1024 * 1024  # all messages of one MULTIAPPEND
    nonsync: int = 4096  # the largest {n+}: 4096 for LITERAL- (RFC 7888 §4)
    command: int = 1024 * 1024  # one command's lines and non-APPEND literals together
    literals: int = 1000  # literals in one command (MULTIAPPEND messages)
    parse: ParseLimits = field(default_factory=ParseLimits)

    @property
    def discard(self) -> int:
        """The largest refused non-synchronising literal worth reading and throwing away."""
        return max(self.literal, self.append)


@dataclass(frozen=True)
class ContinuationRequest:
    """Send a command continuation request (``+``): a synchronising literal follows.

    ``name`` is the command's (upper-case) name.  Instead of sending ``+`` the engine
    may refuse the literal with `CommandReader.decline_literal` (RFC 3501 §7.5: the
    client then sends nothing more of that command), e.g. an APPEND to a mailbox that
    does not exist (NO [TRYCREATE]).
    """

    tag: str
    name: str = ""


@dataclass(frozen=True)
class Refused:
    """A command refused before it ran; send ``response`` and go on reading."""

    response: Status


@dataclass(frozen=True)
class Fatal:
    """Send ``response`` (an untagged BYE) and close the connection."""

    response: Status


class Signal(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = Signal.NEED_DATA
Event = Command | ContinuationRequest | Refused | Fatal


class LineStatus(enum.Enum):
    TOO_LONG = "TOO_LONG"


TOO_LONG: Final = LineStatus.TOO_LONG


@dataclass(frozen=True)
class _Marker:
    size: int
    binary: bool
    synchronizing: bool


@dataclass(frozen=True)
class _Overlong:
    """An over-long line was discarded; ``tail`` is its end, ``head`` its start."""

    head: bytes
    tail: bytes


class CommandReader:
    """See the module docstring."""

    def __init__(
        self, limits: ReaderLimits | None = None, *, buffer: LineBuffer | None = None
    ) -> None:
        """``buffer``: share the engine's input buffer (engine_base.EngineCore._buf), so
        that its SASL and TLS handling see the same octets."""
        self.limits = limits or ReaderLimits()
        self._input = buffer if buffer is not None else LineBuffer()
        self._scan = (-1, 0)  # (buffer offset, octets after it known to hold no LF)
        self._discarding = False  # inside an over-long line
        self._head = b""
        self._tail = b""
        self._segments: list[bytes] = []
        self._literals: list[Literal] = []
        self._size = 0
        self._appended = 0  # octets of APPEND messages in the current command
        self._literal: _Marker | None = None  # a literal being read
        self._skip = 0  # octets of a refused literal still to throw away
        self._abandoned = False  # the rest of a refused command is being thrown away
        self._closed = False
        self._queued: list[Event] = []  # a Fatal that follows a refusal

    # ------------------------------------------------------------ API

    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed."""
        return len(self._input)

    @property
    def closed(self) -> bool:
        return self._closed

    def feed(self, data: bytes) -> None:
        if not self._closed:
            self._input.feed(data)

    def reset(self) -> None:
        """Forget all input and any partial command (after a TLS handshake, RFC 3501
        §6.2.1: nothing the client sent before it is interpreted).  An engine that shares
        its buffer calls this instead of clearing the buffer itself."""
        self._input.clear()
        self._scan = (-1, 0)
        self._discarding = False
        self._reset()
        self._literal = None
        self._skip = 0
        self._abandoned = False
        self._queued.clear()

    def decline_literal(self) -> None:
        """Do not read the synchronising literal just announced: the engine answers the
        `ContinuationRequest` with a tagged NO or BAD instead of ``+``."""
        if self._literal is None or not self._literal.synchronizing:
            raise UsageError("decline_literal() without a pending synchronising literal")
        self._literal = None
        self._reset()

    def take_buffered(self) -> bytes:
        """Remove and return every unconsumed octet (after STARTTLS or COMPRESS the
        engine handles them itself)."""
        return self._input.read(len(self._input))

    def read_raw_line(self, limit: int) -> bytes | LineStatus | None:
        """The next line without its line end, for input that is not a command (the
        DONE of IDLE, SASL responses); `TOO_LONG` for a line over ``limit``."""
        line = self._read_line(limit)
        return TOO_LONG if isinstance(line, _Overlong) else line

    def next_event(self) -> Event | Signal:
        """The next event, or NEED_DATA when more input is needed."""
        if self._queued:
            return self._queued.pop(0)
        while not self._closed:
            if self._skip:
                if not self._discard_octets():
                    return NEED_DATA
                continue
            if self._literal is not None:
                if not self._read_literal():
                    return NEED_DATA
                continue
            line = self._read_line(self.limits.line)
            if line is None:
                return NEED_DATA
            event = self._line(line)
            if event is not None:
                return event
        return NEED_DATA

    # ------------------------------------------------------------ lines

    def _consume(self, stop: int) -> None:
        """Consume the buffer up to offset ``stop`` (of the `LineBuffer.peek` view)."""
        _, pos = self._input.peek()
        self._input.advance(stop - pos)
        self._scan = (-1, 0)

    def _read_line(self, limit: int) -> bytes | _Overlong | None:
        buf, pos = self._input.peek()
        scanned = self._scan[1] if self._scan[0] == pos else 0
        end = buf.find(b"\n", pos + scanned)
        if self._discarding:
            piece = buf[pos:] if end < 0 else buf[pos:end]
            self._tail = (self._tail + piece)[-_TAIL:]
            if end < 0:
                self._consume(len(buf))
                return None
            self._consume(end + 1)
            self._discarding = False
            return _Overlong(self._head, self._tail.removesuffix(b"\r"))
        if end < 0:
            if len(buf) - pos >= limit:
                self._head = bytes(buf[pos : pos + 200])
                self._tail = bytes(buf[-_TAIL:])
                self._discarding = True
                self._consume(len(buf))
            else:
                self._scan = (pos, len(buf) - pos)
            return None
        if end + 1 - pos > limit:
            self._head = bytes(buf[pos : pos + 200])
            tail = bytes(buf[max(pos, end - _TAIL) : end])
            self._consume(end + 1)
            return _Overlong(self._head, tail.removesuffix(b"\r"))
        stop = end - 1 if end > pos and buf[end - 1] == 0x0D else end
        line = bytes(buf[pos:stop])
        self._consume(end + 1)
        return line

    def _line(self, line: bytes | _Overlong) -> Event | None:
        if isinstance(line, _Overlong):
            marker = _marker(line.tail, quoted_state_known=False)
            head = self._segments[0] if self._segments else line.head
            if self._abandoned:
                return self._continue_abandoned(marker)
            return self._refuse(
                _tag_of(head), Status("BAD", "Command line too long", code=TOOBIG), marker
            )
        if self._abandoned:
            return self._continue_abandoned(_marker(line))
        if not self._segments and not line:
            return None  # an empty line between commands is ignored
        head = self._segments[0] if self._segments else line
        self._size += len(line) + 2
        if self._size > self.limits.command:
            return self._refuse(
                _tag_of(head), Status("BAD", "Command too long", code=TOOBIG), _marker(line)
            )
        marker = _marker(line)
        self._segments.append(line)
        if marker is None:
            return self._complete()
        return self._announce(head, marker)

    def _announce(self, head: bytes, marker: _Marker) -> Event | None:
        tag = _tag_of(head)
        append = _APPEND.match(head) is not None
        limit = self.limits.append if append else self.limits.literal
        if len(self._literals) >= self.limits.literals:
            return self._refuse(
                tag, Status("BAD", "Too many literals in one command", code=TOOBIG), marker
            )
        total = self._appended + marker.size
        reason: str | None = None
        if marker.size > limit:
            what = "Message" if append else "Literal"
            reason = f"{what} of {marker.size} octets is larger than the limit of {limit}"
        elif append and total > self.limits.append_total:
            reason = f"The messages of one APPEND exceed {self.limits.append_total} octets"
        elif not append and self._size + marker.size > self.limits.command:
            reason = f"The command exceeds {self.limits.command} octets"
        if reason is not None:
            refusal = Status("NO" if marker.synchronizing else "BAD", reason, code=TOOBIG)
            return self._refuse(tag, refusal, marker)
        if not marker.synchronizing and marker.size > self.limits.nonsync:
            return self._refuse(
                tag,
                Status(
                    "BAD",
                    f"Non-synchronizing literals are limited to {self.limits.nonsync} octets"
                    " (RFC 7888 LITERAL-)",
                    code=TOOBIG,
                ),
                marker,
            )
        if append:
            self._appended = total
        else:
            self._size += marker.size
        self._literal = marker
        if marker.synchronizing:
            return ContinuationRequest(tag or "*", _name_of(head))
        return None

    def _read_literal(self) -> bool:
        marker = self._literal
        assert marker is not None
        if len(self._input) < marker.size:
            return False
        data = self._input.read(marker.size)
        self._literals.append(Literal(data, marker.binary, marker.synchronizing))
        self._literal = None
        return True

    def _complete(self) -> Event:
        segments, literals = self._segments, self._literals
        self._reset()
        cursor = Cursor(segments, literals, self.limits.parse)
        try:
            tag = read_tag(cursor)
        except CommandError:
            return Refused(Status("BAD", "Invalid or missing command tag"))
        try:
            return parse_after_tag(cursor, tag)
        except CommandError as error:
            code = Code(*error.code.split(" ", 1)) if error.code else None
            return Refused(Status(error.status, error.text, tag, code))

    def _reset(self) -> None:
        self._segments = []
        self._literals = []
        self._size = 0
        self._appended = 0

    # ------------------------------------------------------------ refusals

    def _refuse(self, tag: str | None, response: Status, marker: _Marker | None) -> Event:
        """Refuse the current command; throw away what the client still sends of it."""
        self._reset()
        refusal = Refused(Status(response.status, response.text, tag, response.code))
        if marker is not None and not marker.synchronizing:
            event = self._continue_abandoned(marker)
            if event is not None:
                self._queued.append(event)
            else:
                self._abandoned = True
        return refusal

    def _continue_abandoned(self, marker: _Marker | None) -> Event | None:
        if marker is None or marker.synchronizing:
            self._abandoned = False  # the refused command ends here
            return None
        if marker.size > self.limits.discard:
            self._closed = True
            self._input.clear()
            return Fatal(Status("BYE", "Literal too large to skip; closing", code=TOOBIG))
        self._skip = marker.size
        return None

    def _discard_octets(self) -> bool:
        taken = min(len(self._input), self._skip)
        self._input.advance(taken)
        self._skip -= taken
        return self._skip == 0


def _tag_of(line: bytes) -> str | None:
    """The tag a command line starts with, if it has a valid one."""
    end = 0
    while end < len(line) and end < 100 and line[end] in TAG_CHARS:
        end += 1
    if end == 0 or (end < len(line) and line[end] != 0x20):
        return None
    return line[:end].decode("ascii")


def _name_of(line: bytes) -> str:
    """The upper-case command name after the tag (and UID), for a continuation request."""
    words = line.split(b" ", 3)
    index = 2 if len(words) > 2 and words[1].upper() == b"UID" else 1
    return words[index].decode("ascii", "replace").upper() if len(words) > index else ""


def _marker(line: bytes, *, quoted_state_known: bool = True) -> _Marker | None:
    """The literal marker that ends ``line``, if it is not inside a quoted string.

    For the tail of an over-long line the quoting state is unknown; a marker there is
    taken at face value (the safe reading: its octets are then thrown away, not parsed).
    """
    if not line.endswith(b"}"):
        return None
    match = LITERAL_MARKER.search(line)
    if match is None or (quoted_state_known and _inside_quotes(line, match.start())):
        return None
    return _Marker(int(match.group(2)), match.group(1) == b"~", match.group(3) != b"+")


def _inside_quotes(line: bytes, stop: int) -> bool:
    """True if position ``stop`` of ``line`` lies inside a quoted string."""
    inside = False
    pos = 0
    while True:
        quote = line.find(b'"', pos, stop)
        if quote < 0:
            return inside
        if inside:
            backslashes = 0
            while quote - 1 - backslashes >= pos and line[quote - 1 - backslashes] == 0x5C:
                backslashes += 1
            if backslashes % 2:
                pos = quote + 1
                continue
        inside = not inside
        pos = quote + 1
