"""The SMTP / submission / LMTP server engine: command interpretation (sans-I/O).

`SMTPEngine` turns received octets into `events` and queues `replies` as
octets to send.  This module interprets command lines (RFC 5321 §4.1.1,
RFC 2033, RFC 3030, RFC 3207, RFC 4954) and dispatches them through one
table; sequencing rules live in commands.py and the session machinery
(pausing, output, content streaming) in core.py.  Policy (accept this sender,
recipient, password, message) belongs to the application, which answers
decision events with `SMTPEngine.respond`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from posthouse.protocols import sasl
from posthouse.protocols.engine_base import NEED_DATA, PAUSED, Signal
from posthouse.protocols.smtp import commands, parse
from posthouse.protocols.smtp.body import DotReader
from posthouse.protocols.smtp.commands import Session, reply
from posthouse.protocols.smtp.core import Phase, SessionCore
from posthouse.protocols.smtp.events import AuthAttempt, Hello, Quit, Reset, StartTLS
from posthouse.protocols.smtp.replies import Reply
from posthouse.protocols.smtp.settings import AUTH_LINE_LIMIT, Mode, Settings

__all__ = ["NEED_DATA", "PAUSED", "Mode", "SMTPEngine", "Settings", "Signal"]

_OK: Final = reply(250, "2.0.0", "Ok")
_BAD_CHARS: Final = reply(500, "5.5.2", "Invalid characters in command")
_UNKNOWN: Final = reply(500, "5.5.1", "Unrecognized command")
_CANCELLED: Final = reply(501, "5.0.0", "Authentication cancelled")  # RFC 4954 §4


class SMTPEngine(SessionCore):
    """One server-side SMTP, submission or LMTP session."""

    # ------------------------------------------------------------ commands

    def _step_command(self) -> bool:
        # AUTH lines may be up to 12288 octets (RFC 4954 §4); others are checked below.
        line = self._buf.read_line(max(self._settings.max_command_line, AUTH_LINE_LIMIT))
        if line is None:
            return self._eof and self._on_eof()
        self._commands += 1
        if self._commands > self._settings.max_commands:
            self._shutdown("Too many commands")
        elif not isinstance(line, bytes):
            self._refuse(commands.LINE_TOO_LONG)  # RFC 5321 §4.5.3.1.4
        else:
            self._dispatch(line)
        return True

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
        elif command.verb not in commands.KNOWN[self._settings.mode]:
            self._refuse(_UNKNOWN)
        elif command.verb not in commands.LEGAL[self._session]:
            answer = commands.sequence_error(command.verb, self._session)
            if command.verb == "BDAT":
                self._start_chunk(command.arg, reject=answer)  # its octets follow anyway
            else:
                self._refuse(answer)
        else:
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
        verbs = " ".join(sorted(commands.KNOWN[self._settings.mode]))
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
        self._close()

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
            self._phase = Phase.DATA

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
            self._sasl_result(mechanism, mechanism.start(initial))

    def _sasl_result(self, mechanism: sasl.Mechanism, step: sasl.Step) -> None:
        if isinstance(step, sasl.Challenge):
            self._sasl = mechanism
            self._phase = Phase.SASL
            self._send(reply(334, None, step.text))
            return
        self._sasl = None
        self._phase = Phase.COMMAND
        if isinstance(step, sasl.Failure):
            self._refuse(reply(501, "5.5.2", step.reason))
        else:
            self._emit(AuthAttempt(mechanism.name, step.authzid, step.authcid, step.password))

    def _step_sasl(self) -> bool:
        mechanism = self._sasl
        assert mechanism is not None
        line = self._buf.read_line(max(self._settings.max_command_line, AUTH_LINE_LIMIT))
        if line is None:
            return self._eof and self._on_eof()
        if not isinstance(line, bytes):  # TOO_LONG
            self._sasl_result(mechanism, sasl.Failure("Line too long"))
        elif line.strip(b" \t") == b"*":
            self._sasl = None
            self._phase = Phase.COMMAND
            self._refuse(_CANCELLED)
        else:
            self._sasl_result(mechanism, mechanism.step(line.decode("latin-1").strip(" \t")))
        return True


_Handler = Callable[[SMTPEngine, str, str], None]

# Command dispatch table (sequencing is checked first, in commands.LEGAL).
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
