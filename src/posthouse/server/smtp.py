"""The SMTP, submission and LMTP session: the SMTP engine wired to a connection and the MTA.

The session owns no protocol logic and no I/O loop: the shared driver (session.py) reads,
feeds the sans-I/O engine and writes its replies, and hands each event to this module,
which answers the engine's decision events with the recipient policy, the authenticator
and the queue (direct delivery at intake: ``_deliver_directly``) and streams message data
into a queue file.  On the way, the address fields of the header section go through the
host's :class:`~posthouse.mta.rewrite.AddressRewriter` (qualified only for this host's
trusted and authenticated clients); LMTP, final delivery, takes the message as it is.

Faults of the machine never cost the client its connection: a full disk (``ENOSPC``,
``EDQUOT``) while the data is spooled discards what was written, reads the rest of the
data and answers ``452 4.3.1``; a user database that cannot be read answers ``451 4.3.0``
at RCPT and ``454 4.7.0`` at AUTH.  AUTH results are logged with the client's address in
Postfix's words (``warning: unknown[ADDR]: SASL PLAIN authentication failed: ...``), which
fail2ban's stock ``postfix[mode=auth]`` filter (the ``postfix-sasl`` jail) matches.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from posthouse.auth.authenticator import Authenticator
from posthouse.auth.credentials import CredentialChecker, LoginResult
from posthouse.mta.address_fields import HeaderSectionFilter
from posthouse.mta.direct import Delivered, DirectDelivery, Refused, Requeue
from posthouse.mta.errors import MailError
from posthouse.mta.hops import HopCounter
from posthouse.mta.logline import received_line
from posthouse.mta.policy import RecipientPolicy
from posthouse.mta.queue.scheduler import DeliveryScheduler
from posthouse.mta.queue.store import IncomingMessage, QueueStore
from posthouse.mta.rewrite import AddressRewriter
from posthouse.mta.stats import Statistics
from posthouse.protocols.engine_base import Ending
from posthouse.protocols.smtp import engine as smtp_engine
from posthouse.protocols.smtp import events, replies
from posthouse.protocols.smtp.replies import Reply
from posthouse.server.connection import Connection
from posthouse.server.session import SessionDriver, Unit

log = logging.getLogger("posthouse.smtp")

PASSED_BACK_TEXT = 400  # characters of a next hop's refusal given to our client (RFC 5321: 512)

# RFC 3463 class/subject to the basic reply code that goes with it (RFC 5321 §4.2.2).
_REPLY_CODES = {
    "5.1.1": 550,
    "5.1.3": 501,
    "5.7.1": 554,
    "5.3.4": 552,
    "4.2.2": 452,
    "5.2.2": 552,
}


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _storage_failure(exc: OSError) -> Reply:
    """The reply for a queue write that failed: RFC 3463 4.3.1 when the disk is full."""
    if exc.errno in _DISK_FULL:
        return Reply(452, "4.3.1", ("Insufficient system storage",))
    return Reply(451, "4.3.0", (f"Queue write failed: {exc.strerror}",))


def sasl_log_name(text: str) -> str:
    """A client-supplied name as it may appear in a log line: printable, no brackets, short."""
    cleaned = "".join(ch if ch.isprintable() and ch not in "[]" else "?" for ch in text[:64])
    return cleaned or "?"


def reply_for_error(error: MailError) -> Reply:
    """The SMTP reply that carries a protocol-neutral MTA error."""
    code = _REPLY_CODES.get(error.status, 451 if error.temporary else 550)
    return Reply(code, error.status, (error.message,))


@dataclass(frozen=True)
class SMTPServices:
    """What an SMTP-family session needs from the rest of the system."""

    hostname: str
    policy: RecipientPolicy
    queue: QueueStore
    authenticator: Authenticator
    scheduler: DeliveryScheduler
    tls_context: ssl.SSLContext | None
    allow_plaintext_auth: bool
    direct: DirectDelivery | None = None
    stats: Statistics | None = None
    max_hops: int = 50  # Received: fields a message may carry (RFC 5321 §6.3 loop detection)
    credentials: CredentialChecker | None = None  # logins; else the authenticator alone
    rewriter: AddressRewriter | None = None  # header address rewriting; None: none
    # RCPT-time check of a local IMAP-store user's quota (452 4.2.2); None: none
    full_mailbox: Callable[[str], Awaitable[MailError | None]] | None = None


class SMTPSession:
    """One SMTP/submission/LMTP conversation."""

    def __init__(
        self,
        connection: Connection,
        services: SMTPServices,
        settings: smtp_engine.SMTPSettings,
        stopping: asyncio.Event,
    ) -> None:
        self.connection = connection
        self.services = services
        self.stopping = stopping
        self.engine = smtp_engine.SMTPEngine(settings)
        self.driver = SessionDriver(connection, self.engine, stopping)
        self.sender: str | None = None
        self.mail_params: events.MailFrom | None = None
        self.recipients: list[str] = []
        self.incoming: IncomingMessage | None = None
        self.spool_error: OSError | None = None  # the data could not be written
        self.hops = HopCounter()
        self.header_filter: HeaderSectionFilter | None = None

    @property
    def in_transaction(self) -> bool:
        return self.sender is not None

    async def run(self) -> None:
        try:
            await self.driver.run(self)
        finally:
            self._discard_message()

    # -- the driver's SessionLogic --

    @property
    def busy(self) -> bool:
        """A mail transaction is open: a shutdown lets it finish."""
        return self.in_transaction

    def unit(self, event: events.Event) -> Unit:
        if isinstance(event, events.DataStart):
            return Unit.TRANSFER
        if isinstance(event, events.MessageData):
            return Unit.CONTINUES
        return Unit.DONE

    def ended(self, why: Ending) -> None:
        if why is Ending.DEADLINE:
            log.info(
                "timeout after %s from unknown[%s]",
                "DATA" if self.incoming is not None else "command",
                self.connection.peer.address,
            )

    async def handle(self, event: events.Event) -> None:
        match event:
            case events.MailFrom():
                self.sender = event.address
                self.mail_params = event
                self.recipients = []
                self.engine.respond(replies.mail_ok("Sender ok"))
            case events.RcptTo():
                self.engine.respond(await self._check_recipient(self._final(event.address)))
            case events.DataStart():
                self._start_message()
            case events.MessageData():
                if self.incoming is not None:
                    data = event.data
                    if self.header_filter is not None:
                        data = self.header_filter.feed(data)
                    try:
                        self.incoming.write(data)
                    except OSError as exc:
                        self._spool_failed(exc)
                        return
                    self.hops.feed(event.data)
            case events.MessageEnd():
                await self._end_message()
            case events.MessageAborted():
                self._discard_message()
            case events.AuthAttempt():
                await self._authenticate(event)
            case events.StartTLS():
                await self._start_tls()
            case events.Reset():
                self._reset()
            case events.Hello():
                self._reset()
            case events.Quit():
                pass

    def _spool_failed(self, exc: OSError) -> None:
        """Writing the data failed: drop what was written, read on, answer at the end."""
        incoming, self.incoming = self.incoming, None
        log.error(
            "%s: spooling the data from %s failed: %s",
            incoming.queue_id if incoming is not None else "-",
            self.connection.peer,
            exc,
        )
        self.spool_error = exc
        if incoming is not None:
            incoming.abort()

    def _final(self, address: str) -> str:
        """A recipient as the MTA handles it: in LMTP a bare local part (``<user>``,
        ``<user+folder>``, which the engine takes there) is a user of this host (RFC 2033
        §3: final delivery for the domains it serves), qualified with the host's name, one
        of its local domains; every other domain is judged as in SMTP."""
        if self.engine.settings.mode == "lmtp" and "@" not in address:
            return f"{address}@{self.services.hostname}"
        return address

    async def _check_recipient(self, address: str) -> Reply:
        try:
            self.services.policy.check_recipient(
                address,
                authenticated=self.engine.authenticated_as is not None,
                client_address=self.connection.peer.address,
            )
        except (sqlite3.Error, OSError) as exc:
            log.error("RCPT <%s> from %s: lookup failed: %s", address, self.connection.peer, exc)
            return Reply(451, "4.3.0", (f"<{address}>: Temporary lookup failure",))
        except MailError as error:
            if self.services.stats is not None:
                self.services.stats.record_rejected(self._mailer_name())
            return reply_for_error(error)
        if self.services.full_mailbox is not None:
            full = await self.services.full_mailbox(address)
            if full is not None:  # chapter 12.5.8: the sender retries until there is room
                log.info("RCPT <%s> from %s: deferred: %s", address, self.connection.peer, full)
                return reply_for_error(full)
        self.recipients.append(address)
        return replies.rcpt_ok("Recipient ok")

    def _start_message(self) -> None:
        assert self.sender is not None
        mail = self.mail_params
        self.spool_error = None
        self.incoming = self.services.queue.new_message(
            self.sender,
            self.recipients,
            client_address=self.connection.peer.address or None,
            helo=self.engine.helo_name,
            auth_user=self.engine.authenticated_as,
            body=mail.body if mail else None,
            smtputf8=mail.smtputf8 if mail else False,
            protocol=self._protocol_name(),
        )
        received = self._received_header()
        self.incoming.write(received)
        self.hops = HopCounter()
        self.hops.feed(received)
        rewriter = self.services.rewriter
        self.header_filter = None
        if rewriter is not None and self.engine.settings.mode != "lmtp":
            trusted = self.engine.authenticated_as is not None or self.services.policy.is_trusted(
                self.connection.peer.address
            )
            self.header_filter = HeaderSectionFilter(rewriter.header_rewrites(qualify=trusted))

    def _mailer_name(self) -> str:
        """The mailstats row for mail received here (sendmail: esmtp, smtp; plus lmtp)."""
        if self.engine.settings.mode == "lmtp":
            return "lmtp"
        return "esmtp" if self.engine.esmtp else "smtp"

    def _protocol_name(self) -> str:
        # RFC 3848: ESMTP, ESMTPS, ESMTPA, ESMTPSA; LMTP per RFC 2033 §7.
        if self.engine.settings.mode == "lmtp":
            base = "LMTP"
        else:
            base = "ESMTP" if self.engine.esmtp else "SMTP"
        if self.engine.tls_active:
            base += "S"
        if self.engine.authenticated_as is not None:
            base += "A"
        return base

    def _received_header(self) -> bytes:
        # RFC 5321 §4.4: the trace header, prepended by every relay.
        peer = self.connection.peer
        helo = self.engine.helo_name or "unknown"
        source = f"[{peer.address}]" if peer.address else "localhost"
        when = format_datetime(datetime.now().astimezone())
        recipient = f"\r\n\tfor <{self.recipients[0]}>" if len(self.recipients) == 1 else ""
        header = (
            f"Received: from {helo} ({source})\r\n"
            f"\tby {self.services.hostname} (posthouse) with {self._protocol_name()}"
            f"{recipient}; {when}\r\n"
        )
        return header.encode("utf-8", "surrogateescape")

    async def _end_message(self) -> None:
        incoming = self.incoming
        self.incoming = None
        if incoming is not None and self.header_filter is not None:
            try:
                incoming.write(self.header_filter.finish())
            except OSError as exc:
                self.incoming = incoming
                self._spool_failed(exc)
        if self.spool_error is not None:
            self._respond_all(_storage_failure(self.spool_error))
            self._reset()
            return
        assert incoming is not None
        log.info(
            "%s",
            received_line(
                incoming.queue_id,
                self.sender or "",
                incoming.size,
                len(self.recipients),
                self._protocol_name(),
                str(self.connection.peer),
            ),
        )
        if self.hops.hops > self.services.max_hops:
            self._refuse_loop(incoming, self.hops.hops)
            return
        if self.services.stats is not None:
            self.services.stats.record_received(self._mailer_name(), incoming.size)
        if self.engine.settings.mode != "lmtp":
            answer = await self._deliver_directly(incoming)
            if answer is not None:
                self.engine.respond(answer)
                self._reset()
                return
        try:
            queue_id = await incoming.commit()
        except OSError as exc:
            incoming.abort()
            log.error("%s: queue write failed: %s", incoming.queue_id, exc)
            self._respond_all(_storage_failure(exc))
            self._reset()
            return
        if self.engine.settings.mode == "lmtp":
            outcomes = await self.services.scheduler.deliver_now(queue_id)
            answers = []
            for address in self.recipients:
                error = outcomes.get(address)
                if error is None:
                    answers.append(Reply(250, "2.1.5", (f"<{address}> delivered",)))
                else:
                    answers.append(reply_for_error(error))
            self.engine.respond_per_recipient(answers)
        else:
            self.services.scheduler.submit(queue_id)
            self.engine.respond(replies.queued(queue_id))
        self._reset()

    def _refuse_loop(self, incoming: IncomingMessage, hops: int) -> None:
        incoming.abort()
        log.warning(
            "%s: from=<%s>: refused, %d Received: fields (mail loop?)",
            incoming.queue_id,
            self.sender,
            hops,
        )
        if self.services.stats is not None:
            self.services.stats.record_rejected(self._mailer_name())
        reason = f"Too many hops ({hops} Received: header fields): mail loop?"
        self._respond_all(Reply(554, "5.4.6", (reason,)))
        self._reset()

    async def _deliver_directly(self, incoming: IncomingMessage) -> Reply | None:
        """Try direct delivery; the reply when it settled the message, else None.

        Every destination took the message: ``250``.  Every destination refused it for good
        (next hops' ``5xx``): the first refusal, so that the client, not a bounce, tells the
        sender (no backscatter).  Otherwise None, and the message stays in ``incoming``,
        re-addressed to the destinations that do not have it, for the caller to queue.
        """
        direct = self.services.direct
        content = incoming.content_in_memory() if direct is not None else None
        if direct is None or content is None:
            return None
        retry_at = self.services.scheduler.delivery.retry.next_attempt(1, time.time())
        outcome = await direct.attempt(self.recipients, incoming.envelope, content, retry_at)
        match outcome:
            case Delivered():
                incoming.abort()
                return replies.queued(incoming.queue_id)
            case Refused(error=error):
                incoming.abort()
                return _passed_back(error)
            case Requeue(recipients=recipients):
                incoming.envelope.recipients = recipients
        return None

    def _respond_all(self, reply: Reply) -> None:
        if self.engine.settings.mode == "lmtp":
            self.engine.respond_per_recipient([reply] * len(self.recipients))
        else:
            self.engine.respond(reply)

    async def _authenticate(self, event: events.AuthAttempt) -> None:
        client = self.connection.peer.address
        if event.authzid and event.authzid != event.authcid:
            result = LoginResult(False, "proxy logins are not supported", "AUTH")
        elif self.services.credentials is not None:
            result = await self.services.credentials.check_password(
                event.authcid, event.password, protocol="smtp", client=client
            )
        else:
            ok = await self.services.authenticator.check_async(
                event.authcid, event.password, client=client
            )
            result = LoginResult(ok, "", None if ok else "AUTH", event.authcid if ok else None)
        where = f"unknown[{client}]" if client else "localhost[127.0.0.1]"
        mechanism = event.mechanism.upper()
        name = sasl_log_name(event.authcid)
        if result.ok:
            # Postfix: "client=unknown[ADDR], sasl_method=PLAIN, sasl_username=NAME"
            log.info("client=%s, sasl_method=%s, sasl_username=%s", where, mechanism, name)
            self.connection.record.update(user=result.user or event.authcid)
            self.connection.authenticated()
            self.engine.respond(replies.auth_ok())
        elif result.code == "SYS/TEMP":
            log.warning(
                "warning: %s: SASL %s authentication refused: %s, sasl_username=%s",
                where,
                mechanism,
                result.reason,
                name,
            )
            self.engine.respond(Reply(454, "4.7.0", ("Temporary authentication failure",)))
        else:
            # The words of Postfix's smtpd, which fail2ban's postfix-sasl jail matches.
            log.warning(
                "warning: %s: SASL %s authentication failed: authentication failure, "
                "sasl_username=%s",
                where,
                mechanism,
                name,
            )
            self.engine.respond(replies.auth_failed())

    async def _start_tls(self) -> None:
        context = self.services.tls_context
        if context is None:
            self.engine.respond(replies.starttls_unavailable())
            return
        self.engine.respond(replies.starttls_ready())
        await self.driver.start_tls(context)
        self._reset()

    def _reset(self) -> None:
        self._discard_message()
        self.sender = None
        self.mail_params = None
        self.recipients = []

    def _discard_message(self) -> None:
        self.spool_error = None
        if self.incoming is not None:
            self.incoming.abort()
            self.incoming = None


def _passed_back(error: MailError) -> Reply:
    """The reply that hands a next hop's refusal to our client: its code and text as the next
    hop gave them (so a chain of relays does not nest its explanations), bounded in length."""
    if error.remote is None or not 500 <= error.remote[0] <= 599:
        return reply_for_error(error)
    code, text = error.remote
    text = "".join(ch if ch.isprintable() else "?" for ch in text[:PASSED_BACK_TEXT])
    return Reply(code, error.status, (text or "refused by the next hop",))
