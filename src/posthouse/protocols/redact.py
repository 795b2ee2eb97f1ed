"""Client input with its secrets masked, for the telemetry log (chapter 12.5.5): what every
protocol's mask shares.

`LineMask` frames what a client sends into CRLF lines and passes each complete line through
the protocol's ``_masked_line`` (IMAP: :mod:`posthouse.protocols.imap.redact`, POP3:
:mod:`posthouse.protocols.pop3.redact`), which may announce content that follows the line
unframed (an IMAP literal), passed on or left out as it says.  While a SASL exchange runs
every line is a SASL response and is masked, until the server says it is over
(`authentication_done`).  A line is passed on only once it is complete; at most
``max_line`` octets of it are held, and a longer one (which the engine refuses) is left
out.  Sans-I/O: bytes in, bytes out.
"""

from __future__ import annotations

MASK = b"***"


class LineMask:
    """See the module docstring; a protocol's mask overrides ``_masked_line``."""

    def __init__(self, max_line: int = 65536) -> None:
        self.max_line = max_line
        self._line = bytearray()
        self._literal_left = 0
        self._literal_hidden = False
        self._sasl = False  # lines are SASL responses
        self._overlong = False  # the line being received is longer than max_line

    def authentication_done(self) -> None:
        """The server ended an authentication exchange: lines are commands again."""
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
        return (MASK if self._sasl else self._masked_line(line)) + b"\r\n"

    def _masked_line(self, line: bytes) -> bytes:
        """A command line as the log shows it; calls `_literal_follows` or `_sasl_follows`
        when the line announces either."""
        return line

    def _literal_follows(self, size: int, *, hidden: bool) -> None:
        """``size`` octets follow the line unframed; ``hidden``: left out of the log."""
        self._literal_left = size
        self._literal_hidden = hidden

    def _sasl_follows(self) -> None:
        """The lines after this one are SASL responses (until `authentication_done`)."""
        self._sasl = True
