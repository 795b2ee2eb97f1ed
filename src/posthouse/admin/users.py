"""posthouse's users: add, delete, list, login passwords and mail service types.

``posthouse user`` and ``posthouse mailusradm`` (the chapter's Mail User Administration
window, §12.4.4, §12.5.2) are front ends of these.  Passwords arrive as values: asking for
them is the front end's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posthouse.admin.errors import InvalidRequest, NotFound, translated
from posthouse.admin.mailauth import MailAuthFiles, hand_to_daemon
from posthouse.auth.mailauth import MailAuthDatabase, MailAuthError
from posthouse.auth.users import ServiceType, User, UserDatabase, normalize_name

__all__ = [
    "ServiceType",
    "ServiceTypeChange",
    "User",
    "UserEntry",
    "add_user",
    "delete_user",
    "list_service_types",
    "list_users",
    "mail_password_needed",
    "set_login_password",
    "set_service_type",
    "user_name",
]


def user_name(name: str) -> str:
    """*name* as users are stored (lower case), or :class:`InvalidRequest`."""
    with translated():
        return normalize_name(name)


def add_user(
    db_path: Path, name: str, password: str | None, service_type: ServiceType = ServiceType.UNIX
) -> User:
    """Add a user; ``password=None`` makes one with no login password of its own."""
    if password == "":
        raise InvalidRequest("empty password refused")
    with translated(str(db_path)), UserDatabase(db_path) as db:
        return db.add(name, password, service_type)


def delete_user(db_path: Path, name: str) -> None:
    with translated(str(db_path)), UserDatabase(db_path) as db:
        db.delete(name)


def list_users(db_path: Path, pattern: str | None = None) -> list[User]:
    """Users sorted by name, those matching the wildcard *pattern* (``*``, ``?``, ``[seq]``)."""
    with translated(str(db_path)), UserDatabase(db_path) as db:
        return db.list(pattern)


def set_login_password(db_path: Path, name: str, password: str) -> None:
    if not password:
        raise InvalidRequest("empty password refused")
    with translated(str(db_path)), UserDatabase(db_path) as db:
        db.set_password(name, password)


@dataclass(frozen=True)
class UserEntry:
    """A user as ``mailusradm list`` shows it."""

    user: User
    has_mail_password: bool


def list_service_types(files: MailAuthFiles, pattern: str | None = None) -> list[UserEntry]:
    """Users with their service type and whether they have a mail password."""
    with translated(), files.open_mailauth() as mailauth, UserDatabase(files.users_db) as db:
        with_password = _mail_passwords(mailauth)
        return [UserEntry(user, user.name in with_password) for user in db.list(pattern)]


def _mail_passwords(mailauth: MailAuthDatabase) -> set[str]:
    try:
        return set(mailauth.users())
    except MailAuthError:  # not initialised yet: nobody has a mail password
        return set()


def mail_password_needed(files: MailAuthFiles, name: str, service_type: ServiceType) -> bool:
    """Whether switching *name* to *service_type* needs a new mail password: the type uses
    one and the user has none (for apop-mailpass: none whose clear secret is stored, as
    APOP needs it).  :class:`NotFound` for an unknown user."""
    with translated(), files.open_mailauth() as mailauth, UserDatabase(files.users_db) as db:
        key = normalize_name(name)
        if files.directory(db).get(key) is None:
            raise NotFound(f"no such user: {key}")
        return _missing_mail_password(mailauth, key, service_type)


def _missing_mail_password(
    mailauth: MailAuthDatabase, name: str, service_type: ServiceType
) -> bool:
    if not service_type.uses_mail_password:
        return False
    if service_type is ServiceType.APOP_MAILPASS:
        return mailauth.apop_secret(name) is None
    return not mailauth.has(name)


@dataclass(frozen=True)
class ServiceTypeChange:
    name: str
    service_type: ServiceType
    mail_password_set: bool  # the mail password given was needed and stored
    handed_to: str | None  # the account the mailauth files now belong to, if handed over


def set_service_type(
    files: MailAuthFiles, name: str, service_type: ServiceType, mail_password: str | None = None
) -> ServiceTypeChange:
    """Change *name*'s mail service type.

    *mail_password*, when given for a type that uses one, is stored as the user's mail password
    (replacing the one there is); a type that needs one the user lacks
    (:func:`mail_password_needed`) is refused without it (:class:`InvalidRequest`).  A system
    account (``system_accounts``) not yet in the database gets a password-less entry
    recording its type."""
    with translated(), files.open_mailauth() as mailauth, UserDatabase(files.users_db) as db:
        key = normalize_name(name)
        if files.directory(db).get(key) is None:
            raise NotFound(f"no such user: {key}")
        password_set = False
        if _missing_mail_password(mailauth, key, service_type) and not mail_password:
            raise InvalidRequest(f"{service_type.value} needs a mail password for {key}")
        if mail_password and service_type.uses_mail_password:
            mailauth.set_password(key, mail_password)  # a new one replaces the old one
            password_set = True
        if db.get(key) is None:  # a system account: record its type in the database
            db.add(key, None, service_type)
        else:
            db.set_service_type(key, service_type)
        return ServiceTypeChange(key, service_type, password_set, hand_to_daemon(files, mailauth))
