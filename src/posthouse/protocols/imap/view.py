"""The message view SEARCH, SORT and THREAD evaluate against (implemented by the store/engine).

Only what RFC 3501 §6.4.4, RFC 5256 and RFC 7162 need is asked for, so an
implementation can compute each piece lazily (flags and sizes from the index, header
and body text from the message file only when a key needs them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol


class MessageView(Protocol):
    """One message as the searching session sees it."""

    @property
    def uid(self) -> int: ...

    @property
    def seq(self) -> int:
        """The message sequence number in the session's view of the mailbox."""
        ...

    @property
    def flags(self) -> frozenset[str]:
        """System flags (``\\Seen`` ...) and keywords, with ``\\Recent`` when the
        message is recent in this session."""
        ...

    @property
    def internal_date(self) -> dt.datetime:
        """RFC 3501 §2.3.3 internal date, timezone-aware."""
        ...

    @property
    def size(self) -> int:
        """RFC822.SIZE: octets of the message with CRLF line ends."""
        ...

    @property
    def modseq(self) -> int:
        """RFC 7162 §3.1.1 mod-sequence (0 where CONDSTORE is not kept)."""
        ...

    def header_values(self, name: str) -> Sequence[str]:
        """Every value of the header field ``name`` (case-insensitive), unfolded and
        RFC 2047/charset-decoded (``text.decoded_header_values`` does it from bytes)."""
        ...

    def header_text(self) -> str:
        """The whole header, decoded as `header_values` decodes each value."""
        ...

    def body_text(self) -> str:
        """The body's text: every text part transfer- and charset-decoded
        (``text.decoded_body_text`` does it from bytes)."""
        ...
