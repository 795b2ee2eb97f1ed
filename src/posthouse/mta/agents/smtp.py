"""The SMTP client delivery agent: mail leaves this host (RFC 5321, 3207, 2920, 1870, 6152, 6531).

:class:`SMTPDelivery` is the agent's
:class:`~posthouse.mta.agents.transaction.DeliveryAgent`: its recipients are
:class:`SMTPRecipient` (a next hop and the address as sent), and a transaction sends its
message once per next hop, for all of that hop's recipients, each of which gets the result
of its own ``RCPT`` (and, if accepted, of the final dot).  Everything below is the client
it drives.

:meth:`SMTPClientAgent.deliver` takes a :class:`~posthouse.mta.routing.NextHop` and the messages
for it and returns a result per recipient per message; it never raises (except on
cancellation, and :class:`DestinationBusy` for a caller that would not wait).  The connection
level (replies, commands, STARTTLS, the wire form of data) is
:mod:`posthouse.mta.agents.smtp_connection`.  One connection carries every message given:
``RSET`` separates transactions, ``QUIT`` ends the session (unless the connection is cached).

Sequence
    Resolve the hop (MX list, or the literal host) with :class:`~posthouse.mta.dns.Resolver`;
    try the hosts in order and each host's addresses in order.  A refused or timed-out
    connection, a greeting other than 220 (421 or 554 included) or a refused EHLO *and* HELO
    moves on to the next address/host.  After EHLO (HELO when EHLO is refused), ``STARTTLS``
    is used when offered (``tls="opportunistic"``), then EHLO is sent again (RFC 3207 §4.2).
    A ``STARTTLS`` refusal continues in plaintext on the same connection.  A failed TLS
    handshake breaks the connection; that address is then retried once *without* TLS, as
    Postfix does at its ``may`` level: opportunistic TLS (RFC 7435) protects against passive
    listeners only, and refusing to deliver would not protect the message any better.

Transactions
    ``MAIL FROM`` carries ``SIZE=`` (the queued size; RFC 1870 makes it an estimate) when the
    server offers SIZE, ``BODY=8BITMIME`` for an 8-bit body and ``SMTPUTF8`` when the message
    needs it.  A message larger than the advertised SIZE limit fails permanently (5.3.4)
    without being sent; an 8-bit body for a server without 8BITMIME fails with 5.6.3 and a
    message needing SMTPUTF8 (the flag, or a non-ASCII address) for a server without it with
    5.6.7 (RFC 6152 §3, RFC 6531 §3.2: no downgrade is implemented).  With PIPELINING (RFC
    2920) ``RSET``, ``MAIL``, every ``RCPT`` and ``DATA`` go out in one write; otherwise one
    command at a time, and ``DATA`` only when a recipient was accepted.  A 5xx reply to RCPT is
    permanent for that recipient, 4xx temporary (452 too: the recipients are retried later,
    not in a second transaction now).  A refused MAIL applies to all recipients of the message.
    After ``DATA``, each accepted recipient takes the reply to the final dot.  Enhanced status
    codes (RFC 3463) are taken from the reply text when present, else ``X.0.0`` by the reply
    class.

Data
    Streamed from ``open_data()`` in chunks (read in a worker thread), with line endings
    normalised to CRLF (bare CR or LF become CRLF, RFC 5321 §2.3.8), dot-stuffing (§4.5.2), a
    final CRLF added if missing, and flow control (``drain``), so a 50 MB message is never held
    in memory.  (This is why the agent speaks SMTP itself over asyncio streams instead of
    using aiosmtplib: aiosmtplib 5 needs the whole message as one ``bytes`` — copied twice more
    for line endings and dot-stuffing — and has no PIPELINING.)

Failures
    A timeout (``timeout`` seconds for each read, write, connect and TLS handshake), a reply
    that is not SMTP, 421, or a connection closed by the server ends the session.  A message
    whose final dot had not been sent yet is tried again at the next address/host (nothing
    was delivered); a message waiting for the reply to its final dot gets a temporary error
    (4.4.2; it *may* have been delivered, RFC 1047, and will be retried later, never reported
    sent without the 250).  Messages not reached stay for the next host.  When no host is left
    every message still pending gets the last connection error: temporary, unless every host
    answered with a permanent refusal (5xx greeting or HELO).

Limits
    At most ``max_connections_per_destination`` concurrent :meth:`deliver` calls (one
    connection each) per hop; further callers wait (an :class:`asyncio.Semaphore` per hop,
    dropped when unused), or, given ``wait``, give up after that many seconds with
    :class:`DestinationBusy` before anything was sent.

Connection cache
    Once :meth:`SMTPClientAgent.keep_connections` has named the server's event loop, a
    connection whose transactions all ended cleanly is kept open for ``idle_seconds`` instead
    of being closed with ``QUIT`` (at most ``max_connections_per_destination`` idle ones per
    hop), and the next :meth:`deliver` to that hop starts with ``RSET`` on it.  A cached
    connection that fails before a final dot was sent (the server closed it meanwhile) is
    dropped silently and the messages go on as if it had never been tried.  Hops whose last
    delivery found no host to talk to are remembered (:meth:`SMTPClientAgent.failing`), so
    callers that must answer quickly (cut-through relaying) can leave them to the queue.

TLS context
    Default: certificates are *not* verified (``CERT_NONE``, no host name check), as MTAs do
    for opportunistic TLS, where a verification failure would only cause a plaintext retry.
    A caller-supplied context (tests: one trusting a trustme CA) is used as given; if it
    verifies and verification fails, the handshake fails and the plaintext retry applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from posthouse.mta.address import is_rfc5321_local
from posthouse.mta.agents.smtp_connection import (
    ClientConnection,
    Connector,
    HopReply,
    SessionError,
    TLSFailed,
    open_tcp,
    quit_politely,
    reply_error,
    wire_form,
)
from posthouse.mta.agents.transaction import (
    MessageEnvelope,
    NotAttempted,
    RecipientResult,
    TransactionBase,
)
from posthouse.mta.dns import MailHost, Resolver
from posthouse.mta.errors import MailError
from posthouse.mta.routing import NextHop

log = logging.getLogger("posthouse.mta.smtp")

CHUNK_SIZE = 256 * 1024


@dataclass(frozen=True)
class OutboundMessage:
    """A queued message on its way to one next hop."""

    queue_id: str
    sender: str  # "" for the null reverse-path
    recipients: tuple[str, ...]
    open_data: Callable[[], BinaryIO]
    size: int
    body_8bit: bool = False
    smtputf8: bool = False
    content: bytes | None = None  # the whole message, when it is in memory (open_data unused)


class DestinationBusy(Exception):
    """Every connection to the hop stayed in use for longer than the caller would wait."""


def _address_ok(address: str) -> bool:
    """An RFC 5321 mailbox that can go into MAIL or RCPT as is: its local part a Dot-string
    or a Quoted-string (which may hold spaces and ``<>``), its domain plain; or the null
    path ``""``."""
    if not address:
        return True
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    return is_rfc5321_local(local) and not any(
        ch in '<>"\\' or ch.isspace() or ord(ch) < 32 for ch in domain
    )


def _needs_utf8(message: OutboundMessage) -> bool:
    return message.smtputf8 or not all(
        address.isascii() for address in (message.sender, *message.recipients)
    )


@dataclass
class _Pending:
    """A message still to be delivered, and what is known about its recipients."""

    message: OutboundMessage
    results: dict[str, MailError | None] = field(default_factory=dict)


@dataclass
class _IdleConnection:
    """A cached connection to a hop, closed when its timer runs out."""

    conn: ClientConnection
    host: str
    expiry: asyncio.TimerHandle | None = None


class SMTPClientAgent:
    """Delivers messages to a next hop over SMTP (see the module docstring)."""

    def __init__(
        self,
        *,
        hostname: str,
        resolver: Resolver,
        timeout: float = 60.0,
        tls: Literal["opportunistic", "none"] = "opportunistic",
        tls_context: ssl.SSLContext | None = None,
        max_connections_per_destination: int = 10,
        connector: Connector = open_tcp,
        idle_seconds: float = 5.0,
    ) -> None:
        if max_connections_per_destination < 1:
            raise ValueError("max_connections_per_destination must be at least 1")
        self.hostname = hostname
        self.resolver = resolver
        self.timeout = timeout
        self.tls = tls
        self.tls_context = tls_context if tls_context is not None else _opportunistic_context()
        self.max_connections = max_connections_per_destination
        self.connector = connector
        self.idle_seconds = idle_seconds
        self._limits: dict[tuple[str, int, bool], tuple[asyncio.Semaphore, int]] = {}
        self._idle: dict[tuple[str, int, bool], list[_IdleConnection]] = {}
        self._cache_loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._failed_at: dict[tuple[str, int, bool], float] = {}

    # -- public ------------------------------------------------------------------------

    def keep_connections(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Cache idle connections for deliveries that run on ``loop`` (the server's, or a
        command-line queue run's for its duration); None: cache none."""
        self._cache_loop = loop

    async def close_idle(self) -> None:
        """Say ``QUIT`` on every cached connection and close it (server shutdown)."""
        idle = [entry for entries in self._idle.values() for entry in entries]
        self._idle.clear()
        for entry in idle:
            if entry.expiry is not None:
                entry.expiry.cancel()
        await asyncio.gather(*(quit_politely(entry.conn) for entry in idle), *self._closing)

    def failing(self, hop: NextHop, within: float) -> bool:
        """Whether the last delivery to ``hop``, less than ``within`` seconds ago, found no
        host that would talk to it."""
        failed_at = self._failed_at.get(hop.key)
        return failed_at is not None and time.monotonic() - failed_at < within

    async def deliver(
        self,
        hop: NextHop,
        messages: Sequence[OutboundMessage],
        *,
        wait: float | None = None,
        timeout: float | None = None,
    ) -> dict[str, list[RecipientResult[str]]]:
        """Deliver ``messages`` to ``hop``; a result for every recipient, keyed by queue id.

        ``wait``: give up with :class:`DestinationBusy` if no connection slot for the hop is
        free within that many seconds.  ``timeout`` replaces the agent's for this call.
        """
        pending = [_Pending(message) for message in messages]
        try:
            async with self._limit(hop, wait):
                await self._deliver(hop, pending, self.timeout if timeout is None else timeout)
        except MailError as exc:
            self._fail_unresolved(pending, exc)
        except DestinationBusy:
            raise
        except Exception as exc:  # never let a bug lose the results
            log.exception("delivery to %s failed unexpectedly", hop.host)
            self._fail_unresolved(pending, MailError("4.3.0", f"internal error: {exc!r}"))
        out: dict[str, list[RecipientResult[str]]] = {}
        for item in pending:
            out[item.message.queue_id] = [
                RecipientResult(rcpt, item.results.get(rcpt))
                for rcpt in dict.fromkeys(item.message.recipients)
            ]
        return out

    # -- internals ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _limit(self, hop: NextHop, wait: float | None) -> AsyncIterator[None]:
        key = hop.key
        semaphore, users = self._limits.get(key, (asyncio.Semaphore(self.max_connections), 0))
        self._limits[key] = (semaphore, users + 1)
        try:
            try:
                async with asyncio.timeout(wait):
                    await semaphore.acquire()
            except TimeoutError:
                raise DestinationBusy(hop.host) from None
            try:
                yield
            finally:
                semaphore.release()
        finally:
            semaphore, users = self._limits[key]
            if users <= 1:
                del self._limits[key]
            else:
                self._limits[key] = (semaphore, users - 1)

    @staticmethod
    def _fail_unresolved(pending: list[_Pending], error: MailError) -> None:
        for item in pending:
            for rcpt in item.message.recipients:
                item.results.setdefault(rcpt, error)

    @staticmethod
    def _open(pending: list[_Pending]) -> list[_Pending]:
        return [
            item
            for item in pending
            if any(rcpt not in item.results for rcpt in item.message.recipients)
        ]

    async def _hosts(self, hop: NextHop) -> list[MailHost]:
        if hop.use_mx:
            return await self.resolver.mail_hosts(hop.host)
        return await self.resolver.host_addresses(hop.host)

    async def _deliver(self, hop: NextHop, pending: list[_Pending], timeout: float) -> None:
        self._precheck(pending)
        if not self._open(pending):
            return
        await self._reuse_idle(hop, pending, timeout)
        if not self._open(pending):
            return
        hosts = await self._hosts(hop)
        last: SessionError | None = None
        all_permanent = True  # every failed attempt was a 5xx refusal
        for host in hosts:
            for address in host.addresses:
                use_tls = self.tls == "opportunistic"
                while True:
                    try:
                        await self._session(
                            hop, host.host, address, pending, use_tls=use_tls, timeout=timeout
                        )
                    except TLSFailed as exc:
                        log.info("%s; retrying without TLS", exc.message)
                        last, all_permanent = exc, False
                        if use_tls:
                            use_tls = False
                            continue
                    except SessionError as exc:
                        log.info("%s", exc.message)
                        last = exc
                        all_permanent = all_permanent and exc.permanent_refusal
                    break
                if not self._open(pending):
                    self._failed_at.pop(hop.key, None)
                    return
        self._failed_at[hop.key] = time.monotonic()
        if last is None:
            last, all_permanent = SessionError("4.4.4", f"no host to try for {hop.host}"), False
        status = last.status
        if not all_permanent and status.startswith("5"):
            status = "4" + status[1:]
        elif all_permanent and status.startswith("4"):
            status = "5" + status[1:]
        self._fail_unresolved(pending, MailError(status, last.message))

    def _precheck(self, pending: list[_Pending]) -> None:
        for item in pending:
            message = item.message
            if not _address_ok(message.sender):
                error = MailError("5.1.7", f"bad sender address {message.sender!r}")
                for rcpt in message.recipients:
                    item.results[rcpt] = error
                continue
            for rcpt in message.recipients:
                if not rcpt or not _address_ok(rcpt):
                    item.results[rcpt] = MailError("5.1.3", f"bad recipient address {rcpt!r}")

    async def _session(
        self,
        hop: NextHop,
        host: str,
        address: str,
        pending: list[_Pending],
        *,
        use_tls: bool,
        timeout: float,
    ) -> None:
        peer = f"{host}[{address}]:{hop.port}"
        try:
            reader, writer = await self.connector(address, hop.port, timeout)
        except TimeoutError:
            raise SessionError("4.4.1", f"connection to {peer} timed out") from None
        except OSError as exc:
            raise SessionError("4.4.1", f"connection to {peer} failed: {exc}") from None
        conn = ClientConnection(reader, writer, peer=peer, timeout=timeout)
        kept = False
        try:
            await conn.greet(self.hostname)
            if use_tls and "STARTTLS" in conn.extensions:
                await conn.starttls(self.tls_context, host, self.hostname)
            await self._transactions(conn, pending, reset=False)
            kept = self._park(hop, host, conn)
            if not kept:
                with contextlib.suppress(SessionError):
                    await conn.command("QUIT")
        finally:
            if not kept:
                await conn.close()

    async def _transactions(
        self, conn: ClientConnection, pending: list[_Pending], *, reset: bool
    ) -> None:
        for item in self._open(pending):
            await self._transaction(conn, item, reset=reset)
            reset = True

    # -- the connection cache ----------------------------------------------------------

    async def _reuse_idle(self, hop: NextHop, pending: list[_Pending], timeout: float) -> None:
        """Run the open messages over cached connections to ``hop`` while any works."""
        idle = self._idle.get(hop.key)
        while idle and self._open(pending):
            entry = idle.pop()
            if entry.expiry is not None:
                entry.expiry.cancel()
            conn = entry.conn
            if conn.reader.at_eof() or conn.writer.is_closing():
                await conn.close()
                continue
            conn.timeout = timeout
            try:
                await self._transactions(conn, pending, reset=True)
            except SessionError as exc:
                log.debug("cached connection to %s failed: %s", conn.peer, exc.message)
                await conn.close()
                continue
            if not self._park(hop, entry.host, conn):
                await quit_politely(conn)
            return

    def _park(self, hop: NextHop, host: str, conn: ClientConnection) -> bool:
        """Keep ``conn`` for the next delivery to ``hop``; False if it is not wanted."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self.idle_seconds <= 0 or loop is not self._cache_loop:
            return False
        idle = self._idle.setdefault(hop.key, [])
        if len(idle) >= self.max_connections:
            return False
        entry = _IdleConnection(conn, host)
        entry.expiry = loop.call_later(self.idle_seconds, self._expire, hop.key, entry)
        idle.append(entry)
        return True

    def _expire(self, key: tuple[str, int, bool], entry: _IdleConnection) -> None:
        idle = self._idle.get(key, [])
        if entry in idle:
            idle.remove(entry)
        if not idle:
            self._idle.pop(key, None)
        task = asyncio.ensure_future(quit_politely(entry.conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _transaction(self, conn: ClientConnection, item: _Pending, *, reset: bool) -> None:
        message = item.message
        recipients = [r for r in dict.fromkeys(message.recipients) if r not in item.results]
        if not self._capable(conn, item):
            return
        if message.content is not None:
            await self._send(conn, item, recipients, message.content, reset=reset)
            return
        try:
            data = await asyncio.to_thread(message.open_data)
        except OSError as exc:
            error = MailError("4.3.0", f"cannot read queued message: {exc}")
            for rcpt in recipients:
                item.results[rcpt] = error
            return
        try:
            await self._send(conn, item, recipients, data, reset=reset)
        finally:
            data.close()

    def _capable(self, conn: ClientConnection, item: _Pending) -> bool:
        message = item.message
        error: MailError | None = None
        limit = conn.size_limit()
        if limit is not None and message.size > limit:
            error = MailError(
                "5.3.4", f"message size {message.size} exceeds {conn.peer}'s limit of {limit}"
            )
        elif message.body_8bit and "8BITMIME" not in conn.extensions:
            error = MailError("5.6.3", f"{conn.peer} does not support 8-bit MIME (8BITMIME)")
        elif _needs_utf8(message) and "SMTPUTF8" not in conn.extensions:
            error = MailError("5.6.7", f"{conn.peer} does not support SMTPUTF8")
        if error is None:
            return True
        for rcpt in message.recipients:
            item.results.setdefault(rcpt, error)
        return False

    def _mail_command(self, conn: ClientConnection, message: OutboundMessage) -> str:
        params: list[str] = []
        if "SIZE" in conn.extensions:
            params.append(f"SIZE={message.size}")
        if message.body_8bit:
            params.append("BODY=8BITMIME")
        if _needs_utf8(message):
            params.append("SMTPUTF8")
        return " ".join([f"MAIL FROM:<{message.sender}>", *params])

    async def _send(
        self,
        conn: ClientConnection,
        item: _Pending,
        recipients: list[str],
        data: BinaryIO | bytes,
        *,
        reset: bool,
    ) -> None:
        message = item.message
        mail = self._mail_command(conn, message)
        rcpt_lines = [f"RCPT TO:<{rcpt}>" for rcpt in recipients]
        accepted: list[str] = []
        refused: dict[str, MailError] = {}

        if "PIPELINING" in conn.extensions:
            lines = (["RSET"] if reset else []) + [mail, *rcpt_lines, "DATA"]
            await conn.write("".join(f"{line}\r\n" for line in lines).encode("utf-8"), "MAIL")
            verbs = ["RSET"] * reset + ["MAIL FROM"] + ["RCPT TO"] * len(recipients) + ["DATA"]
            replies = await conn.read_replies(verbs)
            # The reply to RSET, if any, does not matter: the new MAIL decides.
            mail_reply, data_reply = replies[int(reset)], replies[-1]
            for rcpt, reply in zip(recipients, replies[int(reset) + 1 : -1], strict=True):
                if reply.code in (250, 251):
                    accepted.append(rcpt)
                else:
                    refused[rcpt] = reply_error(reply, conn.peer, "RCPT TO")
            if mail_reply.code != 250:
                if data_reply.code == 354:
                    await self._abort_data(conn)
                self._refuse_all(item, recipients, reply_error(mail_reply, conn.peer, "MAIL FROM"))
                return
            if data_reply.code == 354 and not accepted:
                await self._abort_data(conn)  # RFC 2920 §3.1: send the dot, ignore the result
        else:
            if reset:
                await conn.command("RSET")
            mail_reply = await conn.command(mail)
            if mail_reply.code != 250:
                self._refuse_all(item, recipients, reply_error(mail_reply, conn.peer, "MAIL FROM"))
                return
            for rcpt, line in zip(recipients, rcpt_lines, strict=True):
                reply = await conn.command(line)
                if reply.code in (250, 251):
                    accepted.append(rcpt)
                else:
                    refused[rcpt] = reply_error(reply, conn.peer, "RCPT TO")
            data_reply = HopReply(0, ())
            if accepted:
                data_reply = await conn.command("DATA")

        item.results.update(refused)
        if not accepted:
            return
        if data_reply.code != 354:
            error = reply_error(data_reply, conn.peer, "DATA")
            if data_reply.code < 400:
                error = MailError("4.5.0", f"host {conn.peer} said: {data_reply} (to DATA)")
            self._refuse_all(item, accepted, error)
            return
        await self._stream(conn, item, data)
        try:
            final = await conn.read_reply("end of data")
        except SessionError as exc:
            # The dot went out: the message may or may not have been taken (RFC 1047).
            error = MailError("4.4.2", f"{exc.message}; delivery status unknown")
            self._refuse_all(item, accepted, error)
            raise
        if final.code == 250:
            for rcpt in accepted:
                item.results[rcpt] = None
            log.info(
                "%s: to=%s relay=%s tls=%s status=sent (%s)",
                message.queue_id,
                ",".join(accepted),
                conn.peer,
                conn.tls,
                final,
            )
        else:
            self._refuse_all(item, accepted, reply_error(final, conn.peer, "end of data"))

    @staticmethod
    def _refuse_all(item: _Pending, recipients: Sequence[str], error: MailError) -> None:
        for rcpt in recipients:
            item.results[rcpt] = error

    @staticmethod
    async def _abort_data(conn: ClientConnection) -> None:
        await conn.write(b".\r\n", "end of data")
        await conn.read_reply("end of data")

    async def _stream(self, conn: ClientConnection, item: _Pending, data: BinaryIO | bytes) -> None:
        if isinstance(data, bytes):
            block, at_line_start = wire_form(data, True)
            tail = b"" if at_line_start else b"\r\n"
            await conn.write(block + tail + b".\r\n", "message data")
            return
        at_line_start = True
        carry = b""
        while True:
            try:
                chunk = await asyncio.to_thread(data.read, CHUNK_SIZE)
            except OSError as exc:
                # Cannot finish the data cleanly: drop the connection rather than send a dot.
                error = MailError("4.3.0", f"cannot read queued message: {exc}")
                for rcpt in item.message.recipients:
                    item.results.setdefault(rcpt, error)
                raise SessionError("4.3.0", error.message) from None
            final = not chunk
            block = carry + chunk
            carry = b""
            if not final and block.endswith(b"\r"):
                carry, block = b"\r", block[:-1]
            if block:
                block, at_line_start = wire_form(block, at_line_start)
            if final:
                tail = b"" if at_line_start else b"\r\n"
                await conn.write(block + tail + b".\r\n", "end of data")
                return
            if block:
                await conn.write(block, "message data")


@dataclass(frozen=True)
class SMTPRecipient:
    """The SMTP agent's recipient: ``address`` (as sent in ``RCPT TO``) at next hop ``hop``."""

    hop: NextHop
    address: str


