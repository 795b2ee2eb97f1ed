"""Engine configuration: the `SMTPSettings` value object (re-exported by engine.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from posthouse.protocols import sasl

Mode = Literal["smtp", "submission", "lmtp"]

# RFC 4954 §4: AUTH command and SASL response lines may be up to 12288 octets.
AUTH_LINE_LIMIT: Final = 12288


@dataclass(frozen=True)
class SMTPSettings:
    """Per-listener configuration of the engine."""

    hostname: str
    mode: Mode = "smtp"
    max_message_size: int = 50 * 1024 * 1024  # SIZE value; enforced while streaming
    max_recipients: int = 1000
    max_command_line: int = 2048  # including CRLF
    max_data_line: int = 100_000  # longest line inside DATA, including CRLF
    max_commands: int = 10_000  # per session; then 421 4.7.0 and close
    max_errors: int = 20  # per session; then 421 4.7.0 and close
    starttls_available: bool = False  # advertise/allow STARTTLS (only when not tls_active)
    tls_active: bool = False  # implicit TLS listener
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    auth_allowed_without_tls: bool = False  # else AUTH is refused with 538 5.7.11
    banner: str = "ESMTP posthouse"

    def __post_init__(self) -> None:
        if not self.hostname or any(c.isspace() for c in self.hostname):
            raise ValueError("hostname must be a non-empty word")
        if self.mode not in ("smtp", "submission", "lmtp"):
            raise ValueError(f"unknown mode {self.mode!r}")
        if "\r" in self.banner or "\n" in self.banner:
            raise ValueError("banner must be a single line")
        for name in ("max_message_size", "max_recipients", "max_commands", "max_errors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        # RFC 5321 §4.5.3.1.4: servers must accept command lines of 512 octets.
        if self.max_command_line < 512 or self.max_data_line < 16:
            raise ValueError("line limits are too small")
        for mech in self.auth_mechanisms:
            if mech not in sasl.SUPPORTED:
                raise ValueError(f"unsupported SASL mechanism {mech!r}")
