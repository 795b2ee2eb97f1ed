"""Whether a login is good for a protocol, given the user's mail service type.

This is the one place that applies the service types of §12.4.4 and §12.5.2
to a login.  :class:`CredentialChecker` answers a :class:`LoginResult` for a
password login (POP3 USER/PASS, IMAP LOGIN, SASL PLAIN/LOGIN in any of the
three servers) and for POP3 APOP (RFC 1939 §7).

Which password each service type uses, per protocol ("login" = the login
password of the users database or PAM; "mail" = the alternate password of the
mailauth database; "-" = refused with ``SYS/PERM``):

=============== ======= ========= ======= =====
service type    POP3    IMAP      SMTP    APOP
=============== ======= ========= ======= =====
unix            login   login     login   -
pop             login   -         login   -
pop-mailpass    mail    -         login   -
apop-mailpass   - (*)   -         login   mail
imap            login   login     login   -
imap-mailpass   mail    mail      login   -
=============== ======= ========= ======= =====

Decisions behind the table:

* UNIX users may use POP (§12.4.1: "allows any user of the system to access
  their Email via a POP client") and IMAP.
* IMAP users may use POP: POP3 serves whichever store holds the user's mail
  (the INBOX of the IMAP store for IMAP users), the "offline mode" of §12.5.
  IMAP-with-mail-password users use their mail password there too, so their
  login password never crosses the network for mail.
* POP users' mail is in the mbox spool, which IMAP does not serve: no IMAP.
* (*) APOP-with-mail-password users must use APOP for POP3: choosing APOP
  means the secret is never sent, and accepting USER/PASS would undo that
  (qpopper refuses PASS for its APOP users the same way).
* SMTP AUTH (submission) always takes the login password, as the brief for
  the mail-password types requires; the mail password only unlocks mail reading.
* APOP only for ``apop-mailpass``: the other types keep no recoverable secret.

A refusal for the service type (``SYS/PERM``) is only revealed after the
password that the type would use has been checked and found right; a wrong
password is always the generic ``AUTH`` failure, so strangers learn nothing
about an account.  APOP answers the same ("invalid user name or APOP digest",
``AUTH``) for unknown users, for users of other types and for a wrong digest, after
the same delay, so APOP tells a stranger nothing about which accounts exist.

Every check, whichever password it uses, runs through
:meth:`~posthouse.auth.authenticator.Authenticator.guarded`: counted in the same
per-client and per-user failure limits (shared by all workers) and followed by the
growing delay when it fails.  Beyond the limits an attempt is refused unchecked with
``SYS/TEMP`` ("too many failed logins").  A users or mailauth database that cannot be
read answers ``SYS/TEMP`` as well, so servers reply with a temporary error instead of
dropping the connection.
Successes and failures are logged to ``posthouse.auth`` at INFO, which
posthouse uses as syslog's NOTICE (§12.4.5); details at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from typing import Literal

from posthouse.auth.authenticator import Authenticator, Outcome, UserDirectory
from posthouse.auth.mailauth import MailAuthDatabase, MailAuthError
from posthouse.auth.users import ServiceType, User

__all__ = ["RULES", "CredentialChecker", "LoginResult", "Protocol"]

log = logging.getLogger("posthouse.auth")

Protocol = Literal["pop3", "imap", "smtp"]
PasswordKind = Literal["login", "mail"]

BAD_CREDENTIALS = "invalid user name or password"
BAD_APOP = "invalid user name or APOP digest"
MUST_APOP = "this account must log in with APOP"
NO_DATABASE = "the mail password database is not available"
NO_USERS = "the user database is not available"
TOO_MANY = "too many failed logins, try again later"
_NOT_ENABLED = "this account is not enabled for {}"
_PROTOCOL_NAMES: dict[Protocol, str] = {"pop3": "POP", "imap": "IMAP", "smtp": "SMTP"}


@dataclass(frozen=True)
class LoginResult:
    """The answer to one login attempt.

    ``code`` is the RFC 2449/5530 response code a server may show: ``"AUTH"``
    for bad credentials, ``"SYS/PERM"`` for a service the account may not
    use, ``"SYS/TEMP"`` when the mailauth database is unusable, ``None`` on
    success.  ``user`` is the canonical user name on success.
    """

    ok: bool
    reason: str
    code: str | None
    user: str | None = None


@dataclass(frozen=True)
class Rule:
    """How one service type logs in over one protocol."""

    password: PasswordKind
    refusal: str | None = None  # set: refused (after a good password) with this reason


def _refuse(password: PasswordKind, protocol: Protocol) -> Rule:
    return Rule(password, _NOT_ENABLED.format(_PROTOCOL_NAMES[protocol]))


_LOGIN = Rule("login")
_MAIL = Rule("mail")

RULES: dict[ServiceType, dict[Protocol, Rule]] = {
    ServiceType.UNIX: {"pop3": _LOGIN, "imap": _LOGIN, "smtp": _LOGIN},
    ServiceType.POP: {"pop3": _LOGIN, "imap": _refuse("login", "imap"), "smtp": _LOGIN},
    ServiceType.POP_MAILPASS: {"pop3": _MAIL, "imap": _refuse("mail", "imap"), "smtp": _LOGIN},
    ServiceType.APOP_MAILPASS: {
        "pop3": Rule("mail", MUST_APOP),
        "imap": _refuse("mail", "imap"),
        "smtp": _LOGIN,
    },
    ServiceType.IMAP: {"pop3": _LOGIN, "imap": _LOGIN, "smtp": _LOGIN},
    ServiceType.IMAP_MAILPASS: {"pop3": _MAIL, "imap": _MAIL, "smtp": _LOGIN},
}
"""The table of the module docstring; APOP is allowed for ``APOP_MAILPASS`` only."""


class CredentialChecker:
    """Checks logins against the service-type rules (see the module docstring)."""

    def __init__(
        self,
        directory: UserDirectory,
        authenticator: Authenticator,
        mailauth: MailAuthDatabase | None,
    ) -> None:
        self.directory = directory
        self.authenticator = authenticator
        self.mailauth = mailauth

    async def check_password(
        self, user: str, password: str, *, protocol: Protocol, client: str
    ) -> LoginResult:
        """Check a password login of *user* over *protocol* from *client*."""
        try:
            found = await asyncio.to_thread(self.directory.get, user)
        except (sqlite3.Error, OSError) as exc:
            log.error("%s login from %s: user database unusable: %s", protocol, client, exc)
            return LoginResult(False, NO_USERS, "SYS/TEMP")
        if found is None:
            log.debug("%s login from %s: no user %r", protocol, client, user)
            try:
                outcome = await self.authenticator.attempt(user, password, client=client)
            except (sqlite3.Error, OSError) as exc:
                log.error("%s login from %s: user database unusable: %s", protocol, client, exc)
                return LoginResult(False, NO_USERS, "SYS/TEMP")
            return self._refused(protocol, user, client, outcome)
        rule = RULES[found.service_type][protocol]
        log.debug(
            "%s login of %s (%s) from %s: checking the %s password",
            protocol,
            found.name,
            found.service_type.value,
            client,
            rule.password,
        )
        try:
            if rule.password == "login":
                outcome = await self.authenticator.attempt(found.name, password, client=client)
            else:
                mailauth = self._database(protocol, found, client)
                if mailauth is None:
                    return LoginResult(False, NO_DATABASE, "SYS/TEMP")
                name = found.name
                outcome, _ = await self.authenticator.guarded(
                    name, client, lambda: mailauth.verify(name, password)
                )
        except MailAuthError as exc:
            log.error("mailauth database unusable: %s", exc)
            return LoginResult(False, NO_DATABASE, "SYS/TEMP")
        except (sqlite3.Error, OSError) as exc:
            log.error("%s login from %s: database unusable: %s", protocol, client, exc)
            return LoginResult(False, NO_USERS, "SYS/TEMP")
        if outcome is not Outcome.OK:
            return self._refused(protocol, found.name, client, outcome)
        if rule.refusal is not None:
            return self._failed(protocol, found.name, client, rule.refusal, "SYS/PERM")
        return self._succeeded(protocol, found.name, client)

    async def check_apop(
        self, user: str, timestamp: str, digest: str, *, client: str
    ) -> LoginResult:
        """Check a POP3 ``APOP user digest`` against the greeting's *timestamp*.

        Unknown users, users without APOP and wrong digests get the same answer after the
        same delay (see the module docstring).
        """
        try:
            found = await asyncio.to_thread(self.directory.get, user)
        except (sqlite3.Error, OSError) as exc:
            log.error("apop login from %s: user database unusable: %s", client, exc)
            return LoginResult(False, NO_USERS, "SYS/TEMP")
        if found is None or found.service_type is not ServiceType.APOP_MAILPASS:
            kind = "no such user" if found is None else found.service_type.value
            log.debug("APOP from %s for %r refused: %s", client, user, kind)
            name = user if found is None else found.name
            outcome, _ = await self.authenticator.guarded(name, client, lambda: False)
            return self._refused("apop", name, client, outcome, BAD_APOP)
        mailauth = self._database("apop", found, client)
        if mailauth is None:
            return LoginResult(False, NO_DATABASE, "SYS/TEMP")
        name = found.name
        try:
            outcome, _ = await self.authenticator.guarded(
                name, client, lambda: mailauth.verify_apop(name, timestamp, digest)
            )
        except (MailAuthError, sqlite3.Error, OSError) as exc:
            log.error("mailauth database unusable: %s", exc)
            return LoginResult(False, NO_DATABASE, "SYS/TEMP")
        if outcome is not Outcome.OK:
            return self._refused("apop", name, client, outcome, BAD_APOP)
        return self._succeeded("apop", name, client)

    # -- internals -----------------------------------------------------------

    def _database(self, protocol: str, user: User, client: str) -> MailAuthDatabase | None:
        if self.mailauth is None:
            log.error(
                "%s login of %s from %s needs the mail password, but no mailauth "
                "database is configured",
                protocol,
                user.name,
                client,
            )
        return self.mailauth

    def _refused(
        self,
        protocol: str,
        user: str,
        client: str,
        outcome: Outcome,
        reason: str = BAD_CREDENTIALS,
    ) -> LoginResult:
        if outcome is Outcome.LIMITED:
            return self._failed(protocol, user, client, TOO_MANY, "SYS/TEMP")
        return self._failed(protocol, user, client, reason, "AUTH")

    @staticmethod
    def _failed(protocol: str, user: str, client: str, reason: str, code: str) -> LoginResult:
        log.info(
            "%s login failed: user=%r client=%s: %s [%s]", protocol, user, client, reason, code
        )
        return LoginResult(False, reason, code)

    def _succeeded(self, protocol: str, user: str, client: str) -> LoginResult:
        self.authenticator.record_success(client)
        log.info("%s login ok: user=%s client=%s", protocol, user, client)
        return LoginResult(True, "login accepted", None, user)
