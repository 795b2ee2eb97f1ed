"""Client input with its secrets masked, for the telemetry log (chapter 12.5.5).

`SecretMask` follows what a client sends just far enough to know where a password can
be: it frames lines and the literals they announce (RFC 3501 §4.3, ``{n}`` and the
RFC 7888 ``{n+}``/``{n-}`` forms) and rewrites

* a LOGIN command (RFC 3501 §6.2.3) as ``TAG LOGIN ***``, its literals left out;
* an AUTHENTICATE command (§6.2.2) as ``TAG AUTHENTICATE MECHANISM ***`` when it carries
  an RFC 4959 initial response, and every line after it as ``***`` until the server says
  the exchange is over (`authentication_done`): those lines are SASL responses;

everything else passes unchanged, literal octets included.  A line is passed on only once
it is complete; at most ``max_line`` octets of it are held, and a longer one (which the
engine refuses) is left out.  Sans-I/O: bytes in, bytes out.
"""

from __future__ import annotations

import re

MASK = b"***"
_LITERAL = re.compile(rb"\{(\d{1,20})[+-]?\}\Z")
_SECRET_COMMANDS = (b"LOGIN", b"AUTHENTICATE")


class SecretMask:
    """See the module docstring."""

    def __init__(self, max_line: int = 65536) -> None:
        self.max_line = max_line
        self._line = bytearray()
        self._literal_left = 0
        self._literal_hidden = False
        self._command = b""  # LOGIN or AUTHENTICATE while one continues after a literal
        self._sasl = False  # lines are SASL responses
        self._overlong = False  # the line being received is longer than max_line

    def authentication_done(self) -> None:
        """The server ended an AUTHENTICATE exchange (or a LOGIN): lines are commands again."""
        self._sasl = False

    def feed(self, data: bytes) -> bytes:
        """The masked form of ``data`` (what of it is complete so far)."""
        out = bytearray()
        position, size = 0, len(data)
        while position < size:
            if self._literal_left:
                take = min(self._literal_left, size - position)
                if not self._literal_hidden:
                    out += data[position : position + take]
                self._literal_left -= take
                position += take
                continue
            if self._line.endswith(b"\r") and data.startswith(b"\n", position):
                del self._line[-1]  # the CRLF was split between two reads
                position += 1
                out += self._complete_line()
                continue
            end = data.find(b"\r\n", position)
            if end < 0:
                self._line += data[position:]
                if len(self._line) > self.max_line:  # the engine refuses it; it is not kept
                    self._line.clear()
                    self._overlong = True
                break
            self._line += data[position:end]
            position = end + 2
            out += self._complete_line()
        return bytes(out)

    def _complete_line(self) -> bytes:
        line, self._line = bytes(self._line), bytearray()
        if self._overlong:
            self._overlong = False
            return b"[a line over %d octets, left out]\r\n" % self.max_line
        return self._masked_line(line) + b"\r\n"

    def _masked_line(self, line: bytes) -> bytes:
        if self._sasl:
            return MASK  # a SASL response (or the client's "*" that cancels)
        literal = _LITERAL.search(line)
        if self._command:
            shown = MASK  # the rest of a LOGIN/AUTHENTICATE after a literal
        else:
            words = line.split(b" ", 2)
            command = words[1].upper() if len(words) > 1 else b""
            if command in _SECRET_COMMANDS:
                self._command = command
                shown = words[0] + b" " + words[1]
                if command == b"LOGIN":
                    shown += b" " + MASK
                elif len(words) > 2:
                    mechanism, _, initial = words[2].partition(b" ")
                    shown += b" " + mechanism + (b" " + MASK if initial else b"")
            else:
                shown = line
        if literal is not None:
            self._literal_left = int(literal.group(1))
            self._literal_hidden = bool(self._command)
        elif self._command:
            self._sasl = self._command == b"AUTHENTICATE"
            self._command = b""
        return shown