class SMTPDelivery:
    """The SMTP :class:`~posthouse.mta.agents.transaction.DeliveryAgent` over ``client``.

    ``outbound_sender``: the envelope sender as it leaves (masquerading, Internet form).
    ``wait``, ``timeout``: as :meth:`SMTPClientAgent.deliver`'s; a hop whose connections stay
    busy longer than ``wait`` gets :class:`NotAttempted` results, as does, with
    ``failing_window``, a hop that found no host to talk to less than that many seconds ago.
    """

    def __init__(
        self,
        client: SMTPClientAgent,
        *,
        outbound_sender: Callable[[str], str] = lambda sender: sender,
        wait: float | None = None,
        timeout: float | None = None,
        failing_window: float | None = None,
    ) -> None:
        self.client = client
        self.outbound_sender = outbound_sender
        self.wait = wait
        self.timeout = timeout
        self.failing_window = failing_window

    def start(self, envelope: MessageEnvelope) -> SMTPTransaction:
        return SMTPTransaction(envelope, agent=self)


class SMTPTransaction(TransactionBase[SMTPRecipient]):
    """One message, sent once to each next hop of its recipients (concurrently)."""

    def __init__(self, envelope: MessageEnvelope, *, agent: SMTPDelivery) -> None:
        super().__init__(envelope)
        self._agent = agent

    async def commit(self) -> list[RecipientResult[SMTPRecipient]]:
        body = self._begin_commit()
        by_hop: dict[NextHop, list[SMTPRecipient]] = {}
        for recipient in self.recipients:
            by_hop.setdefault(recipient.hop, []).append(recipient)
        sends = [self._send(hop, rcpts, body.open, body.content) for hop, rcpts in by_hop.items()]
        # One hop (the common case) is awaited in place: no task in between.
        parts = [await sends[0]] if len(sends) == 1 else await asyncio.gather(*sends)
        outcome = {(r.recipient.hop, r.recipient.address): r for part in parts for r in part}
        return [outcome[(r.hop, r.address)] for r in self.recipients]

    async def _send(
        self,
        hop: NextHop,
        recipients: list[SMTPRecipient],
        open_data: Callable[[], BinaryIO],
        content: bytes | None,
    ) -> list[RecipientResult[SMTPRecipient]]:
        agent = self._agent
        if agent.failing_window is not None and agent.client.failing(hop, agent.failing_window):
            skipped = NotAttempted(f"{hop.host} failed recently; left to the queue")
            return [RecipientResult(r, skipped) for r in recipients]
        envelope = self.envelope
        message = OutboundMessage(
            queue_id=envelope.queue_id,
            sender=agent.outbound_sender(envelope.sender),
            recipients=tuple(r.address for r in recipients),
            open_data=open_data,
            size=envelope.size,
            body_8bit=envelope.body_8bit,
            smtputf8=envelope.smtputf8,
            content=content,
        )
        try:
            results = await agent.client.deliver(
                hop, [message], wait=agent.wait, timeout=agent.timeout
            )
        except DestinationBusy:
            busy = NotAttempted(f"every connection to {hop.host} is busy; left to the queue")
            return [RecipientResult(r, busy) for r in recipients]
        errors = {result.recipient: result.error for result in results.get(envelope.queue_id, [])}
        no_result = MailError("4.3.0", "no result from the SMTP agent")
        return [RecipientResult(r, errors.get(r.address, no_result)) for r in recipients]


def _opportunistic_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
