"""Session core of the POP3 engine: the I/O-facing API, pausing and content streaming.

`SessionCore` owns everything that is not command interpretation: the input
buffer, the event queue and the pause on decision events, output, the
answers to decision events, limits that close the session, the STLS reset
(RFC 2595 §4) and streaming RETR/TOP content (content.py).
`engine.POP3Engine` adds command dispatch on top.

Streaming a message (answer to `Retrieve`)::

    engine.begin_message(n)            # queues "+OK <size> octets"; wire_ready=True
                                       # when no line starts with "." (no stuffing)
    for chunk in read_file_in_pieces():
        more = engine.message_chunk(chunk)
        write(engine.data_to_send())   # drain after each chunk: memory stays bounded
        if not more:                   # TOP has everything it needs
            break
    engine.end_message()               # final CRLF if missing, then ".CRLF"
    engine.next_event()                # go on with pipelined commands

If reading fails half-way, `abort_message` closes the session instead: a
truncated message must never be terminated as if it were complete.

`send_message(n, chunks)` does all of that in one call but buffers the whole
response until `data_to_send`; use it for small messages.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import TypeVar

from posthouse.protocols import sasl
from posthouse.protocols.engine_base import EngineCore
from posthouse.protocols.errors import UsageError
from posthouse.protocols.pop3 import replies
from posthouse.protocols.pop3.commands import State
from posthouse.protocols.pop3.content import ContentWriter, ReadyWriter, TopFilter
from posthouse.protocols.pop3.events import (
    ConnectionLost,
    DecisionEvent,
    Event,
    LoginAttempt,
    Retrieve,
    StartTLS,
    UpdateRequested,
)
from posthouse.protocols.pop3.maildrop import Maildrop, MaildropInfo
from posthouse.protocols.pop3.replies import Reply, err, ok
from posthouse.protocols.pop3.settings import Settings

_D = TypeVar("_D", bound=DecisionEvent)


class Phase(enum.Enum):
    """What the next input octets are."""

    COMMAND = "command"
    SASL = "sasl"  # AUTH continuation lines (RFC 5034 §4)
    TLS_WAIT = "tls-wait"  # STLS accepted; handshake pending
    CLOSED = "closed"


class SessionCore(EngineCore[Event, DecisionEvent]):
    """State, API and content streaming shared by every command handler."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._phase = Phase.COMMAND
        self._state = State.AUTHORIZATION
        self._tls_active = settings.tls_active
        self._user_name: str | None = None  # from USER, waiting for PASS
        self._user: str | None = None  # logged in
        self._maildrop: Maildrop | None = None
        self._commands = 0
        self._errors = 0
        self._sasl: sasl.Mechanism | None = None
        self._writer: ContentWriter | None = None
        self._top: TopFilter | None = None
        # RFC 1939 §4 greeting; the APOP timestamp ends it (RFC 1939 §7).
        stamp = f" {settings.apop_timestamp}" if settings.apop_timestamp else ""
        self._send(ok(f"POP3 server ready{stamp}"))

    def _accepting(self) -> bool:
        # RFC 2595 §4: plaintext after an accepted TLS go-ahead is never interpreted.
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
    def state(self) -> State:
        return self._state

    @property
    def user(self) -> str | None:
        """The user name of the accepted login, else None."""
        return self._user

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def deleted(self) -> tuple[int, ...]:
        """Messages currently marked deleted (empty outside TRANSACTION)."""
        return self._maildrop.deleted if self._maildrop is not None else ()

    def tls_started(self) -> None:
        """The TLS handshake after STLS completed: forget everything (RFC 2595 §4)."""
        if self._phase is not Phase.TLS_WAIT:
            raise UsageError("tls_started() without an accepted STLS")
        self._buf.clear()
        self._tls_active = True
        self._user_name = None
        self._state = State.AUTHORIZATION
        self._phase = Phase.COMMAND

    # ---------------------------------------------------- decision answers

    def accept_login(self, maildrop: MaildropInfo) -> None:
        """Answer `LoginAttempt`: the maildrop is locked; enter TRANSACTION (RFC 1939 §4)."""
        if not isinstance(maildrop, MaildropInfo):
            raise UsageError("accept_login() needs a MaildropInfo")
        event = self._take_pending(LoginAttempt)
        self._user = event.user
        self._maildrop = Maildrop(maildrop)
        self._state = State.TRANSACTION
        self._send(ok(self._maildrop_summary()))

    def reject_login(
        self, reason: str = "authentication failed", code: str | None = replies.AUTH
    ) -> None:
        """Answer `LoginAttempt` negatively, e.g. code "AUTH", "IN-USE", "SYS/TEMP" (RFC 3206)."""
        answer = _checked(lambda: err(reason, code))
        self._take_pending(LoginAttempt)
        self._state = State.AUTHORIZATION
        # Failed logins count as errors (password guessing).
        self._send(answer, error=True)

    def accept_stls(self) -> None:
        """Answer `StartTLS`: send +OK; the I/O layer then runs the handshake."""
        self._take_pending(StartTLS)
        self._send(ok("Begin TLS negotiation"))
        # RFC 2595 §4: drop pipelined plaintext (CVE-2011-0411).
        self._buf.clear()
        self._phase = Phase.TLS_WAIT

    def reject_stls(self, reason: str = "TLS not available") -> None:
        """Answer `StartTLS` negatively; the session continues in plaintext."""
        answer = _checked(lambda: err(reason, replies.SYS_TEMP))
        self._take_pending(StartTLS)
        self._send(answer)

    def send_message(self, n: int, chunks: Iterable[bytes] | None) -> None:
        """Answer `Retrieve` with the whole message content, or None if it cannot be read.

        The complete response is buffered until `data_to_send`; stream big
        messages with `begin_message` / `message_chunk` / `end_message`.
        """
        if chunks is None:
            self._retrieve(n)
            self._pending = None
            self._send(err("message not available", replies.SYS_TEMP))
            return
        self.begin_message(n)
        for chunk in chunks:
            if not self.message_chunk(chunk):
                break
        self.end_message()

    def begin_message(self, n: int, *, wire_ready: bool = False) -> None:
        """Start answering `Retrieve` for message ``n``: queues the +OK line.

        ``wire_ready``: the application vouches that the content has CRLF line
        ends and no line starting with "."; it is then sent as it is, without
        being scanned for byte-stuffing (RFC 1939 §3).
        """
        event = self._retrieve(n)
        maildrop = self._maildrop
        assert maildrop is not None
        self._writer = ReadyWriter() if wire_ready else ContentWriter()
        if event.top_lines is None:
            # RFC 1939 §7 RETR: "+OK 120 octets", the size LIST reports.
            self._out += b"+OK %d octets\r\n" % maildrop.size(n)
        else:
            self._top = TopFilter(event.top_lines)
            self._send(ok("top of message follows"))

    def message_chunk(self, data: bytes) -> bool:
        """Send the next slice of message content (any split; LF or CRLF line ends).

        Returns False once TOP has all the lines it needs: the rest of the
        message may be skipped (further chunks are ignored).
        """
        writer = self._writer
        if writer is None:
            raise UsageError("message_chunk() outside begin_message() / end_message()")
        top = self._top
        if top is not None:
            data = top.feed(data)
        self._out += writer.feed(data)
        return top is None or not top.done

    def end_message(self) -> None:
        """Finish the multi-line response and resume processing commands."""
        writer = self._writer
        if writer is None:
            raise UsageError("end_message() without begin_message()")
        self._out += writer.finish()
        self._writer = self._top = None
        self._pending = None

    def abort_message(self, reason: str = "message could not be read") -> None:
        """Reading the message failed: the response cannot be completed, so close.

        Queues `ConnectionLost` (nothing is deleted); the client sees a
        truncated response without the terminating "." and must not trust it.
        """
        if not isinstance(self._pending, Retrieve):
            raise UsageError("abort_message() answers a Retrieve only")
        self._pending = None
        self._writer = self._top = None
        self._close(reason)

    def quit_done(self, ok: bool, reason: str = "") -> None:
        """Answer `UpdateRequested` after deleting the marked messages (RFC 1939 §6)."""
        host = self._settings.hostname
        if ok:
            answer = _checked(lambda: replies.ok(reason or f"{host} POP3 server signing off"))
        else:
            text = reason or "some deleted messages not removed"
            answer = _checked(lambda: err(text, replies.SYS_TEMP))
        self._take_pending(UpdateRequested)
        self._send(answer)
        self._close(None)

    # ------------------------------------------------------------ plumbing

    def _take_pending(self, kind: type[_D]) -> _D:
        event = self._pending
        if event is None or any(queued is event for queued in self._events):
            raise UsageError("no decision event is waiting for an answer")
        if not isinstance(event, kind) or self._writer is not None:
            raise UsageError(f"the pending event is {type(event).__name__}, not {kind.__name__}")
        self._pending = None
        return event

    def _retrieve(self, n: int) -> Retrieve:
        """Check that ``n`` answers the pending `Retrieve` (which stays pending)."""
        event = self._pending
        if (
            not isinstance(event, Retrieve)
            or self._writer is not None
            or any(queued is event for queued in self._events)
        ):
            raise UsageError("no Retrieve is waiting for an answer")
        if n != event.number:
            raise UsageError(f"Retrieve is for message {event.number}, not {n}")
        return event

    def _maildrop_summary(self) -> str:
        assert self._maildrop is not None
        count, octets = self._maildrop.stat()
        return f"maildrop has {count} messages ({octets} octets)"

    def _emit(self, event: Event) -> None:
        self._events.append(event)
        if isinstance(event, DecisionEvent):
            self._pending = event

    def _send(self, answer: Reply, *, error: bool = False) -> None:
        self._out += answer.to_bytes()
        if error and self._phase is not Phase.CLOSED:
            self._errors += 1
            if self._errors >= self._settings.max_errors:
                self._shutdown("too many errors")

    def _refuse(self, answer: Reply) -> None:
        """Send an engine-generated -ERR; it counts towards max_errors."""
        self._send(answer, error=True)

    def _shutdown(self, text: str) -> None:
        """-ERR and close: nothing is deleted (RFC 1939 §6)."""
        self._out += err(text).to_bytes()
        self._close(text)

    def _close(self, reason: str | None) -> None:
        """Close; a TRANSACTION session ending without UPDATE reports `ConnectionLost`."""
        if self._state is State.TRANSACTION and reason is not None:
            self._events.append(ConnectionLost(reason))
        self._phase = Phase.CLOSED
        self._buf.clear()
        self._sasl = None

    def _step(self) -> bool:
        """Process one unit of input; False when nothing can be done now."""
        match self._phase:
            case Phase.COMMAND:
                return self._step_command()
            case Phase.SASL:
                return self._step_sasl()
            case Phase.TLS_WAIT:
                return self._eof and self._on_eof()
        return False

    def _on_eof(self) -> bool:
        self._close("connection closed by client")
        return True

    # ------------------------------------------------- provided by the engine

    def _step_command(self) -> bool:
        raise NotImplementedError

    def _step_sasl(self) -> bool:
        raise NotImplementedError


def _checked(build: Callable[[], Reply]) -> Reply:
    """Build an answer from application text; invalid text is a usage error."""
    try:
        return build()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
