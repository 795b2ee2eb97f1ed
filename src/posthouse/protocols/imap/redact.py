"""IMAP client input with its secrets masked, for the telemetry log (chapter 12.5.5).

`SecretMask` (a :class:`~posthouse.protocols.redact.LineMask`) follows what a client sends
just far enough to know where a password can be: it frames lines and the literals they
announce (RFC 3501 §4.3, ``{n}`` and the RFC 7888 ``{n+}``/``{n-}`` forms) and rewrites

* a LOGIN command (RFC 3501 §6.2.3) as ``TAG LOGIN ***``, its literals left out;
* an AUTHENTICATE command (§6.2.2) as ``TAG AUTHENTICATE MECHANISM ***`` when it carries
  an RFC 4959 initial response, and every line after it as ``***`` until the server says
  the exchange is over (`authentication_done`): those lines are SASL responses;

everything else passes unchanged, literal octets included.
"""

from __future__ import annotations

import re

from posthouse.protocols.redact import MASK, LineMask

__all__ = ["MASK", "SecretMask"]

_LITERAL = re.compile(rb"\{(\d{1,20})[+-]?\}\Z")
_SECRET_COMMANDS = (b"LOGIN", b"AUTHENTICATE")


class SecretMask(LineMask):
    """See the module docstring."""

    def __init__(self, max_line: int = 65536) -> None:
        super().__init__(max_line)
        self._command = b""  # LOGIN or AUTHENTICATE while one continues after a literal

    def _masked_line(self, line: bytes) -> bytes:
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
            self._literal_follows(int(literal.group(1)), hidden=bool(self._command))
        elif self._command:
            if self._command == b"AUTHENTICATE":
                self._sasl_follows()
            self._command = b""
        return shown
