"""The errors administrative operations raise: one class per kind of failure.

Front ends map the classes once (the CLIs to sysexits codes in :mod:`posthouse.cli.exits`,
a web console to HTTP statuses); the message is for the operator.  :func:`translated`
turns the domain layers' own errors into these, so every operation reports them alike.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from posthouse.auth.mailauth import MailAuthError
from posthouse.auth.users import InvalidUserName, NoSuchUser, UserExists
from posthouse.config.load import ConfigError

__all__ = [
    "AdminError",
    "AlreadyExists",
    "CannotWrite",
    "InputMissing",
    "InvalidRequest",
    "NotConfigured",
    "NotFound",
    "NotPermitted",
    "StorageFailure",
    "Unavailable",
    "translated",
]


class AdminError(Exception):
    """An administrative operation could not be done; the message says why."""


class InvalidRequest(AdminError):
    """Bad or missing input from the operator (a name, a password, an option)."""


class InputMissing(AdminError):
    """The input file to import does not exist."""


class NotFound(AdminError):
    """No such user."""


class AlreadyExists(AdminError):
    """The user to add exists already."""


class StorageFailure(AdminError):
    """A database or file could not be read or written."""


class CannotWrite(StorageFailure):
    """A file could not be created or replaced."""


class NotPermitted(AdminError):
    """The current password given is wrong."""


class Unavailable(AdminError):
    """The running daemon, needed for the operation, does not answer."""


class NotConfigured(AdminError):
    """The configuration is invalid, or the mailauth database is not set up or unusable."""


@contextmanager
def translated(where: str = "") -> Iterator[None]:
    """Raise the domain layers' errors inside the block as :class:`AdminError` kinds.

    *where* (a file name) prefixes the message of storage failures."""
    prefix = f"{where}: " if where else ""
    try:
        yield
    except AdminError:
        raise
    except InvalidUserName as exc:
        raise InvalidRequest(str(exc)) from exc
    except NoSuchUser as exc:
        raise NotFound(f"no such user: {exc}") from exc
    except UserExists as exc:
        raise AlreadyExists(f"user already exists: {exc}") from exc
    except (MailAuthError, ConfigError) as exc:
        raise NotConfigured(str(exc)) from exc
    except (OSError, sqlite3.Error) as exc:
        raise StorageFailure(f"{prefix}{exc}") from exc
