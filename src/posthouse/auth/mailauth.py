"""The mailauth database: alternate mail passwords and APOP secrets (§12.4.4, §12.5.2).

Users of the ``*-mailpass`` service types log in to POP and IMAP with a mail
password of their own instead of their login password, so a mail password
sniffed on the network does not open the account (§12.4.4).  The chapter keeps
them in ``/etc/pop.auth.*``; posthouse keeps them in one SQLite file (WAL mode,
busy timeout, mode 0600), one row per user, with:

* an argon2id hash of the mail password, checked for USER/PASS, IMAP LOGIN
  and SASL PLAIN;
* the mail password itself, encrypted with AES-256-GCM under a server key
  (a separate 32-byte file, mode 0600, created by :meth:`MailAuthDatabase.init`).
  APOP needs the clear secret to compute ``MD5(timestamp + secret)``
  (RFC 1939 §7), so a hash alone cannot serve it.  The user name is the GCM
  associated data, so a row's secret cannot be moved to another user.
* optionally, a legacy ``crypt(3)`` hash imported by ``popcv`` from an MH POP
  file (whose passwords are crypt hashes, never clear).  Such a user can log
  in with USER/PASS; the first good login replaces the legacy hash with an
  argon2 hash and an encrypted secret, after which APOP works too.

Text import format (``posthouse mailauth -convert``, :meth:`MailAuthDatabase.import_popauth`),
one user per line::

    # comment lines and blank lines are ignored
    alice:her mail password        <- user:password (split at the first colon)
    bob   his-password             <- user password (split at the first run of blanks)

A line containing a colon is the first form, so a password may contain blanks
only in that form; a password may contain colons in both.  Surrounding blanks
and the line end are removed.  Bad lines (no separator, empty password,
invalid user name) are reported through ``on_error`` and skipped; they never
stop the import.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from posthouse.auth.passwords import hash_password, verify_password
from posthouse.auth.users import InvalidUserName, normalize_name

__all__ = [
    "KEY_SIZE",
    "MailAuthDatabase",
    "MailAuthError",
    "MailAuthNotInitialized",
    "apop_digest",
    "crypt_available",
    "crypt_hash",
    "parse_popauth_line",
]

KEY_SIZE = 32  # AES-256
_NONCE_SIZE = 12
BUSY_TIMEOUT_SECONDS = 30.0

log = logging.getLogger("posthouse.auth")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mailauth (
    name          TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    secret        BLOB,
    legacy_crypt  TEXT,
    updated       REAL NOT NULL
)
"""


class MailAuthError(Exception):
    """The mailauth database or its key is unusable."""


class MailAuthNotInitialized(MailAuthError):
    """The database or key file does not exist yet: run ``posthouse mailauth -init``."""


def apop_digest(timestamp: str, secret: str) -> str:
    """The APOP digest of RFC 1939 §7: lower-case hex ``MD5(timestamp + secret)``."""
    return hashlib.md5((timestamp + secret).encode("utf-8"), usedforsecurity=False).hexdigest()


def parse_popauth_line(line: str) -> tuple[str, str] | None:
    """Parse one line of the text import format (see the module docstring).

    Returns ``(user, password)``, or ``None`` for a blank or comment line;
    raises ``ValueError`` (with a reason) for a bad line.
    """
    text = line.rstrip("\r\n").strip()
    if not text or text.startswith("#"):
        return None
    if ":" in text:
        user, _, password = text.partition(":")
    else:
        parts = text.split(None, 1)
        if len(parts) != 2:
            raise ValueError("expected 'user:password' or 'user password'")
        user, password = parts
    user, password = user.strip(), password.strip()
    if not password:
        raise ValueError("empty password")
    try:
        return normalize_name(user), password
    except InvalidUserName as exc:
        raise ValueError(str(exc)) from None


