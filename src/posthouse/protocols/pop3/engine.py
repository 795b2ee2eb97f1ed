"""The POP3 server engine: command interpretation (sans-I/O).

`POP3Engine` turns received octets into `events` and queues responses as
octets to send.  This module interprets command lines (RFC 1939 §3-§7,
RFC 2449, RFC 2595 §4, RFC 5034 §4) and dispatches them through one table;
the legal commands per state live in commands.py and the session machinery
(pausing, decision answers, output, content streaming) in core.py.

The engine answers STAT, LIST, UIDL, DELE, RSET, NOOP and CAPA itself from
the `MaildropInfo` given to ``accept_login``; policy (passwords, locking,
reading and deleting messages) belongs to the application, which answers
decision events (see events.py).  Pipelined commands (RFC 2449 §6.6) are
processed strictly in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from posthouse.protocols import sasl
from posthouse.protocols.engine_base import NEED_DATA, PAUSED, Signal
from posthouse.protocols.pop3 import commands, replies
from posthouse.protocols.pop3.commands import Command, State
from posthouse.protocols.pop3.core import Phase, SessionCore
from posthouse.protocols.pop3.events import LoginAttempt, Quit, Retrieve, StartTLS, UpdateRequested
from posthouse.protocols.pop3.maildrop import Maildrop, MaildropInfo
from posthouse.protocols.pop3.replies import Reply, err, ok
from posthouse.protocols.pop3.settings import SASL_LINE_LIMIT, Settings

__all__ = ["NEED_DATA", "PAUSED", "MaildropInfo", "POP3Engine", "Settings", "Signal", "State"]

_BAD_CHARS: Final = err("invalid characters in command")
_CANCELLED: Final = err("authentication cancelled")  # RFC 5034 §4
_NEEDS_TLS: Final = "plaintext authentication requires TLS"  # RFC 2595 §2.3


class POP3Engine(SessionCore):
    """One server-side POP3 session."""

    # ------------------------------------------------------------ commands

    def _step_command(self) -> bool:
        # AUTH lines may exceed max_line (RFC 5034 §4); others are checked below.
        line = self._buf.read_line(max(self._settings.max_line, SASL_LINE_LIMIT))
        if line is None:
            return self._eof and self._on_eof()
        self._commands += 1
        if self._commands > self._settings.max_commands:
            self._shutdown("too many commands")
        elif not isinstance(line, bytes):
            self._forget_user()
            self._refuse(commands.LINE_TOO_LONG)
        else:
            self._dispatch(line)
        return True

    def _dispatch(self, line: bytes) -> None:
        command = self._parse(line)
        # RFC 1939 §7: PASS is only valid immediately after a successful USER.
        if not (isinstance(command, Command) and command.verb == "PASS"):
            self._forget_user()
        if isinstance(command, Reply):
            self._refuse(command)
        elif command.verb not in commands.LEGAL[self._state]:
            self._refuse(commands.WRONG_STATE)
        else:
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
        if command is None or command.verb not in commands.KNOWN:
            return commands.UNKNOWN
        return command

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
            state=self._state,
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
            mechanism = sasl.Plain()
            self._sasl_result(mechanism, mechanism.start(initial))

    def _sasl_result(self, mechanism: sasl.Mechanism, step: sasl.Step) -> None:
        if isinstance(step, sasl.Challenge):
            self._sasl = mechanism
            self._phase = Phase.SASL
            self._out += f"+ {step.text}\r\n".encode("ascii")  # RFC 5034 §4 continuation
            return
        self._sasl = None
        self._phase = Phase.COMMAND
        if isinstance(step, sasl.Failure):
            self._refuse(err(step.reason))
        else:
            event = LoginAttempt("PLAIN", step.authcid, step.password, None, step.authzid)
            self._emit(event)  # RFC 4616 §2

    def _step_sasl(self) -> bool:
        mechanism = self._sasl
        assert mechanism is not None
        line = self._buf.read_line(SASL_LINE_LIMIT)
        if line is None:
            return self._eof and self._on_eof()
        if not isinstance(line, bytes):  # TOO_LONG
            self._sasl_result(mechanism, sasl.Failure("line too long"))
        elif line.strip(b" \t") == b"*":
            self._sasl = None
            self._phase = Phase.COMMAND
            self._refuse(_CANCELLED)
        else:
            self._sasl_result(mechanism, mechanism.step(line.decode("latin-1").strip(" \t")))
        return True

    def _cmd_stls(self, command: Command) -> None:
        if self._tls_active:
            self._refuse(err("TLS already active"))
        elif not self._settings.stls_available:
            self._refuse(err("STLS not available"))
        elif not self._no_args(command):
            self._emit(StartTLS())  # RFC 2595 §4

    # ---------------------------------------------------------- TRANSACTION

    @property
    def _drop(self) -> Maildrop:
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

# Command dispatch table (legality per state is checked first, in commands.LEGAL).
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
