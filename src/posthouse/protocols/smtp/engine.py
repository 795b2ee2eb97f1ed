"""The SMTP / submission / LMTP server engine: the protocol's state machine (sans-I/O).

`SMTPEngine` turns received octets into `events` and queues replies as octets to send.
This module is the one place that changes the session's state: it interprets command
lines (RFC 5321 §4.1.1, RFC 2033, RFC 3030, RFC 3207, RFC 4954) through one dispatch
table, after the table of legal commands per `Session` state below (``TABLES``, one per
mode, and the 503 texts); it
answers the application's decisions (``respond``, ``respond_per_recipient``), resets on
STARTTLS (RFC 3207 §4.2), enforces the limits that close a session (RFC 5321 §3.8) and
streams DATA (body.py) and BDAT (RFC 3030) content into a `Transaction`.  The I/O-facing
API, the command-line and SASL reading and the session endings are the shared core in
``protocols/engine_base.py``.  Policy (accept this sender, recipient, password, message)
belongs to the application, which answers decision events with `SMTPEngine.respond`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

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
)
from posthouse.protocols.errors import UsageError
from posthouse.protocols.smtp import commands, parse
from posthouse.protocols.smtp.body import DotReader
from posthouse.protocols.smtp.commands import reply
from posthouse.protocols.smtp.events import (
    AuthAttempt,
    DecisionEvent,
    Event,
    Hello,
    MailFrom,
    MessageEnd,
    Quit,
    RcptTo,
    Reset,
    StartTLS,
)
from posthouse.protocols.smtp.replies import Reply
from posthouse.protocols.smtp.settings import AUTH_LINE_LIMIT, Mode, SMTPSettings
from posthouse.protocols.smtp.transaction import Transaction

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "TABLES",
    "Ending",
    "Mode",
    "SMTPEngine",
    "SMTPSettings",
    "Session",
    "Signal",
]


class Session(enum.Enum):
    """Where the session is in the command sequence."""

    FRESH = "fresh"  # no HELO/EHLO/LHLO yet
    READY = "ready"  # greeted, no transaction
    MAIL = "mail"  # MAIL accepted; RCPT, DATA or BDAT may follow
    BDAT = "bdat"  # BDAT chunks being received (RFC 3030 §2)


_ANYTIME: Final = frozenset({"NOOP", "RSET", "QUIT", "HELP", "VRFY", "EXPN"})
# RFC 2033 §4.1: LHLO replaces HELO/EHLO in LMTP.
_GREETINGS: Final[dict[Mode, frozenset[str]]] = {
    "smtp": frozenset({"HELO", "EHLO"}),
    "submission": frozenset({"HELO", "EHLO"}),
    "lmtp": frozenset({"LHLO"}),
}


def _table(greetings: frozenset[str]) -> StateTable[Session]:
    anytime = _ANYTIME | greetings
    return StateTable(
        {
            Session.FRESH: anytime,
            Session.READY: anytime | {"MAIL", "AUTH", "STARTTLS"},
            Session.MAIL: anytime | {"RCPT", "DATA", "BDAT"},
            Session.BDAT: anytime | {"BDAT"},
        }
    )


# The one table of legal commands per session state, per mode (RFC 5321 §4.1.4, RFC 3030
# §2, RFC 4954 §4).  An unknown verb is answered 500 5.5.1, a known one not legal in the
# current state 503 5.5.1.
TABLES: Final[dict[Mode, StateTable[Session]]] = {
    mode: _table(greetings) for mode, greetings in _GREETINGS.items()
}

_IN_TXN: Final = "not allowed during a mail transaction"
# Texts for the 503 replies; anything missing gets "Bad sequence of commands".
_SEQUENCE_TEXT: Final[dict[tuple[str, Session], str]] = {
    ("MAIL", Session.FRESH): "Send HELO/EHLO first",
    ("MAIL", Session.MAIL): "Nested MAIL command",
    ("MAIL", Session.BDAT): "Nested MAIL command",
    ("RCPT", Session.FRESH): "Need MAIL command",
    ("RCPT", Session.READY): "Need MAIL command",
    ("RCPT", Session.BDAT): "RCPT not allowed during BDAT",
    ("DATA", Session.FRESH): "Need MAIL command",
    ("DATA", Session.READY): "Need MAIL command",
    ("DATA", Session.BDAT): "DATA cannot be mixed with BDAT",  # RFC 3030 §2
    ("BDAT", Session.FRESH): "Need MAIL command",
    ("BDAT", Session.READY): "Need MAIL command",
    ("AUTH", Session.FRESH): "Send EHLO first",
    ("AUTH", Session.MAIL): "AUTH " + _IN_TXN,  # RFC 4954 §4
    ("AUTH", Session.BDAT): "AUTH " + _IN_TXN,
    ("STARTTLS", Session.FRESH): "Send EHLO first",
    ("STARTTLS", Session.MAIL): "STARTTLS " + _IN_TXN,
    ("STARTTLS", Session.BDAT): "STARTTLS " + _IN_TXN,
}


def _sequence_error(verb: str, session: Session) -> Reply:
    return reply(503, "5.5.1", _SEQUENCE_TEXT.get((verb, session), "Bad sequence of commands"))


_OK: Final = reply(250, "2.0.0", "Ok")
_BAD_CHARS: Final = reply(500, "5.5.2", "Invalid characters in command")
_UNKNOWN: Final = reply(500, "5.5.1", "Unrecognized command")
_CANCELLED: Final = reply(501, "5.0.0", "Authentication cancelled")  # RFC 4954 §4
# RFC 5321 §3.8: the server ends the session with 421 (the text follows the host name).
_ENDINGS: Final = {
    Ending.TOO_MANY_ERRORS: ("4.7.0", "Too many errors, closing connection"),
    Ending.TOO_MANY_COMMANDS: ("4.7.0", "Too many commands, closing connection"),
    Ending.IDLE: ("4.4.2", "Timeout, closing"),
    Ending.DEADLINE: ("4.4.2", "Timeout, closing"),
    Ending.SHUTDOWN: ("4.3.2", "Service shutting down"),
}


def refusal(reason: str) -> Reply:
    """The reply to a client the connection limits turn away (no session is started)."""
    return reply(421, "4.7.0", f"{reason}, try again later")


@dataclass
class _Chunk:
    size: int
    remaining: int
    last: bool
    reject: Reply | None  # BDAT refused: consume the octets, then send this


class SMTPEngine(EngineCore[Event, DecisionEvent, Reply]):
    """One server-side SMTP, submission or LMTP session."""

    def __init__(self, settings: SMTPSettings) -> None:
        # AUTH lines may be up to 12288 octets (RFC 4954 §4); others are checked in _dispatch.
        line = max(settings.max_command_line, AUTH_LINE_LIMIT)
        limits = Limits(line, line, settings.max_commands, settings.max_errors)
        super().__init__(limits, tls_active=settings.tls_active, decision=DecisionEvent)
        self._settings = settings
        self._table = TABLES[settings.mode]
        self._session = Session.FRESH
        self._helo_name: str | None = None
        self._esmtp = False
        self._authenticated_as: str | None = None
        self._txn: Transaction | None = None
        self._dot: DotReader | None = None
        self._chunk: _Chunk | None = None
        # RFC 5321 §4.3.1 greeting; no enhanced code (RFC 2034 §3).
        self._send(reply(220, None, f"{settings.hostname} {settings.banner}"))

    # ----------------------------------------------------------------- API

    @property
    def settings(self) -> SMTPSettings:
        return self._settings

    @property
    def authenticated_as(self) -> str | None:
        return self._authenticated_as

    @property
    def helo_name(self) -> str | None:
        return self._helo_name

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

    def _refuse(self, answer: Reply) -> None:
        """Send an engine-generated refusal; 5xx ones count as errors."""
        self._send(answer, error=answer.permanent)

    def _ending_reply(self, why: Ending) -> Reply:
        enhanced, text = _ENDINGS[why]
        return reply(421, enhanced, f"{self._settings.hostname} {text}")

    def _closing(self, reason: str | None) -> None:
        if reason is not None:
            self._abort_message(reason)
        self._dot = self._chunk = None

    def _tls_reset(self) -> None:
        # RFC 3207 §4.2: forget everything learnt from the client before TLS.
        self._helo_name = None
        self._esmtp = False
        self._authenticated_as = None
        self._txn = None
        self._session = Session.FRESH

    def _abort_message(self, reason: str) -> None:
        """Emit MessageAborted if content is in progress; drop the transaction."""
        if self._txn is not None:
            self._txn.abort(reason)
        self._end_transaction()

    def _end_transaction(self) -> None:
        self._txn = None
        if self._session is not Session.FRESH:
            self._session = Session.READY

    # ------------------------------------------------------------- content

    def _step_content(self) -> bool:
        if self._dot is not None:
            return self._step_data(self._dot)
        return self._step_chunk()

    def _step_data(self, reader: DotReader) -> bool:
        txn = self._txn
        assert txn is not None
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
        self._phase = Phase.CONTENT
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

    # ------------------------------------------------------------ commands

    def _line_too_long(self) -> None:
        self._refuse(commands.LINE_TOO_LONG)  # RFC 5321 §4.5.3.1.4

    def _dispatch(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse(_BAD_CHARS)
            return
        command = parse.split_command(text)
        if parse.has_control_chars(text):
            self._refuse(_BAD_CHARS)
        elif command is None:
            blank = not text.strip(" \t")
            self._refuse(reply(500, "5.5.2", "Empty command") if blank else _UNKNOWN)
        elif len(line) + 2 > self._settings.max_command_line and command.verb != "AUTH":
            self._refuse(commands.LINE_TOO_LONG)
        else:
            match self._table.verdict(command.verb, self._session):
                case "unknown":
                    self._refuse(_UNKNOWN)
                case "out of sequence":
                    answer = _sequence_error(command.verb, self._session)
                    if command.verb == "BDAT":
                        self._start_chunk(command.arg, reject=answer)  # its octets follow
                    else:
                        self._refuse(answer)
                case "ok":
                    _HANDLERS[command.verb](self, command.verb, command.arg)

    def _cmd_hello(self, verb: str, arg: str) -> None:
        # RFC 5321 §4.1.1.1: HELO/EHLO SP ( Domain / address-literal )
        domain = arg.strip(" \t")
        if not domain or " " in domain or "\t" in domain or len(domain) > 255:
            self._refuse(reply(501, "5.5.4", f"Syntax: {verb} hostname"))
            return
        # RFC 5321 §4.1.4: a greeting in mid-session also resets the transaction.
        self._abort_message(f"transaction reset by {verb}")
        self._helo_name = domain
        self._esmtp = verb != "HELO"
        self._session = Session.READY
        self._emit(Hello(verb, domain))
        if verb == "HELO":
            self._send(reply(250, None, self._settings.hostname))
        else:
            offered = self._auth_offered() and self._authenticated_as is None
            lines = commands.ehlo_lines(
                self._settings, tls_active=self._tls_active, auth_offered=offered
            )
            self._send(Reply(250, None, lines))

    def _auth_offered(self) -> bool:
        s = self._settings
        return bool(s.auth_mechanisms) and (self._tls_active or s.auth_allowed_without_tls)

    def _cmd_mail(self, verb: str, arg: str) -> None:
        if self._settings.mode == "submission" and self._authenticated_as is None:
            self._refuse(reply(530, "5.7.0", "Authentication required"))  # RFC 4954 §6
            return
        result = commands.check_mail(arg, self._settings, esmtp=self._esmtp)
        if isinstance(result, Reply):
            self._refuse(result)
        else:
            self._emit(result)

    def _cmd_rcpt(self, verb: str, arg: str) -> None:
        txn = self._txn
        assert txn is not None
        result = commands.check_rcpt(
            arg, self._settings, smtputf8=txn.smtputf8, accepted=txn.accepted
        )
        if isinstance(result, Reply):
            self._refuse(result)
        else:
            self._emit(result)

    def _cmd_rset(self, verb: str, arg: str) -> None:
        if arg:
            self._refuse(reply(501, "5.5.4", "Syntax: RSET"))
            return
        self._abort_message("transaction reset by RSET")
        self._emit(Reset())
        self._send(_OK)

    def _cmd_noop(self, verb: str, arg: str) -> None:
        self._send(_OK)  # RFC 5321 §4.1.1.9: any argument is ignored

    def _cmd_help(self, verb: str, arg: str) -> None:
        verbs = " ".join(sorted(self._table.known))
        self._send(Reply(214, "2.0.0", (f"Commands: {verbs}", "See RFC 5321")))

    def _cmd_vrfy(self, verb: str, arg: str) -> None:
        if not arg:
            self._refuse(reply(501, "5.5.4", "Syntax: VRFY address"))
        else:  # RFC 5321 §3.5.3: 252 when the server will not verify
            self._send(reply(252, "2.5.0", "Cannot VRFY user, but will accept message"))

    def _cmd_expn(self, verb: str, arg: str) -> None:
        self._refuse(reply(502, "5.5.1", "EXPN not available"))  # RFC 5321 §3.5.2

    def _cmd_quit(self, verb: str, arg: str) -> None:
        if arg:
            self._refuse(reply(501, "5.5.4", "Syntax: QUIT"))
            return
        self._abort_message("session ended by QUIT")
        self._emit(Quit())
        self._send(reply(221, "2.0.0", f"{self._settings.hostname} closing connection"))
        self._close(None)

    def _cmd_starttls(self, verb: str, arg: str) -> None:
        if self._tls_active:
            self._refuse(reply(503, "5.5.1", "TLS already active"))
        elif not self._settings.starttls_available:
            self._refuse(reply(502, "5.5.1", "STARTTLS not available"))
        elif arg:
            self._refuse(reply(501, "5.5.4", "Syntax: STARTTLS"))  # RFC 3207 §4
        elif not self._esmtp:
            self._refuse(reply(503, "5.5.1", "Send EHLO first"))
        else:
            self._emit(StartTLS())

    def _cmd_data(self, verb: str, arg: str) -> None:
        txn = self._txn
        assert txn is not None
        if arg:
            self._refuse(reply(501, "5.5.4", "Syntax: DATA"))
        elif txn.accepted == 0:
            self._refuse(reply(554, "5.5.1", "No valid recipients"))  # RFC 5321 §3.3
        else:
            txn.start_message()
            self._send(reply(354, None, "End data with <CR><LF>.<CR><LF>"))
            self._dot = DotReader(self._settings.max_data_line)
            self._phase = Phase.CONTENT

    def _cmd_bdat(self, verb: str, arg: str) -> None:
        txn = self._txn
        assert txn is not None
        if txn.accepted == 0:
            self._start_chunk(arg, reject=reply(554, "5.5.1", "No valid recipients"))
        else:
            self._start_chunk(arg, reject=None)

    # ---------------------------------------------------------------- AUTH

    def _cmd_auth(self, verb: str, arg: str) -> None:
        s = self._settings
        parts = arg.split()
        name = parts[0].upper() if parts else ""
        mechanism = sasl.create(name) if name in s.auth_mechanisms else None
        if not self._esmtp:
            self._refuse(reply(503, "5.5.1", "Send EHLO first"))
        elif self._authenticated_as is not None:
            self._refuse(reply(503, "5.5.1", "Already authenticated"))  # RFC 4954 §4
        elif not s.auth_mechanisms:
            self._refuse(reply(502, "5.5.1", "AUTH not available"))
        elif not self._auth_offered():  # RFC 4954 §6
            text = "Encryption required for requested authentication mechanism"
            self._refuse(reply(538, "5.7.11", text))
        elif not 1 <= len(parts) <= 2:
            self._refuse(reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"))
        elif mechanism is None:
            self._refuse(reply(504, "5.5.4", "Unrecognized authentication type"))  # RFC 4954 §4
        elif parts[-1] == "*" and len(parts) == 2:
            self._refuse(_CANCELLED)
        else:
            # RFC 4954 §4: "=" stands for an empty initial response.
            initial = None if len(parts) == 1 else "" if parts[1] == "=" else parts[1]
            self._start_sasl(mechanism, initial)

    # SASL wording (the exchange itself is the shared core's).

    def _sasl_challenge(self, text: str) -> bytes:
        return reply(334, None, text).to_bytes()

    def _sasl_failure(self, reason: str) -> Reply:
        return reply(501, "5.5.2", reason)

    def _sasl_line_too_long(self) -> Reply:
        return reply(501, "5.5.2", "Line too long")

    def _sasl_cancelled(self) -> Reply:
        return _CANCELLED

    def _sasl_credentials(self, mechanism: str, credentials: sasl.Credentials) -> Event:
        c = credentials
        return AuthAttempt(mechanism, c.authzid, c.authcid, c.password)


_Handler = Callable[[SMTPEngine, str, str], None]

# Command dispatch table (sequencing is checked first, in TABLES).
_HANDLERS: Final[dict[str, _Handler]] = {
    "HELO": SMTPEngine._cmd_hello,
    "EHLO": SMTPEngine._cmd_hello,
    "LHLO": SMTPEngine._cmd_hello,
    "MAIL": SMTPEngine._cmd_mail,
    "RCPT": SMTPEngine._cmd_rcpt,
    "DATA": SMTPEngine._cmd_data,
    "BDAT": SMTPEngine._cmd_bdat,
    "RSET": SMTPEngine._cmd_rset,
    "NOOP": SMTPEngine._cmd_noop,
    "HELP": SMTPEngine._cmd_help,
    "VRFY": SMTPEngine._cmd_vrfy,
    "EXPN": SMTPEngine._cmd_expn,
    "QUIT": SMTPEngine._cmd_quit,
    "AUTH": SMTPEngine._cmd_auth,
    "STARTTLS": SMTPEngine._cmd_starttls,
}