class MailAuthDatabase:
    """Alternate mail passwords and APOP secrets (see the module docstring).

    Nothing touches the disk until first use; every method except :meth:`init`
    raises :class:`MailAuthNotInitialized` when the database or key file is
    missing.  Safe for several processes, and for threads sharing one instance.
    """

    def __init__(self, path: Path, key_path: Path) -> None:
        self.path = Path(path)
        self.key_path = Path(key_path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._created_dirs: set[Path] = set()  # by init(), for hand_over()
        self._aead: AESGCM | None = None

    # -- set-up --------------------------------------------------------------

    def init(self) -> bool:
        """Create the database and key file if missing; return whether a key was created.

        Idempotent.  An existing key is never replaced (a new key would make
        every stored secret unreadable); a missing key next to a database that
        already holds secrets is refused with :class:`MailAuthError`.
        """
        with self._lock:
            self._created_dirs.update(_missing_dirs(self.path.parent))
            _create_private(self.path)
            conn = self._connection(create=True)
            if self.key_path.exists():
                self._load_key()
                return False
            (stored,) = conn.execute(
                "SELECT count(*) FROM mailauth WHERE secret IS NOT NULL"
            ).fetchone()
            if stored:
                raise MailAuthError(
                    f"{self.key_path}: key file missing but {self.path} holds {stored} "
                    "encrypted secrets; restore the key instead of making a new one"
                )
            self._created_dirs.update(_missing_dirs(self.key_path.parent))
            self.key_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process won the race: use its key
                self._load_key()
                return False
            with os.fdopen(fd, "wb") as key_file:
                key_file.write(secrets.token_bytes(KEY_SIZE))
                key_file.flush()
                os.fsync(key_file.fileno())
            self._load_key()
            return True

    def check(self) -> None:
        """Open the database and key; raise :class:`MailAuthError` if either is unusable."""
        self._connection()
        self._load_key()

    # -- changes -------------------------------------------------------------

    def set_password(self, user: str, password: str) -> None:
        """Set (or replace) *user*'s mail password; ``ValueError`` if it is empty."""
        key = normalize_name(user)
        if not password:
            raise ValueError("empty password")
        stored = hash_password(password)
        sealed = self._seal(key, password)
        self._write(
            "INSERT INTO mailauth (name, password_hash, secret, legacy_crypt, updated) "
            "VALUES (?, ?, ?, NULL, ?) ON CONFLICT(name) DO UPDATE SET "
            "password_hash = excluded.password_hash, secret = excluded.secret, "
            "legacy_crypt = NULL, updated = excluded.updated",
            (key, stored, sealed, time.time()),
        )

    def set_legacy_crypt(self, user: str, crypt_hash: str) -> None:
        """Store a ``crypt(3)`` hash imported from an old POP file (no APOP until upgraded)."""
        key = normalize_name(user)
        if not crypt_hash:
            raise ValueError("empty hash")
        self._write(
            "INSERT INTO mailauth (name, password_hash, secret, legacy_crypt, updated) "
            "VALUES (?, NULL, NULL, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "password_hash = NULL, secret = NULL, legacy_crypt = excluded.legacy_crypt, "
            "updated = excluded.updated",
            (key, crypt_hash, time.time()),
        )

    def delete(self, user: str) -> bool:
        """Remove *user*'s mail password; return whether there was one."""
        try:
            key = normalize_name(user)
        except InvalidUserName:
            return False
        return self._write("DELETE FROM mailauth WHERE name = ?", (key,)) > 0

    def import_popauth(
        self,
        lines: Iterable[str],
        *,
        on_error: Callable[[int, str, str], None] | None = None,
    ) -> int:
        """Import the text format of the module docstring; return the users imported.

        Bad lines are passed to ``on_error(line_number, line, reason)`` (default:
        a warning in the log) and skipped.
        """
        imported = 0
        for number, line in enumerate(lines, start=1):
            try:
                parsed = parse_popauth_line(line)
            except ValueError as exc:
                _report(on_error, number, line, str(exc))
                continue
            if parsed is None:
                continue
            self.set_password(*parsed)
            imported += 1
        return imported

    # -- queries -------------------------------------------------------------

    def has(self, user: str) -> bool:
        """Whether *user* has a mail password (or an imported legacy hash)."""
        return self._row(user) is not None

    def users(self) -> list[str]:
        """The users with a mail password, sorted."""
        with self._lock:
            rows = self._connection().execute("SELECT name FROM mailauth ORDER BY name")
            return [name for (name,) in rows.fetchall()]

    def verify(self, user: str, password: str) -> bool:
        """Whether *password* is *user*'s mail password.  Blocking (argon2).

        An unknown user costs the same hashing time as a wrong password.  A
        good password against a legacy crypt hash upgrades the row.
        """
        row = self._row(user)
        if not password or row is None or (row[0] is None and row[2] is None):
            verify_password(_dummy_hash(), password or "-")
            return False
        stored, _secret, legacy = row
        if stored is not None:
            return verify_password(stored, password)
        assert legacy is not None
        if not _crypt_matches(password, legacy):
            return False
        with contextlib.suppress(MailAuthError):  # no key yet: keep the legacy hash
            self.set_password(user, password)
            log.info("upgraded legacy POP password of %s", normalize_name(user))
        return True

    def apop_secret(self, user: str) -> str | None:
        """*user*'s clear mail password for APOP, or ``None`` if none is stored."""
        row = self._row(user)
        if row is None or row[1] is None:
            return None
        return self._open(normalize_name(user), row[1])

    def verify_apop(self, user: str, timestamp: str, digest_hex: str) -> bool:
        """Whether *digest_hex* is the APOP digest of *timestamp* and *user*'s secret.

        The comparison is constant-time; hex case does not matter.
        """
        secret = self.apop_secret(user)
        expected = apop_digest(timestamp, secret if secret is not None else secrets.token_hex(16))
        given = digest_hex.strip().lower().encode("ascii", "replace")
        return hmac.compare_digest(expected.encode("ascii"), given) and secret is not None

    def hand_over(self, uid: int, gid: int) -> list[Path]:
        """Give the database, its WAL and shared-memory files and the key to ``uid:gid``.

        For ``posthouse mailauth -init`` run as root while the daemon runs as another
        account (``server.run_as``): the files stay mode 0600 and become that account's.
        Each file is opened with ``O_NOFOLLOW`` and changed through its descriptor, and
        only a regular file with one link is changed, so a symlink or hard link planted in
        the directory never hands over anything else.  The directory is handed over only
        when :meth:`init` of this object created it.  Returns the paths changed.
        """
        changed: list[Path] = []
        paths = [self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm"))]
        for path in [*paths, self.key_path]:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise MailAuthError(f"{path}: cannot hand over: {exc.strerror}") from exc
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                    raise MailAuthError(f"{path}: not a regular file with one link; not changed")
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.fchown(fd, uid, gid)
                if stat.S_IMODE(st.st_mode) & 0o077:
                    os.fchmod(fd, 0o600)
                changed.append(path)
            finally:
                os.close(fd)
        for directory in sorted(self._created_dirs, key=lambda p: len(p.parts)):
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fchown(fd, uid, gid)
                changed.append(directory)
            finally:
                os.close(fd)
        return changed

    def close(self) -> None:
        """Close the database connection (the object may be used again afterwards)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> MailAuthDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------

    def _connection(self, *, create: bool = False) -> sqlite3.Connection:
        with self._lock:
            if self._conn is not None:
                return self._conn
            if not create and not self.path.exists():
                raise MailAuthNotInitialized(
                    f"{self.path}: no mailauth database; run 'posthouse mailauth -init'"
                )
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,  # guarded by self._lock
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            return conn

    def _row(self, user: str) -> tuple[str | None, bytes | None, str | None] | None:
        try:
            key = normalize_name(user)
        except InvalidUserName:
            return None
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT password_hash, secret, legacy_crypt FROM mailauth WHERE name = ?",
                    (key,),
                )
                .fetchone()
            )
        return None if row is None else (row[0], row[1], row[2])

    def _write(self, sql: str, params: tuple[str | bytes | float | None, ...]) -> int:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = conn.execute(sql, params).rowcount
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return changed

    def _load_key(self) -> AESGCM:
        with self._lock:
            if self._aead is None:
                try:
                    key = self.key_path.read_bytes()
                except FileNotFoundError:
                    raise MailAuthNotInitialized(
                        f"{self.key_path}: no mailauth key; run 'posthouse mailauth -init'"
                    ) from None
                if len(key) != KEY_SIZE:
                    raise MailAuthError(f"{self.key_path}: not a {KEY_SIZE}-byte key")
                self._aead = AESGCM(key)
            return self._aead

    def _seal(self, name: str, password: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_SIZE)
        return nonce + self._load_key().encrypt(nonce, password.encode("utf-8"), name.encode())

    def _open(self, name: str, sealed: bytes) -> str | None:
        nonce, body = sealed[:_NONCE_SIZE], sealed[_NONCE_SIZE:]
        try:
            return self._load_key().decrypt(nonce, body, name.encode()).decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            log.warning("mailauth secret of %s does not decrypt with %s", name, self.key_path)
            return None


def _report(
    on_error: Callable[[int, str, str], None] | None, number: int, line: str, reason: str
) -> None:
    if on_error is None:
        log.warning("mailauth import: line %d skipped: %s", number, reason)
    else:
        on_error(number, line.rstrip("\r\n"), reason)


def _missing_dirs(directory: Path) -> list[Path]:
    """``directory`` and those of its ancestors that do not exist yet."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def _create_private(path: Path) -> None:
    """Create the database file (and its directory) readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


# -- legacy crypt(3) hashes from MH POP files ---------------------------------

_CRYPT_LOCK = threading.Lock()  # crypt() returns a static buffer
_CRYPT_CHARS = re.compile(r"[./0-9A-Za-z$,=+-]+")


@functools.cache
def _libcrypt() -> Callable[[bytes, bytes], bytes | None] | None:
    name = ctypes.util.find_library("crypt")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).crypt
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_char_p
    function.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    result: Callable[[bytes, bytes], bytes | None] = function
    return result


def crypt_available() -> bool:
    """Whether the system's ``crypt(3)`` can be used to check legacy hashes."""
    return _libcrypt() is not None


def crypt_hash(password: str, salt: str) -> str | None:
    """``crypt(3)`` of *password* with *salt* (a whole hash works as the salt), or ``None``."""
    function = _libcrypt()
    if function is None or "\0" in password or _CRYPT_CHARS.fullmatch(salt) is None:
        return None
    with _CRYPT_LOCK:
        result = function(password.encode("utf-8"), salt.encode("ascii"))
    if result is None or result.startswith(b"*"):
        return None
    return result.decode("ascii", "replace")


def _crypt_matches(password: str, legacy: str) -> bool:
    computed = crypt_hash(password, legacy)
    if computed is None:
        if not crypt_available():
            log.warning("cannot check a legacy POP password: no crypt(3) on this system")
        return False
    return hmac.compare_digest(computed.encode(), legacy.encode())
