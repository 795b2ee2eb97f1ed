"""SASL PLAIN and LOGIN decoding shared by the SMTP and POP3 engines (RFC 4616, RFC 4954).

Mechanisms only decode: they turn client responses into challenges, a failure,
or `Credentials`; verifying the password is the application's job.
Base64 handling follows RFC 4954 §4.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Final

SUPPORTED: Final = ("PLAIN", "LOGIN")


@dataclass(frozen=True)
class Challenge:
    """Send ``334 <text>`` and wait for the next client line."""

    text: str


@dataclass(frozen=True)
class Failure:
    """The exchange failed on malformed client input (501 5.5.2)."""

    reason: str


@dataclass(frozen=True)
class Credentials:
    """The exchange completed; the application must verify these."""

    authzid: str
    authcid: str
    password: str = field(repr=False)


Step = Challenge | Failure | Credentials


def decode_base64(text: str) -> bytes | None:
    """Strict base64 decoding (no whitespace or junk); None when invalid."""
    if not text.isascii():
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Mechanism:
    """One server-side SASL exchange."""

    name: str = ""

    def start(self, initial: str | None) -> Step:
        """Begin; ``initial`` is the initial response ('' for "=") or None."""
        raise NotImplementedError

    def step(self, line: str) -> Step:
        """Handle the client's base64 line after a `Challenge`."""
        raise NotImplementedError


class Plain(Mechanism):
    """RFC 4616 §2: message = [authzid] NUL authcid NUL passwd."""

    name = "PLAIN"

    def start(self, initial: str | None) -> Step:
        if initial is None:
            # RFC 4954 §4: an empty challenge asks for the initial response.
            return Challenge("")
        return self.step(initial)

    def step(self, line: str) -> Step:
        raw = decode_base64(line)
        if raw is None:
            return Failure("Invalid base64 data")
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            return Failure("Malformed PLAIN response")
        authzid, authcid, password = (_utf8(part) for part in parts)
        if authzid is None or authcid is None or password is None:
            return Failure("PLAIN response is not UTF-8")
        if not authcid or not password:
            return Failure("Empty PLAIN user name or password")
        return Credentials(authzid, authcid, password)


class Login(Mechanism):
    """The de-facto LOGIN mechanism (draft-murchison-sasl-login)."""

    name = "LOGIN"
    _USER_PROMPT: Final = base64.b64encode(b"Username:").decode("ascii")
    _PASS_PROMPT: Final = base64.b64encode(b"Password:").decode("ascii")

    def __init__(self) -> None:
        self._user: str | None = None

    def start(self, initial: str | None) -> Step:
        if initial is None:
            return Challenge(self._USER_PROMPT)
        return self.step(initial)

    def step(self, line: str) -> Step:
        raw = decode_base64(line)
        if raw is None:
            return Failure("Invalid base64 data")
        text = _utf8(raw)
        if text is None or "\x00" in text:
            return Failure("LOGIN response is not valid UTF-8 text")
        if self._user is None:
            if not text:
                return Failure("Empty LOGIN user name")
            self._user = text
            return Challenge(self._PASS_PROMPT)
        return Credentials("", self._user, text)


def create(name: str) -> Mechanism | None:
    """A fresh exchange for mechanism ``name`` (upper-case); None if unknown."""
    match name:
        case "PLAIN":
            return Plain()
        case "LOGIN":
            return Login()
    return None
