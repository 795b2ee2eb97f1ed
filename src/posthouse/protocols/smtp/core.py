"""Session core of the SMTP engine: the I/O-facing API, pausing and content streaming.

`SessionCore` owns everything that is not command interpretation: the input
buffer, the event queue and the pause on decision events, output, limits
that close the session (RFC 5321 §3.8), the STARTTLS reset (RFC 3207 §4.2),
and streaming DATA (body.py) and BDAT (RFC 3030) content into a
`Transaction`.  `engine.SMTPEngine` adds command dispatch on top.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from posthouse.protocols import sasl
from posthouse.protocols.engine_base import EngineCore
from posthouse.protocols.errors import UsageError
from posthouse.protocols.smtp import commands
from posthouse.protocols.smtp.body import DotReader
from posthouse.protocols.smtp.commands import Session, reply
from posthouse.protocols.smtp.events import (
    AuthAttempt,
    DecisionEvent,
    Event,
    MailFrom,
    MessageEnd,
    RcptTo,
    StartTLS,
)
from posthouse.protocols.smtp.replies import Reply
from posthouse.protocols.smtp.settings import Settings
from posthouse.protocols.smtp.transaction import Transaction


class Phase(enum.Enum):
    """What the next input octets are."""

    COMMAND = "command"
    DATA = "data"  # DATA content up to CRLF.CRLF
    CHUNK = "chunk"  # BDAT chunk octets
    SASL = "sasl"  # AUTH continuation lines
    TLS_WAIT = "tls-wait"  # STARTTLS accepted; handshake pending
    CLOSED = "closed"


@dataclass
class _Chunk:
    size: int
    remaining: int
    last: bool
    reject: Reply | None  # BDAT refused: consume the octets, then send this


class SessionCore(EngineCore[Event, DecisionEvent]):
    """State, API and content streaming shared by every command handler."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._phase = Phase.COMMAND
        self._session = Session.FRESH
        self._helo_name: str | None = None
        self._esmtp = False
        self._tls_active = settings.tls_active
        self._authenticated_as: str | None = None
        self._commands = 0
        self._errors = 0
        self._txn: Transaction | None = None
        self._dot: DotReader | None = None
        self._chunk: _Chunk | None = None
        self._sasl: sasl.Mechanism | None = None
        # RFC 5321 §4.3.1 greeting; no enhanced code (RFC 2034 §3).
        self._send(reply(220, None, f"{settings.hostname} {settings.banner}"))

    def _accepting(self) -> bool:
        # RFC 3207 §4.2: plaintext after an accepted TLS go-ahead is never interpreted.
        return self._phase not in (Phase.CLOSED, Phase.TLS_WAIT)

    # ----------------------------------------------------------------- API

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def closed(self) -> bool:
        """True once the connection must be closed after flushing output."""
        return self._phase is Phase.CLOSED

    @property
    def authenticated_as(self) -> str | None:
        return self._authenticated_as

    @property
    def helo_name(self) -> str | None:
        return self._helo_name

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def esmtp(self) -> bool:
        """True after EHLO/LHLO; False before any greeting or after HELO."""
        return self._esmtp

    def respond(self, answer: Reply) -> None:
        """Answer the pending decision event (anything but an LMTP `MessageEnd`)."""
        if isinstance(self._pending, MessageEnd) and self._settings.mode == "lmtp":
            raise UsageError("an LMTP MessageEnd needs respond_per_recipient()")
        event = self._take_pending(answer)
        match event:
            case MailFrom():
                if answer.positive:
                    self._txn = Transaction(
                        smtputf8=event.smtputf8,
                        max_size=self._settings.max_message_size,
                        emit=self._emit,
                    )
                    self._session = Session.MAIL
                self._send(answer)
            case RcptTo():
                if answer.positive and self._txn is not None:
                    self._txn.accepted += 1
                # Rejected recipients count as errors (directory harvesting).
                self._send(answer, error=answer.permanent)
            case MessageEnd():
                self._end_transaction()
                self._send(answer)
            case AuthAttempt():
                if answer.positive:
                    self._authenticated_as = event.authcid
                # Failed logins count as errors (password guessing).
                self._send(answer, error=answer.permanent)
            case StartTLS():
                self._send(answer)
                if answer.positive:
                    # RFC 3207 §4.2 (CVE-2011-0411): drop pipelined plaintext.
                    self._buf.clear()
                    self._phase = Phase.TLS_WAIT

    def respond_per_recipient(self, replies: Sequence[Reply]) -> None:
        """LMTP: answer `MessageEnd` with one reply per accepted RCPT, in order."""
        if self._settings.mode != "lmtp" or not isinstance(self._pending, MessageEnd):
            raise UsageError("respond_per_recipient() answers an LMTP MessageEnd only")
        expected = self._txn.accepted if self._txn is not None else 0
        if len(replies) != expected:
            raise UsageError(f"expected {expected} replies, got {len(replies)}")
        for answer in replies:
            self._take_pending(answer, keep=True)
        self._pending = None
        self._end_transaction()
        for answer in replies:
            self._send(answer)

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS completed: reset per RFC 3207 §4.2."""
        if self._phase is not Phase.TLS_WAIT:
            raise UsageError("tls_started() without an accepted STARTTLS")
        self._buf.clear()
        self._tls_active = True
        self._helo_name = None
        self._esmtp = False
        self._authenticated_as = None
        self._txn = None
        self._session = Session.FRESH
        self._phase = Phase.COMMAND

    # ------------------------------------------------------------ plumbing

    def _take_pending(self, answer: Reply, *, keep: bool = False) -> DecisionEvent:
        event = self._pending
        if event is None or any(queued is event for queued in self._events):
            raise UsageError("no decision event is waiting for an answer")
        if not isinstance(answer, Reply) or answer.intermediate:
            raise UsageError("a decision must be answered with a 2xx, 4xx or 5xx Reply")
        if not keep:
            self._pending = None
        return event

    def _emit(self, event: Event) -> None:
        self._events.append(event)
        if isinstance(event, DecisionEvent):
            self._pending = event

    def _send(self, answer: Reply, *, error: bool = False) -> None:
        self._out += answer.to_bytes()
        if error and self._phase is not Phase.CLOSED:
            self._errors += 1
            if self._errors >= self._settings.max_errors:
                self._shutdown("Too many errors")

    def _refuse(self, answer: Reply) -> None:
        """Send an engine-generated refusal; 5xx ones count as errors."""
        self._send(answer, error=answer.permanent)

    def _shutdown(self, text: str) -> None:
        """421 4.7.0 and close (RFC 5321 §3.8)."""
        self._abort_message(text)
        host = self._settings.hostname
        self._out += reply(421, "4.7.0", f"{host} {text}, closing connection").to_bytes()
        self._close()

    def _close(self) -> None:
        self._phase = Phase.CLOSED
        self._buf.clear()
        self._sasl = self._dot = self._chunk = None

    def _abort_message(self, reason: str) -> None:
        """Emit MessageAborted if content is in progress; drop the transaction."""
        if self._txn is not None:
            self._txn.abort(reason)
        self._end_transaction()

    def _end_transaction(self) -> None:
        self._txn = None
        if self._session is not Session.FRESH:
            self._session = Session.READY

    def _step(self) -> bool:
        """Process one unit of input; False when nothing can be done now."""
        match self._phase:
            case Phase.COMMAND:
                return self._step_command()
            case Phase.DATA:
                return self._step_data()
            case Phase.CHUNK:
                return self._step_chunk()
            case Phase.SASL:
                return self._step_sasl()
            case Phase.TLS_WAIT:
                return self._eof and self._on_eof()
        return False

    def _on_eof(self) -> bool:
        self._abort_message("connection closed by client")
        self._close()
        return True

    # ------------------------------------------------------------- content

    def _step_data(self) -> bool:
        reader, txn = self._dot, self._txn
        assert reader is not None and txn is not None
        before = len(self._buf)
        txn.content(reader.consume(self._buf))
        if txn.failed is not None:
            reader.discard = True
        elif reader.too_long:  # RFC 5321 §4.5.3.1.6 text line limit
            txn.fail("line too long", commands.LINE_TOO_LONG)
            reader.discard = True
        if reader.done:
            self._dot = None
            self._phase = Phase.COMMAND
            self._end_message(txn)
            return True
        if len(self._buf) == before:
            return self._eof and self._on_eof()
        return True

    def _end_message(self, txn: Transaction) -> None:
        """Content complete: ask the application, or send the owed failure."""
        if txn.failed is None:
            txn.finish()
            self._emit(MessageEnd())
            return
        # LMTP expects one reply per accepted recipient (RFC 2033 §4.2).
        count = txn.accepted if self._settings.mode == "lmtp" else 1
        self._end_transaction()
        for _ in range(max(count, 1)):
            self._send(txn.failed)

    def _start_chunk(self, arg: str, *, reject: Reply | None) -> None:
        args = commands.check_bdat(arg)
        if isinstance(args, Reply):
            self._refuse(args)
            return
        if reject is None and self._txn is not None and self._session is Session.MAIL:
            self._session = Session.BDAT
            self._txn.start_message()
        self._chunk = _Chunk(args.size, args.size, args.last, reject)
        self._phase = Phase.CHUNK
        if args.size == 0:
            self._finish_chunk(self._chunk)

    def _step_chunk(self) -> bool:
        chunk = self._chunk
        assert chunk is not None
        if not self._buf:
            return self._eof and self._on_eof()
        data = self._buf.read(chunk.remaining)
        chunk.remaining -= len(data)
        if chunk.reject is None and self._txn is not None:
            self._txn.content(data)
        if chunk.remaining == 0:
            self._finish_chunk(chunk)
        return True

    def _finish_chunk(self, chunk: _Chunk) -> None:
        self._chunk = None
        self._phase = Phase.COMMAND
        txn = self._txn
        if chunk.reject is not None:
            self._refuse(chunk.reject)
        elif txn is None:  # pragma: no cover - accepted chunks always have a transaction
            raise AssertionError("BDAT chunk without transaction")
        elif chunk.last:
            self._end_message(txn)
        elif txn.failed is not None:
            # The message is gone: a failed chunk ends the transaction (RFC 3030 §2).
            self._end_transaction()
            self._send(txn.failed)
        else:
            self._send(reply(250, "2.0.0", f"{chunk.size} octets received"))

    # ------------------------------------------------- provided by the engine

    def _step_command(self) -> bool:
        raise NotImplementedError

    def _step_sasl(self) -> bool:
        raise NotImplementedError
