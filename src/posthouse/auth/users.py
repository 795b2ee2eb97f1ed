"""posthouse's own users and their mail service types, kept in SQLite.

Each user has a mail service type, as set by the chapter's ``mailusradm``
(§12.4.4, §12.5.2): UNIX, POP, POP with mail password, APOP with mail
password, IMAP, IMAP with mail password.  UNIX and POP users get local mail
in the mbox spool, IMAP users in the IMAP store; "with mail password" means
the user logs in to POP/IMAP with the alternate password of the mailauth
database (a later module), not the login password stored here.

User names are case-insensitive: they are folded to lower case and must then
match ``[a-z0-9._-]``, 1 to 64 characters, not starting with ``-`` or ``.``.

The database is one SQLite file in WAL mode with a busy timeout, so several
processes (the daemon, ``posthouse user``, ``mailusradm``) may use it at once;
every change is a single short ``BEGIN IMMEDIATE`` transaction.  One
:class:`UserDatabase` may also be shared between threads.
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import fnmatch
import os
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from posthouse.auth.passwords import hash_password

__all__ = [
    "InvalidUserName",
    "NoSuchUser",
    "ServiceType",
    "User",
    "UserDatabase",
    "UserExists",
    "normalize_name",
]

BUSY_TIMEOUT_SECONDS = 30.0
_NAME_RE = re.compile(r"[a-z0-9_][a-z0-9._-]{0,63}")


class ServiceType(enum.Enum):
    """A user's mail service type (the chapter's ``mailusradm`` pulldown)."""

    UNIX = "unix"
    POP = "pop"
    POP_MAILPASS = "pop-mailpass"
    APOP_MAILPASS = "apop-mailpass"
    IMAP = "imap"
    IMAP_MAILPASS = "imap-mailpass"

    @property
    def uses_imap_store(self) -> bool:
        """Whether local mail for this type goes to the IMAP store (else the mbox spool)."""
        return self in (ServiceType.IMAP, ServiceType.IMAP_MAILPASS)

    @property
    def uses_mail_password(self) -> bool:
        """Whether POP/IMAP logins use the mailauth database's alternate password."""
        return self in (
            ServiceType.POP_MAILPASS,
            ServiceType.APOP_MAILPASS,
            ServiceType.IMAP_MAILPASS,
        )


@dataclass(frozen=True)
class User:
    """One mail user, from posthouse's database or from the system's accounts."""

    name: str
    password_hash: str | None
    service_type: ServiceType
    uid: int | None
    gid: int | None
    home: str | None
    source: Literal["posthouse", "system"]


class UserExists(Exception):
    """A user of that name is already in the database."""


class NoSuchUser(Exception):
    """No user of that name is in the database."""


class InvalidUserName(ValueError):
    """The name is not a valid user name."""


