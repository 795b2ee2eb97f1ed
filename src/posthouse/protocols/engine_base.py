"""What every sans-I/O text-protocol engine shares: the I/O-facing API and the session core.

`EngineCore` owns the parts that are the same in SMTP, POP3 and (next) IMAP:

* the API the I/O layer drives (``receive_data``, ``receive_eof``, ``next_event``,
  ``data_to_send``, ``closed``, ``tls_started``, ``end``);
* the input buffer, the event queue, the pause on a *decision* event (``next_event``
  returns PAUSED until the application has answered it) and the output;
* the input `Phase`: command lines, protocol content, SASL continuation lines, the wait
  for a TLS handshake (RFC 3207 §4.2, RFC 2595 §4: plaintext after the go-ahead is never
  interpreted), closed;
* reading command lines under the per-session `Limits` (line length, commands, errors);
* the SASL exchange (RFC 4422 framing: challenges, the client's ``*`` cancel, the
  continuation line limit; mechanisms in sasl.py);
* ending a session for an `Ending` (too many errors or commands, idle timeout, command
  deadline, server shutdown) with the protocol's last reply.

A protocol engine subclasses it and owns its own state machine, in one file (h11's rule):
the protocol states, their transitions, its `StateTable` of the commands legal in each
state, its command dispatch, its content (``_step_content``), the answers to its decision
events, and the *wording* of what the core sends (``_ending_reply``, ``_sasl_*``,
``_refuse``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Final, Generic, Literal, Protocol, TypeVar

from posthouse.protocols import sasl
from posthouse.protocols.errors import UsageError
from posthouse.protocols.lines import LineBuffer


class Tap(Protocol):
    """Sees a session's octets as the protocol has them (inside TLS, and IMAP's COMPRESS):
    the telemetry log (chapter 12.5.5), when one is kept."""

    def received(self, data: bytes) -> None: ...

    def sent(self, data: bytes) -> None: ...


class Signal(enum.Enum):
    """What ``next_event`` returns when it has no event."""

    NEED_DATA = "NEED_DATA"  # feed more input (or, if the engine is closed, flush and close)
    PAUSED = "PAUSED"  # a decision event is waiting for its answer


NEED_DATA: Final = Signal.NEED_DATA
PAUSED: Final = Signal.PAUSED


class Phase(enum.Enum):
    """What the next input octets are."""

    COMMAND = "command"
    CONTENT = "content"  # protocol content: SMTP DATA/BDAT octets (IMAP: literals)
    SASL = "sasl"  # AUTH continuation lines
    TLS_WAIT = "tls-wait"  # STARTTLS/STLS accepted; handshake pending
    CLOSED = "closed"


class Ending(enum.Enum):
    """Why the server, not the client, ends a session; each protocol words its last reply."""

    TOO_MANY_ERRORS = "too many errors"
    TOO_MANY_COMMANDS = "too many commands"
    IDLE = "idle timeout"  # the client sent nothing for too long
    DEADLINE = "command timeout"  # a command line or transfer took too long
    SHUTDOWN = "server shutting down"


@dataclass(frozen=True)
class Limits:
    """Per-session limits the core enforces (octet counts include the CRLF)."""

    line: int  # longest command line read at all (a longer one is refused)
    sasl_line: int  # longest SASL continuation line
    commands: int  # commands per session; then `Ending.TOO_MANY_COMMANDS`
    errors: int  # refusals per session; then `Ending.TOO_MANY_ERRORS`


StateT = TypeVar("StateT", bound=enum.Enum)


@dataclass(frozen=True)
class StateTable(Generic[StateT]):
    """A protocol's table of the commands legal in each of its states.

    The verbs it knows at all are those legal in some state; :meth:`verdict` says how a
    command line's verb fits the current state, which each protocol words its own way
    (SMTP: 500 and 503, RFC 5321 §4.2.4 and §4.1.4; POP3: ``-ERR``, RFC 1939 §3).
    """

    legal: Mapping[StateT, frozenset[str]]

    @cached_property
    def known(self) -> frozenset[str]:
        return frozenset().union(*self.legal.values())

    def verdict(self, verb: str, state: StateT) -> Literal["unknown", "out of sequence", "ok"]:
        if verb not in self.known:
            return "unknown"
        return "ok" if verb in self.legal[state] else "out of sequence"


class WireReply(Protocol):
    """A protocol's typed reply."""

    def to_bytes(self) -> bytes:
        """The reply's wire form."""
        ...


