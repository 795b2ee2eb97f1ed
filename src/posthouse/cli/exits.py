"""Exit statuses of the tools (sysexits(3)) and how an administrative error becomes one.

Every tool reports an :class:`~posthouse.admin.errors.AdminError` the same way: its message
on standard error after the tool's name, and the status of its kind.
"""

from __future__ import annotations

from typing import TextIO

from posthouse.admin.errors import (
    AdminError,
    AlreadyExists,
    CannotWrite,
    InputMissing,
    InvalidRequest,
    NotConfigured,
    NotFound,
    NotPermitted,
    StorageFailure,
    Unavailable,
)

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_CANTCREAT = 73
EX_IOERR = 74
EX_NOPERM = 77
EX_CONFIG = 78

#: Checked in this order: a kind before the kinds it is a case of.
_STATUS: dict[type[AdminError], int] = {
    InvalidRequest: EX_USAGE,
    InputMissing: EX_NOINPUT,
    NotFound: EX_NOUSER,
    AlreadyExists: EX_CANTCREAT,
    CannotWrite: EX_CANTCREAT,
    StorageFailure: EX_IOERR,
    NotPermitted: EX_NOPERM,
    NotConfigured: EX_CONFIG,
    Unavailable: EX_UNAVAILABLE,
}


def exit_status(error: AdminError) -> int:
    """The sysexits status of *error*'s kind."""
    for kind, status in _STATUS.items():
        if isinstance(error, kind):
            return status
    return EX_IOERR


def report(tool: str, error: AdminError, stderr: TextIO) -> int:
    """Print ``TOOL: message`` on *stderr*; return the exit status."""
    print(f"{tool}: {error}", file=stderr)
    return exit_status(error)