def normalize_name(name: str) -> str:
    """Return *name* folded to lower case, or raise :class:`InvalidUserName`."""
    # Check ASCII before folding: str.lower() maps e.g. the Kelvin sign to "k".
    folded = name.lower() if name.isascii() else ""
    if _NAME_RE.fullmatch(folded) is None:
        raise InvalidUserName(
            f"invalid user name {name!r}: use 1-64 of a-z 0-9 . _ -, not starting with - or ."
        )
    if folded.endswith(".lock"):
        # spool/mail/NAME.lock is the dot-lock of user NAME's mailbox (issue 8).
        raise InvalidUserName(f"invalid user name {name!r}: must not end in .lock")
    return folded


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    service_type  TEXT NOT NULL
)
"""


class UserDatabase:
    """posthouse's own users, in SQLite (WAL mode, busy timeout) at the given path.

    Safe for several processes, and for several threads sharing one instance: changes go
    through one connection under a lock; lookups use a connection of the calling thread's own
    (WAL readers do not block each other), so the server's event loop never waits for a lock
    that a delivery thread holds.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        _create_private(self.path)
        self._conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,  # autocommit; transactions are explicit below
            check_same_thread=False,  # guarded by self._lock
        )
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(_SCHEMA)
        except BaseException:
            self._conn.close()
            raise

    # -- changes -------------------------------------------------------------

    def add(
        self,
        name: str,
        password: str | None,
        service_type: ServiceType = ServiceType.UNIX,
    ) -> User:
        """Add a user; ``password=None`` makes one with no login password of its own.

        Raises :class:`InvalidUserName`, :class:`UserExists`, or ``ValueError``
        for an empty password.
        """
        key = normalize_name(name)
        stored = None if password is None else _hash_nonempty(password)
        try:
            self._write(
                "INSERT INTO users (name, password_hash, service_type) VALUES (?, ?, ?)",
                (key, stored, service_type.value),
            )
        except sqlite3.IntegrityError:
            raise UserExists(key) from None
        return _posthouse_user(key, stored, service_type)

    def delete(self, name: str) -> None:
        """Remove a user; raises :class:`NoSuchUser` if there is none."""
        key = normalize_name(name)
        if self._write("DELETE FROM users WHERE name = ?", (key,)) == 0:
            raise NoSuchUser(key)

    def set_password(self, name: str, password: str) -> None:
        """Replace a user's login password (``ValueError`` if empty)."""
        key = normalize_name(name)
        stored = _hash_nonempty(password)
        if self._write("UPDATE users SET password_hash = ? WHERE name = ?", (stored, key)) == 0:
            raise NoSuchUser(key)

    def set_service_type(self, name: str, service_type: ServiceType) -> None:
        """Change a user's mail service type."""
        key = normalize_name(name)
        sql = "UPDATE users SET service_type = ? WHERE name = ?"
        if self._write(sql, (service_type.value, key)) == 0:
            raise NoSuchUser(key)

    # -- queries -------------------------------------------------------------

    def get(self, name: str) -> User | None:
        """Return the user called *name* (any case), or ``None``.

        An invalid name answers ``None`` rather than raising, since such a user
        cannot exist and protocol servers pass client-supplied names straight in.
        """
        try:
            key = normalize_name(name)
        except InvalidUserName:
            return None
        row = (
            self._reader()
            .execute("SELECT name, password_hash, service_type FROM users WHERE name = ?", (key,))
            .fetchone()
        )
        return None if row is None else _row_user(row)

    def list(self, pattern: str | None = None) -> builtins.list[User]:
        """Return users sorted by name, those matching the fnmatch *pattern* if given.

        The pattern is matched case-insensitively (``*``, ``?``, ``[seq]``).
        """
        rows = (
            self._reader()
            .execute("SELECT name, password_hash, service_type FROM users ORDER BY name")
            .fetchall()
        )
        users = [_row_user(row) for row in rows]
        if pattern is None:
            return users
        folded = pattern.lower()
        return [user for user in users if fnmatch.fnmatchcase(user.name, folded)]

    def has_service_type(self, service_type: ServiceType) -> bool:
        """Whether any user has *service_type*.

        Cheap enough for every connection: the answer is kept until the database changes
        (SQLite's ``data_version``, which moves when another connection commits)."""
        reader = self._reader()
        (version,) = reader.execute("PRAGMA data_version").fetchone()
        cache: dict[ServiceType, tuple[int, bool]] | None
        cache = getattr(self._local, "service_types", None)
        if cache is None:
            cache = self._local.service_types = {}
        known = cache.get(service_type)
        if known is not None and known[0] == version:
            return known[1]
        sql = "SELECT EXISTS (SELECT 1 FROM users WHERE service_type = ?)"
        (found,) = reader.execute(sql, (service_type.value,)).fetchone()
        cache[service_type] = (version, bool(found))
        return bool(found)

    def close(self) -> None:
        """Close the database connections."""
        with self._lock:
            self._conn.close()
            for reader in self._readers:
                reader.close()
            self._readers.clear()

    def __enter__(self) -> UserDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        """This thread's connection for lookups (opened at its first lookup)."""
        reader: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,  # used by its thread only; close() may run elsewhere
            )
            reader.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            self._local.reader = reader
            with self._lock:
                self._readers.append(reader)
        return reader

    def _write(self, sql: str, params: tuple[str | None, ...]) -> int:
        """Run one change in its own immediate transaction; return the rows changed."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                changed = self._conn.execute(sql, params).rowcount
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return changed


def _create_private(path: Path) -> None:
    """Create the database file (and its directory) readable by its owner only.

    SQLite gives the ``-wal`` and ``-shm`` files the database file's permissions.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _hash_nonempty(password: str) -> str:
    if not password:
        raise ValueError("empty password")
    return hash_password(password)


def _posthouse_user(name: str, stored: str | None, service_type: ServiceType) -> User:
    return User(
        name=name,
        password_hash=stored,
        service_type=service_type,
        uid=None,
        gid=None,
        home=None,
        source="posthouse",
    )


def _row_user(row: tuple[str, str | None, str]) -> User:
    name, stored, service_type = row
    return _posthouse_user(name, stored, ServiceType(service_type))
