"""The POP3 server engine: the protocol's state machine (sans-I/O).

`POP3Engine` turns received octets into `events` and queues responses as octets to send.
This module is the one place that changes the session's state: it interprets command
lines (RFC 1939 §3-§7, RFC 2449, RFC 2595 §4, RFC 5034 §4) through one dispatch table,
after the table of legal commands per `State` below (``TABLE``); it answers the
application's decisions (logins, STLS, message retrieval, the UPDATE state) and resets on
STLS (RFC 2595 §4).  The I/O-facing API, the command-line and SASL reading and the
session endings are the shared core in ``protocols/engine_base.py``.

The engine answers STAT, LIST, UIDL, DELE, RSET, NOOP and CAPA itself from the
`MaildropInfo` given to ``accept_login``; policy (passwords, locking, reading and
deleting messages) belongs to the application, which answers decision events (see
events.py).  Pipelined commands (RFC 2449 §6.6) are processed strictly in order.

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
from typing import Final, TypeVar

from posthouse.protocols import sasl
from posthouse.protocols.engine_base import (
    NEED_DATA,
    PAUSED,
    Ending,
    EngineCore,
    Limits,
    Phase,
    Signal,
    StateTable,
    Tap,
)
from posthouse.protocols.errors import UsageError
from posthouse.protocols.pop3 import commands, replies
from posthouse.protocols.pop3.commands import Command
from posthouse.protocols.pop3.content import ContentWriter, ReadyWriter, TopFilter
from posthouse.protocols.pop3.events import (
    ConnectionLost,
    DecisionEvent,
    Event,
    LoginAttempt,
    Quit,
    Retrieve,
    StartTLS,
    UpdateRequested,
)
from posthouse.protocols.pop3.maildrop import MaildropInfo, MaildropMarks
from posthouse.protocols.pop3.replies import Reply, err, ok
from posthouse.protocols.pop3.settings import SASL_LINE_LIMIT, POP3Settings

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "TABLE",
    "Ending",
    "MaildropInfo",
    "POP3Engine",
    "POP3Settings",
    "Signal",
    "State",
]


class State(enum.Enum):
    """Where the session is (RFC 1939 §3)."""

    AUTHORIZATION = "authorization"
    USER_GIVEN = "user-given"  # AUTHORIZATION right after a successful USER (RFC 1939 §7)
    TRANSACTION = "transaction"
    UPDATE = "update"  # QUIT seen in TRANSACTION; waiting for quit_done (RFC 1939 §6)


# RFC 2449 §5: CAPA is valid in every state; QUIT in AUTHORIZATION and TRANSACTION.
_ANYTIME: Final = frozenset({"CAPA", "QUIT"})
_LOGIN: Final = frozenset({"USER", "APOP", "AUTH", "STLS"})

# The one table of legal commands per session state.  An unknown verb is answered
# "-ERR unknown command", a known one not legal in the current state "-ERR command not
# valid in this state".
TABLE: Final = StateTable(
    {
        State.AUTHORIZATION: _ANYTIME | _LOGIN,  # RFC 1939 §4, RFC 2595 §4, RFC 5034 §4
        State.USER_GIVEN: _ANYTIME | _LOGIN | {"PASS"},  # RFC 1939 §7: PASS only after USER
        State.TRANSACTION: _ANYTIME  # RFC 1939 §5, §7
        | {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL"},
        State.UPDATE: frozenset(),
    }
)
_UNKNOWN: Final = err("unknown command")
_WRONG_STATE: Final = err("command not valid in this state")

_D = TypeVar("_D", bound=DecisionEvent)

_BAD_CHARS: Final = err("invalid characters in command")
_CANCELLED: Final = err("authentication cancelled")  # RFC 5034 §4
_NEEDS_TLS: Final = "plaintext authentication requires TLS"  # RFC 2595 §2.3
# The server ends the session with -ERR; nothing is deleted (RFC 1939 §6).
_ENDINGS: Final = {
    Ending.TOO_MANY_ERRORS: err("too many errors"),
    Ending.TOO_MANY_COMMANDS: err("too many commands"),
    Ending.IDLE: err("autologout timer expired"),  # RFC 1939 §3
    Ending.DEADLINE: err("command timeout"),
    Ending.SHUTDOWN: err("server shutting down", replies.SYS_TEMP),
}


def refusal(reason: str) -> Reply:
    """The reply to a client the connection limits turn away (no session is started)."""
    return err(f"{reason}, try again later", replies.SYS_TEMP)


class POP3Engine(EngineCore[Event, DecisionEvent, Reply]):
    """One server-side POP3 session."""

    def __init__(self, settings: POP3Settings) -> None:
        # AUTH lines may exceed max_line (RFC 5034 §4); others are checked in _parse.
        line = max(settings.max_line, SASL_LINE_LIMIT)
        limits = Limits(line, SASL_LINE_LIMIT, settings.max_commands, settings.max_errors)
        super().__init__(limits, tls_active=settings.tls_active, decision=DecisionEvent)
        self._settings = settings
        self._state = State.AUTHORIZATION
        self._user_name: str | None = None  # from USER, waiting for PASS
        self._user: str | None = None  # logged in
        self._maildrop: MaildropMarks | None = None
        self._writer: ContentWriter | None = None
        self._top: TopFilter | None = None
        # RFC 1939 §4 greeting; the APOP timestamp ends it (RFC 1939 §7).
        stamp = f" {settings.apop_timestamp}" if settings.apop_timestamp else ""
        self._send(ok(f"POP3 server ready{stamp}"))
        self.tap: Tap | None = None  # the telemetry log (chapter 12.5.5), when one is kept

    # ----------------------------------------------------------------- API

    def receive_data(self, data: bytes) -> None:
        if self.tap is not None:
            self.tap.received(data)
        super().receive_data(data)

    def data_to_send(self) -> bytes:
        data = super().data_to_send()
        if self.tap is not None and data:
            self.tap.sent(data)
        return data

    @property
    def settings(self) -> POP3Settings:
        return self._settings

    @property
    def state(self) -> State:
        return self._state

    @property
    def user(self) -> str | None:
        """The user name of the accepted login, else None."""
        return self._user

    @property
    def deleted(self) -> tuple[int, ...]:
        """Messages currently marked deleted (empty outside TRANSACTION)."""
        return self._maildrop.deleted if self._maildrop is not None else ()

    # ---------------------------------------------------- decision answers

    def accept_login(self, maildrop: MaildropInfo) -> None:
        """Answer `LoginAttempt`: the maildrop is locked; enter TRANSACTION (RFC 1939 §4)."""
        if not isinstance(maildrop, MaildropInfo):
            raise UsageError("accept_login() needs a MaildropInfo")
        event = self._take_pending(LoginAttempt)
        self._user = event.user
        self._maildrop = MaildropMarks(maildrop)
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

    def _refuse(self, answer: Reply) -> None:
        """Send an engine-generated -ERR; it counts towards max_errors."""
        self._send(answer, error=True)

    def _ending_reply(self, why: Ending) -> Reply:
        return _ENDINGS[why]

    def _closing(self, reason: str | None) -> None:
        """A TRANSACTION session ending without UPDATE reports `ConnectionLost`."""
        if self._state is State.TRANSACTION and reason is not None:
            self._events.append(ConnectionLost(reason))

    def _tls_reset(self) -> None:
        self._user_name = None  # RFC 2595 §4: forget everything
        self._state = State.AUTHORIZATION

    # ------------------------------------------------------------ commands

    def _line_too_long(self) -> None:
        self._forget_user()
        self._refuse(commands.LINE_TOO_LONG)

    def _dispatch(self, line: bytes) -> None:
        command = self._parse(line)
        # RFC 1939 §7: PASS is only valid immediately after a successful USER.
        if not (isinstance(command, Command) and command.verb == "PASS"):
            self._forget_user()
        if isinstance(command, Reply):
            self._refuse(command)
            return
        match TABLE.verdict(command.verb, self._state):
            case "unknown":
                self._refuse(_UNKNOWN)
            case "out of sequence":
                self._refuse(_WRONG_STATE)
            case "ok":
                _HANDLERS[command.verb](self, command)

    def _parse(self, line: bytes) -> Command | Reply:
        if len(line) + 2 > self._settings.max_line and line[:5].upper() != b"AUTH ":
            return commands.LINE_TOO_LONG  # RFC 2449 §4
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return _BAD_CHARS
        if commands.has_control_chars(text):
            return _BAD_CHARS
        command = commands.split_command(text)
        return _UNKNOWN if command is None else command

    def _forget_user(self) -> None:
        if self._state is State.USER_GIVEN:
            self._state = State.AUTHORIZATION
        self._user_name = None

    def _plaintext_ok(self) -> bool:
        return self._tls_active or self._settings.plaintext_login_allowed

    def _no_args(self, command: Command) -> bool:
        """Refuse a command that takes no argument but got one; True if refused."""
        if command.args:
            self._refuse(commands.syntax(command.verb))
            return True
        return False

    def _cmd_capa(self, command: Command) -> None:
        if self._no_args(command):
            return
        lines = commands.capabilities(
            self._settings,
            logged_in=self._state is State.TRANSACTION,
            tls_active=self._tls_active,
            plaintext_ok=self._plaintext_ok(),
        )
        self._send(ok("Capability list follows", lines))  # RFC 2449 §5

    def _cmd_quit(self, command: Command) -> None:
        if self._no_args(command):
            return
        if self._state is State.TRANSACTION:
            # RFC 1939 §6: enter the UPDATE state; the application removes the messages.
            assert self._maildrop is not None
            self._state = State.UPDATE
            self._emit(UpdateRequested(self._maildrop.deleted))
            return
        self._emit(Quit())  # RFC 1939 §4: QUIT in AUTHORIZATION
        self._send(ok(f"{self._settings.hostname} POP3 server signing off"))
        self._close(None)

    # -------------------------------------------------------- AUTHORIZATION

    def _cmd_user(self, command: Command) -> None:
        name = command.arg.strip(" \t")
        if not self._plaintext_ok():
            self._refuse(err(_NEEDS_TLS, replies.AUTH))
        elif not name:
            self._refuse(commands.syntax("USER name"))
        else:
            self._user_name = name
            self._state = State.USER_GIVEN
            self._send(ok("send PASS"))

    def _cmd_pass(self, command: Command) -> None:
        # RFC 1939 §7: the argument is the rest of the line, spaces included.
        user, password = self._user_name, command.arg
        assert user is not None
        self._forget_user()
        if not password:
            self._refuse(commands.syntax("PASS password"))
        else:
            self._emit(LoginAttempt("USER", user, password=password))

    def _cmd_apop(self, command: Command) -> None:
        # RFC 1939 §7: APOP name digest; the name may contain spaces, the digest not.
        parts = command.arg.strip(" \t").rsplit(None, 1)
        if self._settings.apop_timestamp is None:
            self._refuse(err("APOP not available"))
        elif len(parts) != 2 or not commands.valid_digest(parts[1]):
            self._refuse(commands.syntax("APOP name digest"))
        else:
            self._emit(LoginAttempt("APOP", parts[0], digest=parts[1].lower()))

    def _cmd_auth(self, command: Command) -> None:
        parts = command.args
        if not parts:
            # Pre-RFC 5034 clients send a bare AUTH to list the mechanisms.
            self._send(ok("", ("PLAIN",) if self._plaintext_ok() else ()))
        elif len(parts) > 2:
            self._refuse(commands.syntax("AUTH mechanism [initial-response]"))
        elif parts[0].upper() != "PLAIN":
            self._refuse(err("unsupported authentication mechanism"))
        elif not self._plaintext_ok():
            self._refuse(err(_NEEDS_TLS, replies.AUTH))
        elif len(parts) == 2 and parts[1] == "*":
            self._refuse(_CANCELLED)
        else:
            # RFC 5034 §4: "=" stands for an empty initial response.
            initial = None if len(parts) == 1 else "" if parts[1] == "=" else parts[1]
            self._start_sasl(sasl.Plain(), initial)

    # SASL wording (the exchange itself is the shared core's).

    def _sasl_challenge(self, text: str) -> bytes:
        return f"+ {text}\r\n".encode("ascii")  # RFC 5034 §4 continuation

    def _sasl_failure(self, reason: str) -> Reply:
        return err(reason)

    def _sasl_line_too_long(self) -> Reply:
        return err("line too long")

    def _sasl_cancelled(self) -> Reply:
        return _CANCELLED

    def _sasl_credentials(self, mechanism: str, credentials: sasl.Credentials) -> Event:
        c = credentials  # RFC 4616 §2
        return LoginAttempt("PLAIN", c.authcid, c.password, None, c.authzid)

    def _cmd_stls(self, command: Command) -> None:
        if self._tls_active:
            self._refuse(err("TLS already active"))
        elif not self._settings.stls_available:
            self._refuse(err("STLS not available"))
        elif not self._no_args(command):
            self._emit(StartTLS())  # RFC 2595 §4

    # ---------------------------------------------------------- TRANSACTION

    @property
    def _drop(self) -> MaildropMarks:
        assert self._maildrop is not None
        return self._maildrop

    def _message(self, text: str, usage: str) -> int | None:
        """Parse and check a message number; refuse and return None if unusable."""
        number = commands.message_number(text)
        if number is None:
            self._refuse(commands.syntax(usage))
        elif not self._drop.exists(number):
            self._refuse(commands.NO_SUCH_MESSAGE)
        elif self._drop.is_deleted(number):
            self._refuse(err(f"message {number} already deleted"))  # RFC 1939 §5
        else:
            return number
        return None

    def _cmd_stat(self, command: Command) -> None:
        if not self._no_args(command):
            count, octets = self._drop.stat()
            self._send(ok(f"{count} {octets}"))  # RFC 1939 §5 drop listing

    def _cmd_list(self, command: Command) -> None:
        self._listing(command, "LIST [msg]", lambda n: str(self._drop.size(n)))

    def _cmd_uidl(self, command: Command) -> None:
        self._listing(command, "UIDL [msg]", self._drop.uid)  # RFC 1939 §7

    def _listing(self, command: Command, usage: str, value: Callable[[int], str]) -> None:
        parts = command.args
        if len(parts) > 1:
            self._refuse(commands.syntax(usage))
        elif parts:
            number = self._message(parts[0], usage)
            if number is not None:
                self._send(ok(f"{number} {value(number)}"))
        else:
            lines = tuple(f"{n} {value(n)}" for n in self._drop.live())
            count, octets = self._drop.stat()
            head = f"{count} messages ({octets} octets)" if command.verb == "LIST" else ""
            self._send(ok(head, lines))

    def _cmd_retr(self, command: Command) -> None:
        parts = command.args
        if len(parts) != 1:
            self._refuse(commands.syntax("RETR msg"))
            return
        number = self._message(parts[0], "RETR msg")
        if number is not None:
            self._emit(Retrieve(number))

    def _cmd_top(self, command: Command) -> None:
        parts = command.args
        lines = commands.message_number(parts[1]) if len(parts) == 2 else None
        if lines is None:
            self._refuse(commands.syntax("TOP msg n"))  # RFC 1939 §7: n non-negative
            return
        number = self._message(parts[0], "TOP msg n")
        if number is not None:
            self._emit(Retrieve(number, lines))

    def _cmd_dele(self, command: Command) -> None:
        parts = command.args
        if len(parts) != 1:
            self._refuse(commands.syntax("DELE msg"))
            return
        number = self._message(parts[0], "DELE msg")
        if number is not None:
            self._drop.delete(number)
            self._send(ok(f"message {number} deleted"))

    def _cmd_rset(self, command: Command) -> None:
        if not self._no_args(command):
            self._drop.undelete_all()  # RFC 1939 §5
            self._send(ok(self._maildrop_summary()))

    def _cmd_noop(self, command: Command) -> None:
        if not self._no_args(command):
            self._send(ok())


_Handler = Callable[[POP3Engine, Command], None]

# Command dispatch table (legality per state is checked first, in TABLE).
_HANDLERS: Final[dict[str, _Handler]] = {
    "CAPA": POP3Engine._cmd_capa,
    "QUIT": POP3Engine._cmd_quit,
    "USER": POP3Engine._cmd_user,
    "PASS": POP3Engine._cmd_pass,
    "APOP": POP3Engine._cmd_apop,
    "AUTH": POP3Engine._cmd_auth,
    "STLS": POP3Engine._cmd_stls,
    "STAT": POP3Engine._cmd_stat,
    "LIST": POP3Engine._cmd_list,
    "UIDL": POP3Engine._cmd_uidl,
    "RETR": POP3Engine._cmd_retr,
    "TOP": POP3Engine._cmd_top,
    "DELE": POP3Engine._cmd_dele,
    "RSET": POP3Engine._cmd_rset,
    "NOOP": POP3Engine._cmd_noop,
}


def _checked(build: Callable[[], Reply]) -> Reply:
    """Build an answer from application text; invalid text is a usage error."""
    try:
        return build()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
