"""The mailauth database's operations: create it, import mail passwords, change one.

The chapter's ``mailauth`` (§12.4.2.1 step 3, §12.4.2.2, §12.4.4 step 7).  Every operation
that writes the files, run as root, then hands the database, its WAL files and the key to
the daemon's account (``[server] run_as``), mode 0600, so the daemon can read what root
created (see :meth:`MailAuthDatabase.hand_over`); the results name that account.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from posthouse.admin.errors import (
    InputMissing,
    InvalidRequest,
    NotConfigured,
    NotFound,
    NotPermitted,
    translated,
)
from posthouse.admin.popauth import PopauthError, PopauthRecord, popauth_records
from posthouse.auth import mail_password
from posthouse.auth.authenticator import Authenticator, UserDirectory
from posthouse.auth.mailauth import MailAuthDatabase
from posthouse.auth.users import InvalidUserName, UserDatabase, normalize_name
from posthouse.config.schema import Settings

__all__ = [
    "ImportResult",
    "InitResult",
    "MailAuthFiles",
    "OnSkip",
    "files_of",
    "hand_to_daemon",
    "import_mail_passwords",
    "init_database",
    "password_kind",
    "set_mail_password",
    "verify_current",
]

OnSkip = Callable[[int, str], None]
"""Called with (line number, reason) for each input line that is skipped."""


@dataclass(frozen=True)
class MailAuthFiles:
    """The files the mail-password operations use, and how users are looked up."""

    database: Path
    key: Path
    users_db: Path
    system_accounts: bool = False
    system_min_uid: int = 1000
    daemon_account: str = ""  # server.run_as: run as root, the files are handed to it
    control_socket: Path | None = None  # the daemon's, for users who cannot open the files

    def writable(self) -> bool:
        """Whether this process may change the files itself (else it asks the daemon)."""
        return os.geteuid() == 0 or (
            os.access(self.database, os.R_OK | os.W_OK) and os.access(self.key, os.R_OK)
        )

    def open_mailauth(self) -> MailAuthDatabase:
        return MailAuthDatabase(self.database, self.key)

    def directory(self, users: UserDatabase) -> UserDirectory:
        return UserDirectory(
            users, system_accounts=self.system_accounts, min_uid=self.system_min_uid
        )


def files_of(settings: Settings) -> MailAuthFiles:
    """The one place that maps the configuration to the mailauth files."""
    return MailAuthFiles(
        database=settings.paths.mailauth_db,
        key=settings.paths.mailauth_key,
        users_db=settings.paths.users_db,
        system_accounts=settings.config.users.system_accounts,
        system_min_uid=settings.config.users.system_min_uid,
        daemon_account=settings.config.server.run_as,
        control_socket=settings.paths.control_socket,
    )


@dataclass(frozen=True)
class InitResult:
    created: bool  # False: the database was set up already; its key is kept
    handed_to: str | None  # the account the files now belong to, if they were handed over


@dataclass(frozen=True)
class ImportResult:
    imported: int
    skipped: int
    handed_to: str | None


def init_database(files: MailAuthFiles) -> InitResult:
    """Create the database and its key (idempotent: an existing key is kept)."""
    with translated(), files.open_mailauth() as mailauth:
        created = mailauth.init()
        return InitResult(created, hand_to_daemon(files, mailauth))


def import_mail_passwords(
    files: MailAuthFiles, source: Path | Iterable[str], on_skip: OnSkip
) -> ImportResult:
    """Import Qualcomm's popauth database (§12.4.2.2): its dbm file
    (:mod:`posthouse.admin.popauth`), or a text dump, ``user:password`` or ``user password``
    lines.

    *source* is a file or the lines themselves; the database must be set up, which is
    checked before any input is read (:class:`NotConfigured`)."""
    skipped = 0

    def report(number: int, _line: str, reason: str) -> None:
        nonlocal skipped
        skipped += 1
        on_skip(number, reason)

    with translated(), files.open_mailauth() as mailauth:
        mailauth.check()
        database = popauth_records(source) if isinstance(source, Path) else None
        if database is not None:
            counts = _import_records(mailauth, database, on_skip)
            return ImportResult(counts.imported, counts.skipped, hand_to_daemon(files, mailauth))
        if isinstance(source, Path):
            try:
                with open(source, encoding="utf-8", errors="surrogateescape") as text:
                    imported = mailauth.import_popauth(text, on_error=report)
            except FileNotFoundError as exc:
                raise InputMissing(f"{source}: no such file") from exc
        else:
            imported = mailauth.import_popauth(source, on_error=report)
        return ImportResult(imported, skipped, hand_to_daemon(files, mailauth))


def _import_records(
    mailauth: MailAuthDatabase, records: Iterable[PopauthRecord], on_skip: OnSkip
) -> ImportResult:
    """Store the secrets of a popauth database (:mod:`posthouse.admin.popauth`); a record
    that cannot be used is reported with its number in the database's order."""
    imported = skipped = 0
    try:
        for number, record in enumerate(records, start=1):
            try:
                name = normalize_name(record.user)
            except InvalidUserName as exc:
                record = PopauthRecord(record.user, None, str(exc))
                name = record.user
            if record.secret is None:
                skipped += 1
                on_skip(number, f"{name}: {record.problem}")
                continue
            mailauth.set_password(name, record.secret)
            imported += 1
    except PopauthError as exc:
        raise InvalidRequest(f"popauth database: {exc}") from exc
    return ImportResult(imported, skipped, None)


