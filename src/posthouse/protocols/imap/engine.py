"""The IMAP4rev1 server engine: the protocol's state machine (sans-I/O).

`IMAPEngine` turns received octets into `events` and queues responses as octets.  It is
the one place that changes the session's state, and `TABLE` is the one table of which
command is legal in which state (RFC 3501 §3, §6).  Commands are framed and parsed by
`CommandReader` (reader.py), which shares the core's input buffer so that the SASL
exchange and the TLS reset of ``engine_base.EngineCore`` see the same octets.

The engine answers by itself what needs no store: CAPABILITY, NOOP before a mailbox is
selected, LOGOUT, ID (RFC 2971), ENABLE (RFC 5161: CONDSTORE, QRESYNC, UTF8=ACCEPT),
STARTTLS and the plaintext-login policy (LOGINDISABLED, RFC 3501 §6.2.3 / RFC 2595 §3.2),
the SASL steps of AUTHENTICATE PLAIN/LOGIN with SASL-IR (RFC 4959), COMPRESS=DEFLATE
(RFC 4978, done here: zlib is no I/O), IDLE/DONE (RFC 2177) and the continuation
request of a synchronising literal (``+`` or, for a command not legal now, a refusal
through ``decline_literal``, RFC 3501 §7.5).  Everything else is a `Run` decision for
the server, which answers through ``untagged``/``finish``; ``finish`` first sends what
the selected mailbox (`SelectedMailbox`) may tell now: never an EXPUNGE in answer to
FETCH, STORE or SEARCH by sequence numbers (RFC 3501 §7.4.1).
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass, field
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
from posthouse.protocols.imap import reader as imap_reader
from posthouse.protocols.imap.arguments import Authenticate, Compress, Enable, Id, Login
from posthouse.protocols.imap.commands import Command
from posthouse.protocols.imap.events import (
    CompressionStarted,
    ConnectionLost,
    DecisionEvent,
    Event,
    IdleDone,
    IdleStarted,
    LiteralAccepted,
    LoggedOut,
    LoginAttempt,
    PlaintextLoginRefused,
    Run,
    StartTLS,
)
from posthouse.protocols.imap.reader import CommandReader, ContinuationRequest, Fatal, Refused
from posthouse.protocols.imap.response import (
    Atom,
    Code,
    Continuation,
    Data,
    Status,
    StatusName,
    capability_code,
)
from posthouse.protocols.imap.selected import SelectedMailbox

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "TABLE",
    "Ending",
    "IMAPEngine",
    "IMAPSettings",
    "Signal",
    "State",
]

_D = TypeVar("_D", bound=DecisionEvent)


class State(enum.Enum):
    """RFC 3501 §3 connection states."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY: Final = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
_AUTHENTICATED: Final = _ANY | {
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "STATUS",
    "APPEND",
    "NAMESPACE",
    "IDLE",
    "COMPRESS",
    "SETACL",  # RFC 4314 §3
    "DELETEACL",
    "GETACL",
    "LISTRIGHTS",
    "MYRIGHTS",
    "GETQUOTA",  # RFC 9208
    "GETQUOTAROOT",
    "SETQUOTA",
    "RECONSTRUCT",
}
#: The one table of the commands legal in each state (RFC 3501 §6.1-§6.4 and extensions).
#: Commands the grammar does not know never get here: the reader answers them BAD.
TABLE: Final = StateTable(
    {
        State.NOT_AUTHENTICATED: _ANY | {"STARTTLS", "AUTHENTICATE", "LOGIN"},
        State.AUTHENTICATED: _AUTHENTICATED | {"ENABLE"},  # RFC 5161 §3.1: not once selected
        State.SELECTED: _AUTHENTICATED
        | {
            "CHECK",
            "CLOSE",
            "UNSELECT",
            "EXPUNGE",
            "SEARCH",
            "FETCH",
            "STORE",
            "COPY",
            "MOVE",
            "SORT",
            "THREAD",
        },
        State.LOGOUT: frozenset(),
    }
)
#: RFC 3501 §7.4.1: commands during (and in answer to) which no EXPUNGE may be sent.
_SEQUENCE_COMMANDS: Final = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD", "COPY"})
_ENABLEABLE: Final = ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT")
_IDLE_LINE: Final = 1024

