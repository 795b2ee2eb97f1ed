"""Argument checks for the SMTP engine.

Holds the pure checks that turn MAIL / RCPT / BDAT arguments into an event or a refusal
`Reply`, and the EHLO response.  Which commands are legal when is the state machine's,
in engine.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from posthouse.protocols.smtp import parse
from posthouse.protocols.smtp.events import MailFrom, RcptTo
from posthouse.protocols.smtp.replies import Reply
from posthouse.protocols.smtp.settings import SMTPSettings

# ESMTP parameters we implement (and advertise), per command.
MAIL_PARAMS: Final = frozenset({"SIZE", "BODY", "SMTPUTF8", "AUTH"})
RCPT_PARAMS: Final[frozenset[str]] = frozenset()
_BODY_TYPES: Final = frozenset({"7BIT", "8BITMIME"})  # RFC 6152; BINARYMIME not offered


def reply(code: int, enhanced: str | None, text: str) -> Reply:
    """Single-line reply shorthand."""
    return Reply(code, enhanced, (text,))


LINE_TOO_LONG: Final = reply(500, "5.5.2", "Line too long")  # RFC 5321 §4.5.3.1.9
_NON_ASCII: Final = reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")  # RFC 6531 §3.5
_TOO_BIG: Final = reply(552, "5.3.4", "Message size exceeds fixed maximum message size")


def ehlo_lines(settings: SMTPSettings, *, tls_active: bool, auth_offered: bool) -> tuple[str, ...]:
    """The EHLO/LHLO response text (RFC 5321 §4.1.1.1; no enhanced codes, RFC 2034 §3)."""
    ext = [settings.hostname, "PIPELINING", f"SIZE {settings.max_message_size}", "8BITMIME"]
    ext += ["ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"]
    if settings.starttls_available and not tls_active:
        ext.append("STARTTLS")
    if auth_offered:
        ext.append("AUTH " + " ".join(settings.auth_mechanisms))
    ext.append("HELP")
    return tuple(ext)


def check_mail(arg: str, settings: SMTPSettings, *, esmtp: bool) -> MailFrom | Reply:
    """RFC 5321 §4.1.1.2 MAIL FROM:<reverse-path> [SP Mail-parameters]."""
    try:
        parsed = parse.parse_path_argument(arg, "FROM", null_allowed=True, postmaster_allowed=False)
    except parse.PathTooLongError:
        return reply(553, "5.1.7", "Sender path too long")  # RFC 5321 §4.5.3.1.3
    except parse.AddressSyntaxError:
        return reply(553, "5.1.7", "Bad sender address syntax")
    except parse.CommandSyntaxError:
        return reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
    params = parsed.params
    if params and not esmtp:
        # Parameters are only valid once EHLO advertised them (RFC 5321 §4.1.1.2).
        return reply(555, "5.5.4", "Parameters not allowed after HELO")
    for key in params:
        if key not in MAIL_PARAMS:
            return reply(555, "5.5.4", f"Unsupported parameter {key}")
    size: int | None = None
    if "SIZE" in params:
        value = params["SIZE"] or ""
        if not (value.isascii() and value.isdigit() and len(value) <= 20):
            return reply(501, "5.5.4", "Bad SIZE parameter")
        size = int(value)
        if size > settings.max_message_size:
            return _TOO_BIG  # RFC 1870 §6.1
    body: str | None = None
    if "BODY" in params:
        body = (params["BODY"] or "").upper()
        if body not in _BODY_TYPES:
            return reply(501, "5.5.4", "Unsupported BODY type")
    smtputf8 = "SMTPUTF8" in params
    if smtputf8 and params["SMTPUTF8"] is not None:
        return reply(501, "5.5.4", "SMTPUTF8 takes no value")  # RFC 6531 §3.4
    if "AUTH" in params and not params["AUTH"]:
        return reply(501, "5.5.4", "AUTH parameter needs a value")  # RFC 4954 §5
    values_ascii = all(v is None or v.isascii() for v in params.values())
    if not smtputf8 and not (parsed.address.isascii() and values_ascii):
        return _NON_ASCII
    return MailFrom(parsed.address, MappingProxyType(params), size, body, smtputf8)


def check_rcpt(
    arg: str, settings: SMTPSettings, *, smtputf8: bool, accepted: int
) -> RcptTo | Reply:
    """RFC 5321 §4.1.1.3 RCPT TO:<forward-path> [SP Rcpt-parameters].

    In LMTP a bare local part (``<user>``, ``<user+folder>``) is taken too, as Cyrus's lmtpd
    takes it: RFC 2033 §3 has LMTP carry mail to final delivery for the domains the host
    serves, so a name without a domain is one of its users (the server qualifies it)."""
    try:
        parsed = parse.parse_path_argument(
            arg,
            "TO",
            null_allowed=False,
            postmaster_allowed=True,
            local_part_allowed=settings.mode == "lmtp",
        )
    except parse.PathTooLongError:
        return reply(501, "5.1.3", "Recipient path too long")  # RFC 5321 §4.5.3.1.3
    except parse.AddressSyntaxError:
        return reply(501, "5.1.3", "Bad recipient address syntax")
    except parse.CommandSyntaxError:
        return reply(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
    for key in parsed.params:
        if key not in RCPT_PARAMS:
            return reply(555, "5.5.4", f"Unsupported parameter {key}")
    if not smtputf8 and not parsed.address.isascii():
        return _NON_ASCII
    if accepted >= settings.max_recipients:
        return reply(452, "4.5.3", "Too many recipients")  # RFC 5321 §4.5.3.1.10
    return RcptTo(parsed.address, MappingProxyType(parsed.params))


@dataclass(frozen=True)
class BdatArgs:
    size: int
    last: bool


def check_bdat(arg: str) -> BdatArgs | Reply:
    """RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]."""
    parts = arg.split()
    if (
        not 1 <= len(parts) <= 2
        or not (parts[0].isascii() and parts[0].isdigit() and len(parts[0]) <= 20)
        or (len(parts) == 2 and parts[1].upper() != "LAST")
    ):
        return reply(501, "5.5.4", "Syntax: BDAT size [LAST]")
    return BdatArgs(int(parts[0]), len(parts) == 2)
