"""The IMAP protocol's own error: a refusal that becomes a tagged BAD or NO response.

Parsers and evaluators raise `CommandError` for anything a client sent that cannot be
served; the reader and the engine turn it into the response it carries (RFC 3501 §7.1).
"""

from __future__ import annotations

from typing import Literal

from posthouse.protocols.errors import ProtocolError

Status = Literal["BAD", "NO"]


class CommandError(ProtocolError):
    """A command refused: ``status`` BAD (syntax) or NO (cannot be done), a response code
    (the bracketed text without brackets, e.g. ``"BADCHARSET (UTF-8 US-ASCII)"``) and a
    human sentence."""

    def __init__(self, text: str, *, status: Status = "BAD", code: str | None = None) -> None:
        # The sentence may quote what the client sent: no control character reaches the wire.
        text = "".join(c if c >= " " and c != "\x7f" else "?" for c in text)
        super().__init__(text)
        self.text = text
        self.status: Status = status
        self.code = code