_ENDINGS: Final = {
    Ending.TOO_MANY_ERRORS: Status("BYE", "Too many errors"),
    Ending.TOO_MANY_COMMANDS: Status("BYE", "Too many commands"),
    Ending.IDLE: Status("BYE", "Autologout; idle for too long"),  # RFC 3501 §5.4
    Ending.DEADLINE: Status("BYE", "Command timeout"),
    Ending.SHUTDOWN: Status("BYE", "Server shutting down", code=Code("UNAVAILABLE")),
}


def refusal(reason: str) -> Status:
    """The greeting of a connection the connection limits turn away (RFC 3501 §7.1.5)."""
    return Status("BYE", f"{reason}, try again later", code=Code("UNAVAILABLE"))


@dataclass(frozen=True)
class IMAPSettings:
    """Per-connection engine settings."""

    hostname: str = "localhost"
    tls_active: bool = False
    starttls_available: bool = False
    plaintext_login_allowed: bool = False  # LOGIN/AUTHENTICATE without TLS
    max_commands: int = 1_000_000
    max_errors: int = 50
    reader: imap_reader.ReaderLimits = field(default_factory=imap_reader.ReaderLimits)
    server_id: tuple[tuple[str, str], ...] = (("name", "posthouse"),)


class IMAPEngine(EngineCore[Event, DecisionEvent, Status]):
    """One server-side IMAP session."""

    def __init__(self, settings: IMAPSettings) -> None:
        limits = Limits(
            settings.reader.line, settings.reader.line, settings.max_commands, settings.max_errors
        )
        super().__init__(limits, tls_active=settings.tls_active, decision=DecisionEvent)
        self._settings = settings
        self._reader = CommandReader(settings.reader, buffer=self._buf)
        self._state = State.NOT_AUTHENTICATED
        self._user: str | None = None
        self._enabled: set[str] = set()
        self.selected: SelectedMailbox | None = None
        self._current: Command | None = None  # the command being carried out
        self._sasl_tag = ""
        self._idle_tag: str | None = None
        self._inflate: zlib._Decompress | None = None
        self._deflate: zlib._Compress | None = None
        self._plain = b""
        self.tap: Tap | None = None  # the telemetry log (chapter 12.5.5), when one is kept
        self._send(
            Status("OK", f"{settings.hostname} IMAP4rev1 ready", code=self._capability_code())
        )

    # ----------------------------------------------------------------- API

    @property
    def state(self) -> State:
        return self._state

    @property
    def user(self) -> str | None:
        return self._user

    @property
    def enabled(self) -> frozenset[str]:
        return frozenset(self._enabled)

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self._enabled

    @property
    def condstore(self) -> bool:
        """CONDSTORE is in force (enabled, implied by QRESYNC, or by a CONDSTORE use)."""
        return bool({"CONDSTORE", "QRESYNC"} & self._enabled)

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self._enabled

    @property
    def idling(self) -> bool:
        return self._idle_tag is not None

    @property
    def compressed(self) -> bool:
        return self._deflate is not None

    def capabilities(self) -> list[str]:
        """RFC 3501 §7.2.1 capability list for the current state."""
        caps = ["IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
        if self._state is State.NOT_AUTHENTICATED:
            if self._settings.starttls_available and not self._tls_active:
                caps.append("STARTTLS")
            if self._login_allowed():
                caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            else:
                caps.append("LOGINDISABLED")
            return caps
        caps += [
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "STATUS=SIZE",
            "ESEARCH",
            "CONDSTORE",
            "QRESYNC",
            "SORT",
            "SORT=DISPLAY",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "BINARY",
            "MULTIAPPEND",
            "UTF8=ACCEPT",
            "QUOTA",  # RFC 9208 §3.1
            "QUOTA=RES-STORAGE",
            f"APPENDLIMIT={self._settings.reader.append}",
            "ACL",  # RFC 4314 §3; RIGHTS=: the rights beyond RFC 2086's (§2.1.1)
            "RIGHTS=kxte",
        ]
        if self._deflate is None:
            caps.append("COMPRESS=DEFLATE")
        return caps

    def receive_data(self, data: bytes) -> None:
        if self._inflate is not None and data:
            try:
                data = self._inflate.decompress(data)
            except zlib.error:
                self._send(Status("BYE", "Invalid compressed data"))
                self._close("invalid compressed data")
                return
        if self.tap is not None:
            self.tap.received(data)
        super().receive_data(data)

    def data_to_send(self) -> bytes:
        data = super().data_to_send()
        if self.tap is not None and (self._plain or data):
            self.tap.sent(self._plain + data)
        if self._deflate is not None and data:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        plain, self._plain = self._plain, b""
        return plain + data

    # ---------------------------------------------------- decision answers

    def accept_login(self, user: str) -> None:
        """Answer `LoginAttempt`: authenticated; the OK carries the capabilities."""
        event = self._take_pending(LoginAttempt)
        self._user = user
        self._state = State.AUTHENTICATED
        self._send(Status("OK", "Logged in", event.tag, self._capability_code()))

    def reject_login(self, reason: str, code: Code | None = None) -> None:
        event = self._take_pending(LoginAttempt)
        self._send(Status("NO", reason, event.tag, code), error=True)

    def accept_starttls(self) -> None:
        event = self._take_pending(StartTLS)
        self._send(Status("OK", "Begin TLS negotiation now", event.tag))
        self._reader.reset()  # RFC 3501 §6.2.1: nothing pipelined before TLS is read
        self._phase = Phase.TLS_WAIT

    def reject_starttls(self, reason: str) -> None:
        event = self._take_pending(StartTLS)
        self._send(Status("NO", reason, event.tag))

    def untagged(self, *responses: Data | Status) -> None:
        """Queue untagged responses of the command being carried out."""
        for item in responses:
            self._out += item.to_bytes()

    def send_raw(self, data: bytes) -> None:
        """Queue response octets already in wire form (a FETCH response built in pieces)."""
        self._out += data

    def select(self, mailbox: SelectedMailbox) -> None:
        """The running SELECT/EXAMINE succeeded: enter the selected state."""
        self._require_running()
        self.selected = mailbox
        self._state = State.SELECTED

    def use_condstore(self) -> None:
        """RFC 7162 §3.1: a CONDSTORE-aware command (SELECT (CONDSTORE), CHANGEDSINCE,
        UNCHANGEDSINCE, SEARCH MODSEQ) turns CONDSTORE on for the rest of the session."""
        self._enabled.add("CONDSTORE")

    def unselect(self) -> None:
        """Leave the selected state (CLOSE, UNSELECT, a failed SELECT)."""
        self.selected = None
        if self._state is State.SELECTED:
            self._state = State.AUTHENTICATED

    def finish(self, status: StatusName, text: str, code: Code | None = None) -> None:
        """Complete the running command (or IDLE): pending mailbox news, then the tagged
        status response."""
        event = self._pending
        if not isinstance(event, Run | IdleDone):
            raise UsageError("finish() without a running command")
        self._pending = None
        if isinstance(event, Run):
            command = event.command
            tag = command.tag
            self._news(expunges=command.uid or command.name not in _SEQUENCE_COMMANDS)
        else:
            tag = event.tag
            self._news(expunges=True)
        self._current = None
        self._send(Status(status, text, tag, code), error=status == "BAD")

    def announce(self) -> None:
        """Send what the selected mailbox may tell now (NOOP-like; used during IDLE)."""
        self._news(expunges=True)

    def _news(self, *, expunges: bool) -> None:
        if self.selected is not None:
            for item in self.selected.pending_responses(expunges_allowed=expunges, utf8=self.utf8):
                self._out += item.to_bytes()

    def _require_running(self) -> None:
        if not isinstance(self._pending, Run):
            raise UsageError("no command is running")

    def _take_pending(self, kind: type[_D]) -> _D:
        event = self._pending
        if event is None or any(queued is event for queued in self._events):
            raise UsageError("no decision event is waiting for an answer")
        if not isinstance(event, kind):
            raise UsageError(f"the pending event is {type(event).__name__}, not {kind.__name__}")
        self._pending = None
        return event

    # ------------------------------------------------------------ the core's hooks

    def _step(self) -> bool:
        if self._phase is Phase.COMMAND:
            return self._step_reader()
        return super()._step()

    def _step_reader(self) -> bool:
        event = self._reader.next_event()
        if event is imap_reader.NEED_DATA:
            return self._eof and self._on_eof()
        if isinstance(event, ContinuationRequest):
            self._continuation(event)
        elif isinstance(event, Refused):
            self._refuse(event.response)
        elif isinstance(event, Fatal):
            self._send(event.response)
            self._close("literal too large")
        elif isinstance(event, Command):
            self._commands += 1
            if self._commands > self._limits.commands:
                self.end(Ending.TOO_MANY_COMMANDS)
            else:
                self._command(event)
        return True

    def _continuation(self, request: ContinuationRequest) -> None:
        if TABLE.verdict(request.name, self._state) != "ok":
            self._reader.decline_literal()
            self._refuse(Status("BAD", self._wrong_state(request.name), request.tag))
        elif request.name in ("LOGIN", "AUTHENTICATE") and not self._login_allowed():
            self._reader.decline_literal()
            self._refuse(self._privacy_required(request.tag, request.name))
        else:
            self._out += Continuation().to_bytes()
            self._events.append(LiteralAccepted(request.tag, request.name))

    def _line_too_long(self) -> None:  # the reader answers over-long lines itself
        raise AssertionError("unreachable: the command reader frames IMAP lines")

    def _dispatch(self, line: bytes) -> None:
        raise AssertionError("unreachable: the command reader frames IMAP lines")

    def _refuse(self, answer: Status) -> None:
        self._send(answer, error=True)

    def _ending_reply(self, why: Ending) -> Status:
        return _ENDINGS[why]

    def _closing(self, reason: str | None) -> None:
        if reason is not None and self._state is not State.LOGOUT:
            self._events.append(ConnectionLost(reason))
        self._state = State.LOGOUT
        self._idle_tag = None

    def _tls_reset(self) -> None:
        self._reader.reset()
        self._state = State.NOT_AUTHENTICATED

    def _sasl_challenge(self, text: str) -> bytes:
        return Continuation(text).to_bytes()

    def _sasl_failure(self, reason: str) -> Status:
        return Status("BAD", reason, self._sasl_tag)

    def _sasl_line_too_long(self) -> Status:
        return Status("BAD", "SASL response too long", self._sasl_tag)

    def _sasl_cancelled(self) -> Status:
        return Status("BAD", "Authentication cancelled", self._sasl_tag)  # RFC 3501 §6.2.2

    def _sasl_credentials(self, mechanism: str, credentials: sasl.Credentials) -> Event:
        c = credentials
        return LoginAttempt(self._sasl_tag, mechanism, c.authcid, c.password, c.authzid)

    # ---------------------------------------------------------------- IDLE

    def _step_content(self) -> bool:
        """IDLE (RFC 2177): wait for DONE; the server announces news meanwhile."""
        line = self._reader.read_raw_line(_IDLE_LINE)
        if line is None:
            return self._eof and self._on_eof()
        tag = self._idle_tag or "*"
        self._idle_tag = None
        self._phase = Phase.COMMAND
        if isinstance(line, bytes) and line.strip().upper() == b"DONE":
            self._emit(IdleDone(tag))
        else:
            self._refuse(Status("BAD", "Expected DONE to end IDLE", tag))
        return True

    # ------------------------------------------------------------ commands

    def _wrong_state(self, name: str) -> str:
        if self._state is State.NOT_AUTHENTICATED:
            return f"{name} is not allowed before logging in"
        if self._state is State.AUTHENTICATED and name in TABLE.legal[State.SELECTED]:
            return f"{name} needs a selected mailbox"
        if name in TABLE.legal[State.NOT_AUTHENTICATED]:
            return f"{name} is not allowed after logging in"
        if name in TABLE.legal[State.AUTHENTICATED]:
            return f"{name} is only allowed before a mailbox is selected"
        return f"{name} is not allowed now"

    def _login_allowed(self) -> bool:
        return self._tls_active or self._settings.plaintext_login_allowed

    def _privacy_required(self, tag: str, command: str) -> Status:
        self._events.append(PlaintextLoginRefused(command))
        return Status(
            "NO", "Logins over plain text are disabled: use STARTTLS", tag, Code("PRIVACYREQUIRED")
        )

    def _capability_code(self) -> Code:
        return capability_code(self.capabilities())

    def _command(self, command: Command) -> None:
        name, tag = command.name, command.tag
        if TABLE.verdict(name, self._state) != "ok":
            self._refuse(Status("BAD", self._wrong_state(name), tag))
            return
        handler = _ENGINE_COMMANDS.get(name)
        if handler is not None and not (name == "NOOP" and self.selected is not None):
            handler(self, command)
            return
        self._current = command
        self._emit(Run(command))

    def _ok(self, tag: str, text: str, code: Code | None = None) -> None:
        self._send(Status("OK", text, tag, code))

    def _cmd_capability(self, command: Command) -> None:
        self._out += Data(tuple(Atom(c) for c in ("CAPABILITY", *self.capabilities()))).to_bytes()
        self._ok(command.tag, "CAPABILITY completed")

    def _cmd_noop(self, command: Command) -> None:
        self._ok(command.tag, "NOOP completed")

    def _cmd_logout(self, command: Command) -> None:
        self._send(Status("BYE", "Logging out"))
        self._ok(command.tag, "LOGOUT completed")
        self._state = State.LOGOUT
        self._events.append(LoggedOut())
        self._close(None)

    def _cmd_id(self, command: Command) -> None:
        assert isinstance(command.arguments, Id)
        pairs: list[object] = []
        for name, value in self._settings.server_id:
            pairs += [name, value]
        self._out += Data((Atom("ID"), pairs or None)).to_bytes()
        self._ok(command.tag, "ID completed")

    def _cmd_enable(self, command: Command) -> None:
        arguments = command.arguments
        assert isinstance(arguments, Enable)
        newly: list[str] = []
        for capability in arguments.capabilities:
            name = capability.upper()
            if name in _ENABLEABLE and name not in self._enabled:
                self._enabled.add(name)
                newly.append(name)
        if "QRESYNC" in self._enabled:
            self._enabled.add("CONDSTORE")  # RFC 7162 §3.2.3
        self._out += ("* ENABLED" + "".join(f" {n}" for n in newly) + "\r\n").encode("ascii")
        self._ok(command.tag, "ENABLE completed")

    def _cmd_starttls(self, command: Command) -> None:
        if self._tls_active:
            self._refuse(Status("BAD", "TLS is already active", command.tag))
        elif not self._settings.starttls_available:
            self._refuse(Status("NO", "STARTTLS is not available", command.tag))
        else:
            self._emit(StartTLS(command.tag))

    def _cmd_login(self, command: Command) -> None:
        arguments = command.arguments
        assert isinstance(arguments, Login)
        if not self._login_allowed():
            self._refuse(self._privacy_required(command.tag, command.name))
            return
        self._emit(LoginAttempt(command.tag, "LOGIN", arguments.user, arguments.password))

    def _cmd_authenticate(self, command: Command) -> None:
        arguments = command.arguments
        assert isinstance(arguments, Authenticate)
        if not self._login_allowed():
            self._refuse(self._privacy_required(command.tag, command.name))
            return
        mechanism = sasl.create(arguments.mechanism.upper())
        if mechanism is None:
            self._refuse(
                Status("NO", f"Mechanism {arguments.mechanism} is not supported", command.tag)
            )
            return
        self._sasl_tag = command.tag
        self._start_sasl(mechanism, arguments.initial)

    def _cmd_compress(self, command: Command) -> None:
        arguments = command.arguments
        assert isinstance(arguments, Compress)
        if self._deflate is not None:
            self._send(
                Status(
                    "NO", "Compression is already active", command.tag, Code("COMPRESSIONACTIVE")
                )
            )
            return
        if arguments.mechanism.upper() != "DEFLATE":
            self._refuse(Status("BAD", f"Unknown compression {arguments.mechanism}", command.tag))
            return
        self._ok(command.tag, "DEFLATE active")
        # RFC 4978 §3: compression starts right after the OK (and, inbound, right after
        # the CRLF of the command): what is already buffered is compressed data.
        self._plain = bytes(self._out)  # sent as it is, before the compressed stream
        self._out.clear()
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        rest = self._reader.take_buffered()
        self._events.append(CompressionStarted())
        if rest:
            self.receive_data(rest)

    def _cmd_idle(self, command: Command) -> None:
        self._idle_tag = command.tag
        self._phase = Phase.CONTENT
        self._out += Continuation("idling").to_bytes()
        self._news(expunges=True)
        self._events.append(IdleStarted(command.tag))


_ENGINE_COMMANDS: Final = {
    "CAPABILITY": IMAPEngine._cmd_capability,
    "NOOP": IMAPEngine._cmd_noop,
    "LOGOUT": IMAPEngine._cmd_logout,
    "ID": IMAPEngine._cmd_id,
    "ENABLE": IMAPEngine._cmd_enable,
    "STARTTLS": IMAPEngine._cmd_starttls,
    "LOGIN": IMAPEngine._cmd_login,
    "AUTHENTICATE": IMAPEngine._cmd_authenticate,
    "COMPRESS": IMAPEngine._cmd_compress,
    "IDLE": IMAPEngine._cmd_idle,
}
