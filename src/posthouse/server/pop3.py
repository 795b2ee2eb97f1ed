"""The POP3 session: the POP3 engine wired to a connection, the credential checks and a maildrop.

Like the SMTP session it holds no protocol logic and no I/O loop (the shared driver in
session.py reads, feeds the engine and writes): it answers the engine's
decision events (logins through the service-type rules of
``CredentialChecker``, STLS, message retrieval streamed from the maildrop,
deletions at QUIT).  A user with a telemetry folder has the session recorded, as over IMAP
(:mod:`posthouse.server.telemetry`).  The maildrop is opened
(and its session lock taken) only after a successful login and is always
closed when the session ends; a session that ends without QUIT deletes
nothing (RFC 1939 §6).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from posthouse.auth.credentials import CredentialChecker, LoginResult
from posthouse.protocols.engine_base import Ending
from posthouse.protocols.pop3 import engine as pop3_engine
from posthouse.protocols.pop3 import events
from posthouse.protocols.pop3.redact import SecretMask
from posthouse.server.connection import Connection
from posthouse.server.session import SessionDriver, Unit
from posthouse.server.telemetry import TelemetryDirectory
from posthouse.store.maildrop import Maildrop, MaildropBusy, MaildropError

log = logging.getLogger("posthouse.pop3")

_timestamps = itertools.count(1)


def apop_timestamp(hostname: str) -> str:
    """A unique msg-id style banner timestamp (RFC 1939 §7)."""
    return f"<{os.getpid()}.{next(_timestamps)}.{int(time.time())}@{hostname}>"


@dataclass(frozen=True)
class POP3Services:
    """What a POP3 session needs from the rest of the system."""

    hostname: str
    credentials: CredentialChecker
    open_maildrop: Callable[[str], Maildrop]  # blocking: run in a thread
    tls_context: ssl.SSLContext | None
    local_domains: Callable[[str], bool]
    telemetry: TelemetryDirectory | None = None  # the IMAP configuration directory's log/


class POP3Session:
    """One POP3 conversation."""

    def __init__(
        self,
        connection: Connection,
        services: POP3Services,
        settings: pop3_engine.POP3Settings,
        stopping: asyncio.Event,
    ) -> None:
        self.connection = connection
        self.services = services
        self.settings = settings
        self.stopping = stopping
        self.engine = pop3_engine.POP3Engine(settings)
        telemetry = services.telemetry
        self.telemetry = telemetry.session_log("pop3", SecretMask) if telemetry else None
        self.engine.tap = self.telemetry
        self.driver = SessionDriver(connection, self.engine, stopping)
        self.maildrop: Maildrop | None = None

    async def run(self) -> None:
        try:
            await self.driver.run(self)
        finally:
            if self.telemetry is not None:
                self.telemetry.close()
            if self.maildrop is not None:
                maildrop, self.maildrop = self.maildrop, None
                await asyncio.to_thread(maildrop.close)

    # -- the driver's SessionLogic --

    @property
    def busy(self) -> bool:
        """The maildrop is open: a shutdown lets the client finish (and QUIT)."""
        return self.maildrop is not None

    def unit(self, event: events.Event) -> Unit:
        return Unit.DONE

    def ended(self, why: Ending) -> None:
        if why is Ending.DEADLINE:
            log.info("pop3: command timeout from %s", self.connection.peer)

    async def handle(self, event: events.Event) -> None:
        if log.isEnabledFor(logging.DEBUG):  # 12.4.5: protocol detail at DEBUG, never secrets
            detail = event.mechanism if isinstance(event, events.LoginAttempt) else event
            log.debug("pop3 %s %s: %s", self.connection.peer, self.engine.user or "-", detail)
        match event:
            case events.LoginAttempt():
                await self._login(event)
            case events.StartTLS():
                await self._start_tls()
            case events.Retrieve():
                await self._retrieve(event.number)
            case events.UpdateRequested():
                await self._update(event.deleted)
            case events.ConnectionLost():
                log.info("pop3 session of %s ended without QUIT: nothing deleted", self.engine.user)
            case events.Quit():
                pass

    def _mailbox_name(self, user: str) -> str:
        local, at, domain = user.rpartition("@")
        if at and self.services.local_domains(domain):
            return local
        return user

    async def _login(self, event: events.LoginAttempt) -> None:
        client = self.connection.peer.address
        if self.telemetry is not None:
            self.telemetry.login_attempted()
        user = self._mailbox_name(event.user)
        result: LoginResult
        if event.mechanism == "APOP":
            timestamp = self.settings.apop_timestamp or ""
            result = await self.services.credentials.check_apop(
                user, timestamp, event.digest or "", client=client
            )
        elif event.authzid and event.authzid != event.user:
            result = LoginResult(False, "proxy logins are not supported", "AUTH")
        else:
            result = await self.services.credentials.check_password(
                user, event.password or "", protocol="pop3", client=client
            )
        if not result.ok:
            self.engine.reject_login(result.reason, result.code)
            return
        name = result.user or user
        try:
            maildrop = await asyncio.to_thread(self.services.open_maildrop, name)
        except MaildropBusy:
            self.engine.reject_login("maildrop already locked by another session", "IN-USE")
            return
        except MaildropError as exc:
            log.error("pop3: cannot open the maildrop of %s: %s", name, exc)
            code = "SYS/TEMP" if exc.temporary else "SYS/PERM"
            self.engine.reject_login("maildrop not available", code)
            return
        self.maildrop = maildrop
        self.connection.authenticated()
        if self.telemetry is not None:
            self.telemetry.logged_in(name)
            if not self.telemetry.recording:
                self.engine.tap = self.telemetry = None
        messages = maildrop.messages
        sizes = [message.size for message in messages]
        self.engine.accept_login(
            pop3_engine.MaildropInfo(
                count=len(messages),
                total_octets=sum(sizes),
                sizes=sizes,
                uids=[message.uid for message in messages],
            )
        )
        self.connection.record.update(user=name, mailbox="INBOX")

    async def _start_tls(self) -> None:
        context = self.services.tls_context
        if context is None:
            self.engine.reject_stls("TLS not available")
            return
        self.engine.accept_stls()
        await self.driver.start_tls(context)

    async def _retrieve(self, number: int) -> None:
        maildrop = self.maildrop
        assert maildrop is not None
        engine = self.engine
        # read() yields CRLF line ends: with no line starting with ".", that is the wire form.
        engine.begin_message(number, wire_ready=maildrop.messages[number - 1].dot_free)
        try:
            for chunk in maildrop.read(number):
                more = engine.message_chunk(chunk)
                await self.driver.send_soon()  # output of pipelined RETRs goes out in pieces
                if not more:
                    break
        except (MaildropError, OSError) as exc:
            log.error("pop3: reading message %d of %s failed: %s", number, engine.user, exc)
            engine.abort_message(f"message {number} could not be read")
            return
        engine.end_message()

    async def _update(self, deleted: tuple[int, ...]) -> None:
        maildrop = self.maildrop
        assert maildrop is not None
        try:
            if deleted:
                await asyncio.to_thread(maildrop.commit_deletions, deleted)
        except (MaildropError, OSError) as exc:
            log.error("pop3: deleting messages of %s failed: %s", self.engine.user, exc)
            self.engine.quit_done(False, "some deleted messages not removed")
            return
        log.info("pop3: %s quit, %d message(s) deleted", self.engine.user, len(deleted))
        self.engine.quit_done(True)
