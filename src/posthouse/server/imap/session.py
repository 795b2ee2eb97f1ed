"""The IMAP session: the IMAP engine wired to a connection, the credential checks and the store.

Like the SMTP and POP3 sessions it holds no protocol logic and no I/O loop (the shared
driver in server/session.py reads, feeds the engine and writes).  It answers the engine's
decision events: logins through the service-type rules of ``CredentialChecker``
(``protocol="imap"``, chapter 12.5.2), STARTTLS, and each `Run` command, carried out by
the command groups (mailboxes.py: the authenticated state; messages.py: the selected
state) against the user's ``UserSession`` of the ``MailStore``.  Store errors become the
RFC 5530 response codes here, once (`store_error_status`); a mailbox the user may not
see answers exactly like one that does not exist (the store raises the same error).

Before each command completes, and while the client idles, the session asks the store
what changed in the selected mailbox since it last looked (``change_token`` is a memory
read; only when it moved is ``changes_since`` asked) and hands that to the engine's
`SelectedMailbox`, which decides what may be told when.  After the session's own change
of the selected mailbox (STORE, EXPUNGE) the store need not be asked again when nothing
else can have happened since the last look (`own_change`).

Logging (chapter 12.5.4): authentications at NOTICE (INFO with the word NOTICE, as
logsetup.py says), mailbox openings at INFO, I/O errors at ERR, protection failures
(privacy required, too many errors) and timeouts at WARNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from posthouse.auth.credentials import CredentialChecker
from posthouse.protocols.engine_base import Ending
from posthouse.protocols.imap import engine as imap_engine
from posthouse.protocols.imap import events
from posthouse.protocols.imap.redact import SecretMask
from posthouse.protocols.imap.response import (
    AUTHENTICATIONFAILED,
    CONTACTADMIN,
    UNAVAILABLE,
    Code,
    Status,
)
from posthouse.protocols.imap.selected import FlagUpdate
from posthouse.server.connection import Connection
from posthouse.server.imap.commands import CommandRunner
from posthouse.server.imap.outcome import store_error_status
from posthouse.server.session import SessionDriver, Unit
from posthouse.server.telemetry import TelemetryDirectory
from posthouse.store.backend import MessageMeta
from posthouse.store.errors import InvalidName, MailboxNotFound, StoreError
from posthouse.store.service import MailStore, OpenMailbox, UserSession

log = logging.getLogger("posthouse.imap")

# IDLE is woken by the store's change counters (every commit bumps them; other processes'
# commits reach this one within the notifier's 0.2 s poll: 12.5's news within one second),
# so its own look is a safety net only: 10,000 idling sessions each looking every second
# would keep a core busy.
IDLE_POLL_SECONDS = 30.0


@dataclass(frozen=True)
class IMAPServices:
    """What an IMAP session needs from the rest of the system."""

    hostname: str
    credentials: CredentialChecker
    store: MailStore
    tls_context: ssl.SSLContext | None
    local_domains: Callable[[str], bool]
    telemetry: TelemetryDirectory | None = None  # the configuration directory's log/


class IMAPSession:
    """One IMAP conversation."""

    def __init__(
        self,
        connection: Connection,
        services: IMAPServices,
        settings: imap_engine.IMAPSettings,
        stopping: asyncio.Event,
    ) -> None:
        self.connection = connection
        self.services = services
        self.settings = settings
        self.stopping = stopping
        self.engine = imap_engine.IMAPEngine(settings)
        telemetry = services.telemetry
        self.telemetry = telemetry.session_log("imap", SecretMask) if telemetry else None
        self.engine.tap = self.telemetry
        self.driver = SessionDriver(connection, self.engine, stopping)
        self.user: UserSession | None = None
        self.mailbox: OpenMailbox | None = None
        self.token = 0  # the change token of the selected mailbox when last looked at
        self.seen_modseq = 0  # changes up to here are known to the engine's mailbox
        self._idle: asyncio.Task[None] | None = None
        self.commands = CommandRunner(self)

    async def run(self) -> None:
        try:
            await self.driver.run(self)
        finally:
            await self._stop_idle()
            if self.telemetry is not None:
                self.telemetry.close()

    # -- the driver's SessionLogic --

    @property
    def busy(self) -> bool:
        return False  # between commands an IMAP session may always be told BYE

    def unit(self, event: events.Event) -> Unit:
        """A literal's octets are a transfer (``min_data_rate``), a command a unit."""
        return Unit.TRANSFER if isinstance(event, events.LiteralAccepted) else Unit.DONE

    def ended(self, why: Ending) -> None:
        if why in (Ending.DEADLINE, Ending.IDLE):
            log.warning("imap: %s of %s (%s)", why.value, self.connection.peer, self.engine.user)

    async def handle(self, event: events.Event) -> None:
        match event:
            case events.LoginAttempt():
                await self._login(event)
            case events.StartTLS():
                await self._start_tls()
            case events.Run(command):
                await self.commands.run(command)
            case events.IdleStarted():
                self._idle = asyncio.create_task(self._watch())
            case events.IdleDone():
                await self._stop_idle()
                await self.look()
                self.engine.finish("OK", "IDLE terminated")
            case events.PlaintextLoginRefused(name):  # 12.5.4: protection failures
                log.warning("imap: %s over plain text from %s refused", name, self.connection.peer)
            case events.LiteralAccepted():
                pass  # the deadline of a transfer applies (``unit``)
            case events.CompressionStarted():
                log.debug("imap: %s compresses", self.connection.peer)
            case events.LoggedOut():
                log.info("imap: %s logged out", self.engine.user or self.connection.peer)
            case events.ConnectionLost(reason):
                if reason == "too many errors":
                    log.warning("imap: %s: %s", self.connection.peer, reason)

    # -- logins --

    def _mailbox_user(self, user: str) -> str:
        local, at, domain = user.rpartition("@")
        if at and self.services.local_domains(domain):
            return local
        return user

    async def _login(self, event: events.LoginAttempt) -> None:
        client = self.connection.peer.address
        if self.telemetry is not None:
            self.telemetry.login_attempted()
        if event.authzid and event.authzid != event.user:
            log.info("NOTICE imap: proxy login of %s as %s refused", event.user, event.authzid)
            self.engine.reject_login("Proxy logins are not supported", Code("AUTHORIZATIONFAILED"))
            return
        name = self._mailbox_user(event.user)
        result = await self.services.credentials.check_password(
            name, event.password, protocol="imap", client=client
        )
        if not result.ok:
            code = {"SYS/TEMP": UNAVAILABLE, "SYS/PERM": CONTACTADMIN}.get(
                result.code or "", AUTHENTICATIONFAILED
            )
            log.info("NOTICE imap: login of %s from %s failed: %s", name, client, result.reason)
            self.engine.reject_login(result.reason, code)
            return
        user = result.user or name
        try:
            self.user = self.services.store.session(user)
        except (StoreError, InvalidName) as error:
            outcome = store_error_status(error)
            log.info("NOTICE imap: login of %s from %s failed: %s", user, client, outcome.text)
            self.engine.reject_login(outcome.text, outcome.code)
            return
        log.info("NOTICE imap: %s logged in from %s (%s)", user, client, event.mechanism)
        self.connection.authenticated()
        self.connection.record.update(user=user)
        if self.telemetry is not None:
            self.telemetry.logged_in(user)
            if not self.telemetry.recording:
                self.engine.tap = self.telemetry = None
        self.engine.accept_login(user)

    async def _start_tls(self) -> None:
        context = self.services.tls_context
        if context is None:
            self.engine.reject_starttls("TLS is not available")
            return
        self.engine.accept_starttls()
        await self.driver.start_tls(context)

    # -- the selected mailbox --

    def opened(self, mailbox: OpenMailbox | None) -> None:
        """A mailbox was selected (or none is)."""
        self.mailbox = mailbox
        if mailbox is None:
            self.connection.record.update(mailbox="")
            return
        assert self.user is not None
        self.token = self.user.change_token(mailbox)
        self.seen_modseq = mailbox.snapshot.status.highestmodseq
        self.connection.record.update(mailbox=mailbox.record.name)  # internal, as Cyrus's

    async def look(self) -> None:
        """Hand what changed in the selected mailbox since the last look to the engine."""
        mailbox, user, selected = self.mailbox, self.user, self.engine.selected
        if mailbox is None or user is None or selected is None:
            return
        token = user.change_token(mailbox)
        if token == self.token:
            return
        try:
            changes = await user.changes_since(mailbox, self.seen_modseq)
        except MailboxNotFound:  # another session deleted it: the selection ends
            log.info("imap: %s: the selected %s was deleted", user.user, mailbox.name)
            self.engine.unselect()
            self.opened(None)
            self.engine.untagged(
                Status("OK", "The selected mailbox was deleted", code=Code("CLOSED"))
            )
            return
        except StoreError as error:
            log.error("imap: %s: looking at %s failed: %s", user.user, mailbox.name, error)
            return
        self.token = token  # only now: a look cancelled half-way (IDLE's DONE) is redone
        self.seen_modseq = max(self.seen_modseq, changes.highestmodseq)
        condstore = self.engine.condstore
        selected.changes(
            (FlagUpdate(m.uid, m.flags, m.modseq if condstore else 0) for m in changes.changed),
            changes.vanished,
        )

    def own_change(
        self, modseqs: tuple[int, int] | None, changed: Iterable[MessageMeta] = ()
    ) -> None:
        """This session changed the selected mailbox in one commit, taking its HIGHESTMODSEQ
        from ``modseqs[0]`` to ``modseqs[1]`` (``changed``: the messages whose flags it
        changed).  When the first is what the last look saw and the change token moved by
        exactly this commit's increment (each commit adds 1, never lost: notify.py), no
        other commit came between, and nothing is left for a look to find: the engine is
        told what a look would tell it.  Otherwise the next look asks the store."""
        mailbox, user, selected = self.mailbox, self.user, self.engine.selected
        if modseqs is None or mailbox is None or user is None or selected is None:
            return
        before, after = modseqs
        token = user.change_token(mailbox)
        if before != self.seen_modseq or token != (self.token + 1) % 2**64:
            return
        self.token, self.seen_modseq = token, after
        condstore = self.engine.condstore
        selected.changes(
            (FlagUpdate(m.uid, m.flags, m.modseq if condstore else 0) for m in changed), ()
        )

    async def _watch(self) -> None:
        """While the client idles: look whenever the store says the mailbox changed."""
        mailbox, user = self.mailbox, self.user
        try:
            while self.engine.idling:
                if mailbox is not None and user is not None:
                    await user.wait_for_change(mailbox, self.token, IDLE_POLL_SECONDS)
                    await self.look()
                    self.engine.announce()
                else:
                    await asyncio.sleep(IDLE_POLL_SECONDS)
                data = self.engine.data_to_send()
                if data:
                    await self.connection.write(data)
        except (StoreError, OSError, ConnectionError) as error:
            log.error("imap: IDLE of %s stopped: %s", self.engine.user, error)

    async def _stop_idle(self) -> None:
        task, self._idle = self._idle, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