EventT = TypeVar("EventT")
DecisionT = TypeVar("DecisionT")
ReplyT = TypeVar("ReplyT", bound=WireReply)


class EngineCore(Generic[EventT, DecisionT, ReplyT]):
    """The shared session core (see the module docstring)."""

    def __init__(self, limits: Limits, *, tls_active: bool, decision: type[DecisionT]) -> None:
        self._buf = LineBuffer()
        # A list, not a deque: it holds a few events at most, and an empty deque costs
        # 600 bytes in every one of 10,000 idle sessions.
        self._events: list[EventT] = []
        self._out = bytearray()
        self._pending: DecisionT | None = None
        self._decision = decision
        self._eof = False
        self._limits = limits
        self._phase = Phase.COMMAND
        self._tls_active = tls_active
        self._commands = 0
        self._errors = 0
        self._sasl: sasl.Mechanism | None = None

    # ----------------------------------------------------------------- API

    @property
    def closed(self) -> bool:
        """True once the connection must be closed after flushing output."""
        return self._phase is Phase.CLOSED

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    def receive_data(self, data: bytes) -> None:
        """Feed octets from the peer (ignored once closed or awaiting TLS)."""
        # RFC 3207 §4.2, RFC 2595 §4: plaintext after a TLS go-ahead is never interpreted.
        phase = self._phase
        if phase is not Phase.CLOSED and phase is not Phase.TLS_WAIT and not self._eof:
            self._buf.feed(data)

    def receive_eof(self) -> None:
        """The peer closed its sending side."""
        self._eof = True

    def next_event(self) -> EventT | Signal:
        """Return the next event, PAUSED (answer the decision first) or NEED_DATA."""
        while not self._events:
            if self._pending is not None:
                return PAUSED
            if not self._step():
                return NEED_DATA
        return self._events.pop(0)

    def data_to_send(self) -> bytes:
        """Drain and return the queued output."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def tls_started(self) -> None:
        """The TLS handshake after an accepted STARTTLS/STLS completed: start afresh."""
        if self._phase is not Phase.TLS_WAIT:
            raise UsageError("tls_started() without an accepted TLS go-ahead")
        self._buf.clear()
        self._tls_active = True
        self._phase = Phase.COMMAND
        self._tls_reset()

    def end(self, why: Ending) -> None:
        """End the session: queue the protocol's last reply for ``why`` and close.

        The I/O layer calls it for an idle timeout, a passed deadline or a server shutdown;
        the core itself for too many errors or commands.  Nothing happens once closed.
        """
        if self._phase is Phase.CLOSED:
            return
        self._out += self._ending_reply(why).to_bytes()
        self._close(why.value)

    # ------------------------------------------------------------ plumbing

    def _emit(self, event: EventT) -> None:
        self._events.append(event)
        if isinstance(event, self._decision):
            self._pending = event

    def _send(self, answer: ReplyT, *, error: bool = False) -> None:
        self._out += answer.to_bytes()
        if error and self._phase is not Phase.CLOSED:
            self._errors += 1
            if self._errors >= self._limits.errors:
                self.end(Ending.TOO_MANY_ERRORS)

    def _close(self, reason: str | None) -> None:
        """Close; ``reason`` is None when the session ended as the protocol intends."""
        self._closing(reason)
        self._phase = Phase.CLOSED
        self._buf.clear()
        self._sasl = None

    def _on_eof(self) -> bool:
        self._close("connection closed by client")
        return True

    def _step(self) -> bool:
        """Process one unit of input; False when nothing can be done now."""
        match self._phase:
            case Phase.COMMAND:
                return self._step_command()
            case Phase.CONTENT:
                return self._step_content()
            case Phase.SASL:
                return self._step_sasl()
            case Phase.TLS_WAIT:
                return self._eof and self._on_eof()
        return False

    def _step_command(self) -> bool:
        line = self._buf.read_line(self._limits.line)
        if line is None:
            return self._eof and self._on_eof()
        self._commands += 1
        if self._commands > self._limits.commands:
            self.end(Ending.TOO_MANY_COMMANDS)
        elif not isinstance(line, bytes):
            self._line_too_long()
        else:
            self._dispatch(line)
        return True

    # ---------------------------------------------------------------- SASL

    def _start_sasl(self, mechanism: sasl.Mechanism, initial: str | None) -> None:
        """Begin an exchange; ``initial`` is the initial response ('' for "=") or None."""
        self._sasl_result(mechanism, mechanism.start(initial))

    def _sasl_result(self, mechanism: sasl.Mechanism, step: sasl.Step) -> None:
        if isinstance(step, sasl.Challenge):
            self._sasl = mechanism
            self._phase = Phase.SASL
            self._out += self._sasl_challenge(step.text)
        elif isinstance(step, sasl.Failure):
            self._sasl_done(self._sasl_failure(step.reason))
        else:
            self._sasl_done(None)
            self._emit(self._sasl_credentials(mechanism.name, step))

    def _sasl_done(self, refusal: ReplyT | None) -> None:
        self._sasl = None
        self._phase = Phase.COMMAND
        if refusal is not None:
            self._refuse(refusal)

    def _step_sasl(self) -> bool:
        mechanism = self._sasl
        assert mechanism is not None
        line = self._buf.read_line(self._limits.sasl_line)
        if line is None:
            return self._eof and self._on_eof()
        if not isinstance(line, bytes):  # TOO_LONG
            self._sasl_done(self._sasl_line_too_long())
        elif line.strip(b" \t") == b"*":  # RFC 4954 §4, RFC 5034 §4: the client cancels
            self._sasl_done(self._sasl_cancelled())
        else:
            self._sasl_result(mechanism, mechanism.step(line.decode("latin-1").strip(" \t")))
        return True

    # ------------------------------------------------- provided by the protocol

    def _dispatch(self, line: bytes) -> None:
        """Interpret one command line (without its line end)."""
        raise NotImplementedError

    def _line_too_long(self) -> None:
        """Answer a command line over ``Limits.line``."""
        raise NotImplementedError

    def _step_content(self) -> bool:
        """Consume protocol content (`Phase.CONTENT`); False when more octets are needed."""
        raise NotImplementedError

    def _refuse(self, answer: ReplyT) -> None:
        """Send an engine-generated refusal, counted as the protocol counts errors."""
        raise NotImplementedError

    def _ending_reply(self, why: Ending) -> ReplyT:
        """The last reply of a session ended for ``why``."""
        raise NotImplementedError

    def _closing(self, reason: str | None) -> None:
        """The session closes (``reason``: why, if it ended abnormally)."""
        raise NotImplementedError

    def _tls_reset(self) -> None:
        """Forget what the client said before TLS (RFC 3207 §4.2, RFC 2595 §4)."""
        raise NotImplementedError

    def _sasl_challenge(self, text: str) -> bytes:
        """The wire form of a server challenge (base64 ``text``)."""
        raise NotImplementedError

    def _sasl_failure(self, reason: str) -> ReplyT:
        """The refusal of a malformed client response."""
        raise NotImplementedError

    def _sasl_line_too_long(self) -> ReplyT:
        raise NotImplementedError

    def _sasl_cancelled(self) -> ReplyT:
        raise NotImplementedError

    def _sasl_credentials(self, mechanism: str, credentials: sasl.Credentials) -> EventT:
        """The decision event that asks the application to verify ``credentials``."""
        raise NotImplementedError
