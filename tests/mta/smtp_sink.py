"""A small asyncio SMTP sink for tests of the outbound agent (127.0.0.1, kernel-chosen port).

It speaks enough ESMTP to receive mail (EHLO/HELO, STARTTLS, MAIL, RCPT, DATA, RSET, NOOP,
QUIT), records every message it accepts, and can misbehave on request (see
:class:`Behaviour`).  Use it as ``async with SMTPSink(Behaviour(...)) as sink:``; ``sink.port``
is where it listens, ``sink.messages`` what it received, ``sink.connections`` how many
connections it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from posthouse.mta.dns import DomainNotFound

DEFAULT_EXTENSIONS = ("PIPELINING", "SIZE 10000000", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES")


@dataclass
class Behaviour:
    """What the sink does; the defaults accept everything."""

    greeting: str = "220 sink.test ESMTP ready"
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    ehlo_reply: str | None = None  # e.g. "502 5.5.1 no EHLO" to force HELO
    mail_reply: str = "250 2.1.0 sender ok"
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply line
    data_reply: str = "250 2.0.0 queued"
    hang_after_data: bool = False  # never answer the final dot
    garbage_after: str | None = None  # verb ("MAIL", "RCPT", "DATA", ".") answered with garbage
    close_mid_data: bool = False  # drop the connection after the first line of data
    tls_context: ssl.SSLContext | None = None  # offer STARTTLS with this server context
    hold_replies_until_data: bool = False  # only a pipelining client gets its replies
    close_after_messages: int | None = None  # drop each connection after this many messages


@dataclass
class Received:
    """One message the sink accepted (after its dot was answered 250)."""

    sender: str
    mail_params: tuple[str, ...]
    recipients: list[str]
    data: bytes
    tls: bool
    connection: int


class SMTPSink:
    """The sink server (see the module docstring)."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour if behaviour is not None else Behaviour()
        self.messages: list[Received] = []
        self.connections = 0
        self.commands: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self.data_started = asyncio.Event()  # set when a message's data begins to arrive

    async def __aenter__(self) -> SMTPSink:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        # Closing a writer ends its session (the reader sees EOF); wait for the handlers.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._session(reader, writer, self.connections)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        b = self.behaviour
        held: list[str] = []

        async def reply(line: str, *, hold: bool = False) -> None:
            if hold and b.hold_replies_until_data:
                held.append(line)
                return
            for pending in [*held, line]:
                writer.write(pending.encode() + b"\r\n")
            held.clear()
            await writer.drain()

        await reply(b.greeting)
        if not b.greeting.startswith("220"):
            return
        tls = False
        sender: str | None = None
        params: tuple[str, ...] = ()
        recipients: list[str] = []
        accepted = 0
        while True:
            raw = await reader.readline()
            if not raw:
                return
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            self.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            if b.garbage_after == verb:
                writer.write(b"this is not SMTP\r\n")
                await writer.drain()
                continue
            if verb == "EHLO":
                if b.ehlo_reply is not None:
                    await reply(b.ehlo_reply)
                    continue
                extensions = list(b.extensions)
                if b.tls_context is not None and not tls:
                    extensions.append("STARTTLS")
                lines = ["sink.test hello", *extensions]
                text = "\r\n".join(
                    f"250{'-' if i < len(lines) - 1 else ' '}{item}" for i, item in enumerate(lines)
                )
                await reply(text)
            elif verb == "HELO":
                await reply("250 sink.test")
            elif verb == "STARTTLS" and b.tls_context is not None and not tls:
                await reply("220 2.0.0 ready to start TLS")
                await writer.start_tls(b.tls_context)
                tls = True
                sender, recipients = None, []
            elif verb == "MAIL":
                address, _, rest = line[10:].partition(">")
                sender = address.lstrip("<")
                params = tuple(rest.split())
                recipients = []
                await reply(b.mail_reply, hold=True)
            elif verb == "RCPT":
                address = line[8:].strip().strip("<>")
                answer = b.rcpt_replies.get(address, "250 2.1.5 recipient ok")
                if sender is None:
                    answer = "503 5.5.1 need MAIL first"
                elif answer.startswith("2"):
                    recipients.append(address)
                await reply(answer, hold=True)
            elif verb == "DATA":
                if sender is None or not recipients:
                    await reply("554 5.5.1 no valid recipients")
                    continue
                await reply("354 end data with <CR><LF>.<CR><LF>")
                data = await self._read_data(reader)
                if data is None:
                    return  # close_mid_data
                if b.garbage_after == ".":
                    writer.write(b"garbage instead of a reply\r\n")
                    await writer.drain()
                    continue
                if b.hang_after_data:
                    await self._stop.wait()
                    return
                if b.data_reply.startswith("250"):
                    self.messages.append(Received(sender, params, recipients, data, tls, number))
                await reply(b.data_reply)
                sender, recipients = None, []
                accepted += 1
                if b.close_after_messages is not None and accepted >= b.close_after_messages:
                    return
            elif verb == "RSET":
                sender, recipients = None, []
                await reply("250 2.0.0 reset", hold=True)
            elif verb == "NOOP":
                await reply("250 2.0.0 ok")
            elif verb == "QUIT":
                await reply("221 2.0.0 bye")
                return
            else:
                await reply("500 5.5.2 command not recognised")

    async def _read_data(self, reader: asyncio.StreamReader) -> bytes | None:
        lines: list[bytes] = []
        self.data_started.set()
        while True:
            raw = await reader.readline()
            if not raw:
                raise ConnectionError("client went away during DATA")
            if raw == b".\r\n":
                return b"".join(lines)
            if self.behaviour.close_mid_data:
                return None
            lines.append(raw[1:] if raw.startswith(b".") else raw)


class FakeDNS:
    """A :class:`posthouse.mta.dns.DNSBackend` answering from dictionaries.

    ``mx[name]`` and ``a[name]``/``aaaa[name]`` are record lists, or an exception instance
    (``DomainNotFound()``, ``LookupFailed()``) to raise.  A name absent from every table does
    not exist (NXDOMAIN); a name present in one table has no records of the other types.
    """

    def __init__(
        self,
        *,
        mx: dict[str, list[tuple[int, str]] | Exception] | None = None,
        a: dict[str, list[str] | Exception] | None = None,
        aaaa: dict[str, list[str] | Exception] | None = None,
    ) -> None:
        self.mx_table = mx or {}
        self.a_table = a or {}
        self.aaaa_table = aaaa or {}
        self.queries: list[tuple[str, str]] = []

    def _exists(self, name: str) -> bool:
        return any(name in table for table in (self.mx_table, self.a_table, self.aaaa_table))

    async def mx(self, name: str) -> list[tuple[int, str]]:
        self.queries.append((name, "MX"))
        if not self._exists(name):
            raise DomainNotFound(name)
        entry = self.mx_table.get(name, [])
        if isinstance(entry, Exception):
            raise entry
        return list(entry)

    async def addresses(self, name: str, family: int) -> list[str]:
        self.queries.append((name, "A" if family == 4 else "AAAA"))
        if not self._exists(name):
            raise DomainNotFound(name)
        entry = (self.a_table if family == 4 else self.aaaa_table).get(name, [])
        if isinstance(entry, Exception):
            raise entry
        return list(entry)
