"""One SMTP client connection: replies, commands, STARTTLS, and the wire form of data.

This module owns the connection level of the SMTP client agent
(:mod:`posthouse.mta.agents.smtp`, which owns sessions, transactions, the connection cache
and results): reading a (multi-line) reply within the timeout and rejecting what is not SMTP
(RFC 5321 §4.2), sending commands, the greeting and ``EHLO``/``HELO`` with the extensions
learnt, ``STARTTLS`` (RFC 3207, ``EHLO`` again afterwards), and :func:`wire_form`: CRLF
line ends and dot-stuffing (§2.3.8, §4.5.2).  Any failure that ends the session is a
:class:`SessionError` carrying an RFC 3463 status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from posthouse.mta.errors import MailError

__all__ = [
    "ClientConnection",
    "Connector",
    "HopReply",
    "SessionError",
    "TLSFailed",
    "open_tcp",
    "quit_politely",
    "reply_error",
    "wire_form",
]

log = logging.getLogger("posthouse.mta.smtp")

MAX_REPLY_LINE = 4096  # RFC 5321 §4.5.3.1.5 says 512; be liberal in what we accept
MAX_REPLY_LINES = 200
READ_LIMIT = 64 * 1024
WRITE_HIGH_WATER = 256 * 1024  # buffered bytes above which write() waits for the peer

Connector = Callable[
    [str, int, float], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
]


async def open_tcp(
    address: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The default connector: a TCP connection to ``address:port`` within ``timeout``."""
    async with asyncio.timeout(timeout):
        return await asyncio.open_connection(address, port, limit=READ_LIMIT)


@dataclass(frozen=True)
class HopReply:
    """A reply the next hop sent us (not one of our own server's replies)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


class SessionError(Exception):
    """The session cannot continue (timeout, disconnect, garbage, 421)."""

    def __init__(self, status: str, message: str, *, permanent_refusal: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.permanent_refusal = permanent_refusal


class TLSFailed(SessionError):
    """The STARTTLS handshake failed: retry the address without TLS."""


_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")
_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")


def reply_error(reply: HopReply, peer: str, command: str) -> MailError:
    """A MailError carrying the server's reply, for a 4xx/5xx reply."""
    klass = "5" if reply.code >= 500 else "4"
    text = reply.text
    status = f"{klass}.0.0"
    said = text
    match = _ENHANCED.match(text)
    if match:
        status = f"{klass}.{match.group(2)}.{match.group(3)}"
        said = text[match.end() :].strip()
    return MailError(
        status,
        f"host {peer} said: {reply.code} {text} (in reply to {command})",
        remote=(reply.code, said),
    )


