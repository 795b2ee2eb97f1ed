"""The compiled alias database: what ``newaliases`` builds and the daemon reads.

This module owns the on-disk database format (a small SQLite file) and its
life cycle.  :func:`build_alias_database` parses the aliases(5) text, writes a
complete database to a temporary file in the same directory, fsyncs it and
atomically renames it over the old one, so readers only ever see a whole old
or a whole new database.  :class:`AliasDatabase` is the reader: it stats the
database path (at most once per lookup) and reopens when the file was
replaced, so a rebuilt database is picked up without restarting the daemon.
The answers it read from one file are kept while the path still names that file
(same device, inode, mtime and size): a database file never changes, so they cannot
go stale, and a busy server's repeated lookups of the same names cost a stat each.

Because a database file is never modified after the rename, readers open it
read-only and ``immutable`` (no locking, no journal), which makes any number
of reading processes safe while ``newaliases`` runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from posthouse.durable import sync_directory
from posthouse.mta.address import normalize_local
from posthouse.mta.aliases import AliasSyntaxError, parse_aliases

__all__ = ["SCHEMA_VERSION", "AliasDatabase", "AliasDatabaseError", "build_alias_database"]

SCHEMA_VERSION = 1


class AliasDatabaseError(Exception):
    """The alias database exists but cannot be read (corrupt or wrong format)."""


def _read_aliases_text(aliases_path: Path) -> str:
    data = aliases_path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise AliasSyntaxError(str(aliases_path), line, "invalid UTF-8") from exc


def build_alias_database(aliases_path: Path, db_path: Path) -> int:
    """Compile *aliases_path* into the database *db_path*; return the number of aliases.

    Raises :class:`AliasSyntaxError` (leaving any existing database untouched)
    if the aliases file is malformed, and :class:`OSError` if it is unreadable.
    """
    aliases = parse_aliases(_read_aliases_text(aliases_path), str(aliases_path))
    directory = db_path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{db_path.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        conn = sqlite3.connect(tmp_path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")  # we fsync the finished file ourselves
            conn.execute("BEGIN")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("CREATE TABLE aliases (name TEXT PRIMARY KEY, targets TEXT NOT NULL)")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.executemany(
                "INSERT INTO aliases (name, targets) VALUES (?, ?)",
                ((name, json.dumps(list(targets))) for name, targets in aliases.items()),
            )
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("source", str(aliases_path)), ("count", str(len(aliases)))],
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.chmod(tmp_path, 0o644)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, db_path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
    with contextlib.suppress(OSError):  # some file systems refuse to fsync a directory
        sync_directory(directory)
    return len(aliases)


_Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_mtime_ns, st_size
_KEPT_ANSWERS = 4096  # answers kept from the current file (all dropped when it is full)


class AliasDatabase:
    """Reader for a database built by :func:`build_alias_database`.

    Every :meth:`lookup` does one ``os.stat`` of the path and reopens the
    database when the file was replaced (device, inode, mtime or size
    changed), answering names already looked up in that file from memory.
    A missing database behaves as empty.  Instances may be shared
    between threads; after ``fork`` the child reopens its own connection.
    """

    def __init__(self, db_path: Path) -> None:
        self._path = Path(db_path).absolute()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._identity: _Identity | None = None
        self._answers: dict[str, tuple[str, ...] | None] = {}  # from the current file
        self._pid = os.getpid()
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    def _drop(self) -> None:
        if self._conn is not None:
            if self._pid == os.getpid():
                self._conn.close()
            self._conn = None
        self._identity = None
        self._answers.clear()

    def _stat_identity(self) -> _Identity | None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self) -> sqlite3.Connection | None:
        """Return a connection to the current database file, or None if it is missing."""
        if self._pid != os.getpid():
            # A connection inherited over fork must not be used (or closed) here.
            self._conn = None
            self._identity = None
            self._answers.clear()
            self._pid = os.getpid()
        identity = self._stat_identity()
        if self._conn is not None and identity == self._identity:
            return self._conn
        self._drop()
        for _attempt in range(5):
            if identity is None:
                return None
            try:
                conn = self._open_verified()
            except AliasDatabaseError:
                # Replaced or removed while we were opening it?  Then try the new file.
                now = self._stat_identity()
                if now == identity:
                    raise
                identity = now
                continue
            now = self._stat_identity()
            if now != identity:
                # Replaced between stat and open: we may hold either file; start over.
                conn.close()
                identity = now
                continue
            self._conn = conn
            self._identity = identity
            return conn
        raise AliasDatabaseError(f"{self._path}: changed too often while being opened")

    def _open_verified(self) -> sqlite3.Connection:
        uri = self._path.as_uri() + "?mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise AliasDatabaseError(f"{self._path}: cannot open: {exc}") from exc
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version != SCHEMA_VERSION:
                raise AliasDatabaseError(
                    f"{self._path}: unsupported alias database version {version}"
                )
            conn.execute("SELECT 1 FROM aliases LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise AliasDatabaseError(f"{self._path}: not an alias database: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def lookup(self, name: str) -> tuple[str, ...] | None:
        """Return the destinations of alias *name* (case-insensitive), or None."""
        with self._lock:
            if self._closed:
                raise ValueError("lookup on a closed AliasDatabase")
            conn = self._refresh()
            if conn is None:
                return None
            key = normalize_local(name)
            answers = self._answers
            if key in answers:
                return answers[key]
            try:
                row = conn.execute("SELECT targets FROM aliases WHERE name = ?", (key,)).fetchone()
            except sqlite3.DatabaseError as exc:
                self._drop()
                raise AliasDatabaseError(f"{self._path}: {exc}") from exc
            found = None if row is None else tuple(str(t) for t in json.loads(row[0]))
            if len(answers) >= _KEPT_ANSWERS:
                answers.clear()
            answers[key] = found
            return found

    def close(self) -> None:
        with self._lock:
            self._drop()
            self._closed = True

    def __enter__(self) -> AliasDatabase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