def password_kind(files: MailAuthFiles, name: str) -> Literal["mail", "login"]:
    """Which password proves *name*'s identity for a change: the mail password, or the
    login password while there is none yet (:class:`NotFound` for an unknown user)."""
    with translated(), files.open_mailauth() as mailauth:
        if mailauth.has(normalize_name(name)):
            return "mail"
        with UserDatabase(files.users_db) as users:
            if not files.directory(users).exists(normalize_name(name)):
                raise NotFound(f"no such user: {normalize_name(name)}")
    return "login"


def verify_current(files: MailAuthFiles, name: str, current: str) -> None:
    """Check *current* as the password of :func:`password_kind` (:class:`NotPermitted`)."""
    with translated(), files.open_mailauth() as mailauth, UserDatabase(files.users_db) as users:
        ok = mail_password.verify_current(
            mailauth, Authenticator(files.directory(users)), name, current
        )
    if not ok:
        raise NotPermitted("authentication failed")


def set_mail_password(files: MailAuthFiles, name: str, new: str) -> str | None:
    """Set *name*'s mail password, which must differ from the login password it protects.

    Returns the account the files were handed to, if any."""
    with translated(), files.open_mailauth() as mailauth, UserDatabase(files.users_db) as users:
        try:
            mail_password.set_mail_password(
                mailauth, Authenticator(files.directory(users)), name, new
            )
        except mail_password.MailPasswordRefused as exc:
            raise InvalidRequest(str(exc)) from exc
        return hand_to_daemon(files, mailauth)


def hand_to_daemon(files: MailAuthFiles, mailauth: MailAuthDatabase) -> str | None:
    """Run as root: make the files the daemon's (``server.run_as``), which must read them.

    Returns the account when files changed owner.  Not root, or no ``run_as``: the files
    stay with the account that ran the operation (the daemon runs as that account too, or
    root starts it and hands it the data directory)."""
    if os.geteuid() != 0 or not files.daemon_account:
        return None
    try:
        account = pwd.getpwnam(files.daemon_account)
    except KeyError as exc:
        raise NotConfigured(f"server.run_as: no such account {files.daemon_account!r}") from exc
    if account.pw_uid == 0:
        return None
    with translated():
        changed = mailauth.hand_over(account.pw_uid, account.pw_gid)
    return files.daemon_account if changed else None