class ClientConnection:
    """One SMTP client connection over asyncio streams."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer: str,
        timeout: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.timeout = timeout
        self.extensions: dict[str, str] = {}
        self.tls = False
        self.closed = False

    # -- low level ---------------------------------------------------------------------

    async def read_reply(self, command: str) -> HopReply:
        """The reply to ``command``, within the timeout."""
        (reply,) = await self.read_replies([command])
        return reply

    async def read_replies(self, commands: Sequence[str]) -> list[HopReply]:
        """The replies to pipelined ``commands``, in order, all within one timeout (RFC 2920
        §3.1: the server may answer them together)."""
        command = commands[0] if commands else ""
        replies = []
        try:
            async with asyncio.timeout(self.timeout):
                for command in commands:
                    replies.append(await self._read_one(command))
        except TimeoutError:
            raise SessionError(
                "4.4.2", f"timeout waiting for reply to {command} from {self.peer}"
            ) from None
        except (ValueError, asyncio.LimitOverrunError):
            raise SessionError("4.5.0", f"{self.peer}: reply to {command} too long") from None
        except OSError:
            raise SessionError(
                "4.4.2", f"connection to {self.peer} lost (waiting for reply to {command})"
            ) from None
        return replies

    async def _read_one(self, command: str) -> HopReply:
        lines: list[str] = []
        code: int | None = None
        while True:
            raw = await self.reader.readline()
            if not raw.endswith(b"\n"):
                raise SessionError(
                    "4.4.2", f"connection to {self.peer} lost (waiting for reply to {command})"
                )
            if len(raw) > MAX_REPLY_LINE or len(lines) >= MAX_REPLY_LINES:
                raise SessionError("4.5.0", f"{self.peer}: reply to {command} too long")
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if (
                len(line) < 3
                or not line[:3].isdigit()
                or line[0] not in "12345"
                or line[3:4] not in ("", " ", "-")
                or (code is not None and int(line[:3]) != code)
            ):
                raise SessionError(
                    "4.5.0", f"{self.peer}: malformed reply to {command}: {line[:80]!r}"
                )
            code = int(line[:3])
            lines.append(line[4:])
            if line[3:4] != "-":
                break
        reply = HopReply(code, tuple(lines))
        if code == 421:
            raise SessionError("4.4.2", f"host {self.peer} said: {reply} (closing connection)")
        return reply

    async def write(self, data: bytes, what: str) -> None:
        try:
            self.writer.write(data)
            transport = self.writer.transport
            # Wait only when the kernel is not keeping up (or the connection is going away).
            if transport.get_write_buffer_size() > WRITE_HIGH_WATER or transport.is_closing():
                async with asyncio.timeout(self.timeout):
                    await self.writer.drain()
        except TimeoutError:
            raise SessionError("4.4.2", f"timeout sending {what} to {self.peer}") from None
        except (OSError, RuntimeError) as exc:
            raise SessionError(
                "4.4.2", f"connection to {self.peer} lost (sending {what}): {exc}"
            ) from None

    async def command(self, line: str) -> HopReply:
        verb = line.split(" ", 1)[0]
        await self.write(line.encode("utf-8") + b"\r\n", verb)
        return await self.read_reply(verb)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await self.writer.wait_closed()

    # -- session -----------------------------------------------------------------------

    async def greet(self, hostname: str) -> None:
        greeting = await self.read_reply("connect")
        if greeting.code != 220:
            status = reply_error(greeting, self.peer, "connect").status
            raise SessionError(
                status if greeting.code >= 400 else "4.5.0",
                f"host {self.peer} refused to talk to me: {greeting}",
                permanent_refusal=greeting.code >= 500,
            )
        await self.hello(hostname)

    async def hello(self, hostname: str) -> None:
        reply = await self.command(f"EHLO {hostname}")
        if reply.code == 250:
            self.extensions = {}
            for line in reply.lines[1:]:
                keyword, _, params = line.partition(" ")
                self.extensions[keyword.upper()] = params.strip()
            return
        helo = await self.command(f"HELO {hostname}")
        if helo.code != 250:
            raise SessionError(
                "5.5.0" if helo.code >= 500 else "4.5.0",
                f"host {self.peer} refused HELO: {helo}",
                permanent_refusal=helo.code >= 500,
            )
        self.extensions = {}

    async def starttls(self, context: ssl.SSLContext, server_hostname: str, hostname: str) -> None:
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            log.info("%s: STARTTLS refused (%s), continuing without TLS", self.peer, reply)
            return
        try:
            await self.writer.start_tls(
                context, server_hostname=server_hostname, ssl_handshake_timeout=self.timeout
            )
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            raise TLSFailed("4.7.0", f"TLS handshake with {self.peer} failed: {exc}") from None
        self.tls = True
        await self.hello(hostname)  # RFC 3207 §4.2: forget what was learnt before TLS

    def size_limit(self) -> int | None:
        value = self.extensions.get("SIZE", "")
        if "SIZE" not in self.extensions:
            return None
        return int(value) if value.isdigit() and int(value) > 0 else None


def wire_form(block: bytes, at_line_start: bool) -> tuple[bytes, bool]:
    """``block`` with CRLF line ends and dot-stuffing; and whether it ends a line."""
    crlf = block.count(b"\r\n")
    if block.count(b"\r") != crlf or block.count(b"\n") != crlf:  # a bare CR or LF
        block = _LINE_ENDINGS.sub(b"\r\n", block)
    if at_line_start and block.startswith(b"."):
        block = b"." + block
    block = block.replace(b"\r\n.", b"\r\n..")
    return block, block.endswith(b"\r\n")


async def quit_politely(conn: ClientConnection) -> None:
    """End a session politely, whatever state the connection is in."""
    with contextlib.suppress(SessionError):
        await conn.command("QUIT")
    await conn.close()
