"""Engine configuration: the `POP3Settings` value object (re-exported by engine.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# RFC 5034 §4: SASL exchanges must not be limited by the command line length;
# AUTH command and continuation lines may be up to this many octets.
SASL_LINE_LIMIT: Final = 12288

# RFC 1939 §4: the APOP timestamp is a msg-id, e.g. <1896.697170952@host>.
_TIMESTAMP: Final = re.compile(r"<[\x21-\x3d\x3f-\x7e]+@[\x21-\x3d\x3f-\x7e]+>")
# RFC 2449 §6.7: EXPIRE policy = "NEVER" or days, optionally followed by "USER".
_EXPIRE: Final = re.compile(r"(NEVER|[0-9]{1,9})( USER)?")


@dataclass(frozen=True)
class POP3Settings:
    """Per-listener configuration of the engine."""

    hostname: str
    apop_timestamp: str | None = None  # "<pid.clock@hostname>" from the I/O layer; None = no APOP
    stls_available: bool = False  # offer STLS (only while not tls_active)
    tls_active: bool = False  # implicit TLS listener (pop3s)
    # USER/PASS and AUTH PLAIN without TLS (loopback or explicit configuration);
    # otherwise refused with -ERR [AUTH] and not advertised (RFC 2595 §2.3).
    plaintext_login_allowed: bool = False
    max_line: int = 512  # command line incl. CRLF (RFC 2449 §4 allows 255-octet arguments)
    max_commands: int = 100_000  # per session; then -ERR and close
    max_errors: int = 20  # -ERR replies per session; then -ERR too many errors and close
    implementation: str = "posthouse"  # RFC 2449 §6.9
    expire: str | None = None  # RFC 2449 §6.7, e.g. "NEVER", "30", "30 USER"
    login_delay: int | None = None  # RFC 2449 §6.5, seconds

    def __post_init__(self) -> None:
        if not self.hostname or not _printable_word(self.hostname):
            raise ValueError("hostname must be a non-empty word")
        if self.apop_timestamp is not None and not _TIMESTAMP.fullmatch(self.apop_timestamp):
            raise ValueError("apop_timestamp must look like <unique@hostname>")
        # RFC 2449 §4: servers must accept arguments of 255 octets.
        if self.max_line < 262:
            raise ValueError("max_line is too small")
        for name in ("max_commands", "max_errors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if not self.implementation or any(c in self.implementation for c in "\r\n\x00"):
            raise ValueError("implementation must be a non-empty single line")
        if self.expire is not None and not _EXPIRE.fullmatch(self.expire):
            raise ValueError(f"invalid EXPIRE policy {self.expire!r}")
        if self.login_delay is not None and not 0 <= self.login_delay <= 999_999_999:
            raise ValueError("login_delay must be a non-negative number of seconds")


def _printable_word(text: str) -> bool:
    return text.isascii() and all(0x21 <= ord(c) <= 0x7E for c in text)
