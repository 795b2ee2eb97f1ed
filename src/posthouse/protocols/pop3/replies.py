"""Typed POP3 responses: the `Reply` value object and its wire encoding.

Status indicators are ``+OK`` / ``-ERR`` (RFC 1939 §3).  A negative reply may
carry an extended response code in brackets (RFC 2449 §8, codes from
RFC 2449 §8.1 and RFC 3206).  Multi-line replies are terminated by a line
holding a single "." and their lines are dot-stuffed (RFC 1939 §3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# RFC 2449 §8: resp-code = "[" resp-level *("/" resp-level) "]"; rchar excludes "/" and "]".
_RESP_CODE: Final = re.compile(r"[\x21-\x2e\x30-\x5c\x5e-\x7e]+(/[\x21-\x2e\x30-\x5c\x5e-\x7e]+)*")

# Codes defined by RFC 2449 §8.1 and RFC 3206 §3-§4.
IN_USE: Final = "IN-USE"
LOGIN_DELAY: Final = "LOGIN-DELAY"
SYS_TEMP: Final = "SYS/TEMP"
SYS_PERM: Final = "SYS/PERM"
AUTH: Final = "AUTH"


def valid_code(code: str) -> bool:
    """True if ``code`` is a syntactically valid RFC 2449 §8 response code."""
    return _RESP_CODE.fullmatch(code) is not None


@dataclass(frozen=True)
class Reply:
    """One POP3 response: status, optional response code, text, optional body lines."""

    ok: bool
    text: str = ""
    code: str | None = None
    lines: tuple[str, ...] | None = None  # multi-line body (None: single-line reply)

    def __post_init__(self) -> None:
        if self.lines is not None and not isinstance(self.lines, tuple):
            object.__setattr__(self, "lines", tuple(self.lines))
        joined = "".join((self.text, *(self.lines or ())))
        if "\r" in joined or "\n" in joined:
            raise ValueError("reply text must not contain CR or LF")
        if self.code is not None and not valid_code(self.code):
            raise ValueError(f"invalid response code {self.code!r}")

    def to_bytes(self) -> bytes:
        """Wire form, e.g. ``b"-ERR [IN-USE] locked\\r\\n"``."""
        parts = ["+OK" if self.ok else "-ERR"]
        if self.code is not None:
            parts.append(f"[{self.code}]")
        if self.text:
            parts.append(self.text)
        head = " ".join(parts) + "\r\n"
        if self.lines is None:
            return head.encode("utf-8")
        # RFC 1939 §3: byte-stuff lines beginning with the termination octet.
        body = "".join(line + "\r\n" for line in self.lines)
        body = ("." if body.startswith(".") else "") + body.replace("\r\n.", "\r\n..")
        return (head + body + ".\r\n").encode("utf-8")


def ok(text: str = "", lines: tuple[str, ...] | None = None) -> Reply:
    """A positive reply (multi-line when ``lines`` is given)."""
    return Reply(True, text, None, lines)


def err(text: str, code: str | None = None) -> Reply:
    """A negative reply, optionally with a response code."""
    return Reply(False, text, code)
