"""Delivery destinations as typed data, from expansion to delivery, and their queue-file form.

This module owns what a destination *is*.  A destination carries its kind as data from
the moment recipient expansion creates it until an agent delivers it; nothing ever decides
a destination's kind from the first character of a string:

* :class:`RemoteAddress`: another host's mailbox, kept in RFC 5321 form (its local part
  quoted where §4.1.2 requires it, see :func:`~posthouse.mta.address.quote_local`);
* :class:`LocalMailbox`: the spool mailbox of a local user, no more aliasing;
* :class:`FileDestination` and :class:`ProgramDestination`: a file appended to and a
  program run, created only by expansion of the aliases file, a ``.forward`` or an
  ``:include:`` file that passed the safety rules; ``run_as`` names the account they run
  as (``""``: the configured default user, sendmail's ``DefaultUser``).

In the queue file an expanded recipient is stored as ``kind`` + ``address`` (+ ``run_as``),
see :func:`encode` and :func:`decode`.  Entries written before kinds existed have no
``kind``: :data:`LEGACY` marks them, and :func:`legacy_token` gives the notation they used
(``\\user``, ``/path``, ``|command``, ``user@host``), which is only ever compared against,
never interpreted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from posthouse.mta.address import split_address, unquote_local

__all__ = [
    "ADDRESS",
    "LEGACY",
    "Destination",
    "FileDestination",
    "Kind",
    "LocalMailbox",
    "ProgramDestination",
    "RemoteAddress",
    "decode",
    "encode",
    "legacy_token",
    "shown",
]

Kind = Literal["address", "remote", "local", "file", "program", "legacy"]
KINDS: Final = ("address", "remote", "local", "file", "program", "legacy")
ADDRESS: Final = "address"  # an envelope recipient not yet expanded
LEGACY: Final = "legacy"  # an expanded token from a queue file older than kinds


@dataclass(frozen=True)
class LocalMailbox:
    """Deliver into the mailbox of local user *user* (lower-case)."""

    user: str


@dataclass(frozen=True)
class RemoteAddress:
    """Relay to *address*: an RFC 5321 mailbox, local part quoted as §4.1.2 requires, domain
    lower-case.  Build it with :func:`posthouse.mta.address.join_address`."""

    address: str

    @property
    def local_part(self) -> str:
        """The local part, unquoted."""
        return unquote_local(split_address(self.address)[0])


@dataclass(frozen=True)
class ProgramDestination:
    """Pipe the message into *command*, run as *run_as* (``""``: the default user);
    *alias* is the alias or user it came from."""

    command: str
    alias: str
    run_as: str = ""


@dataclass(frozen=True)
class FileDestination:
    """Append the message to the file *path*, opened as *run_as* (``""``: the default
    user); *alias* is the alias or user it came from."""

    path: str
    alias: str
    run_as: str = ""


Destination = LocalMailbox | RemoteAddress | ProgramDestination | FileDestination


def encode(destination: Destination) -> tuple[Kind, str, str | None]:
    """``(kind, address, run_as)`` for the queue file."""
    match destination:
        case RemoteAddress(address=address):
            return "remote", address, None
        case LocalMailbox(user=user):
            return "local", user, None
        case FileDestination(path=path, run_as=run_as):
            return "file", path, run_as
        case ProgramDestination(command=command, run_as=run_as):
            return "program", command, run_as
    raise TypeError(f"not a destination: {destination!r}")


def decode(kind: str, address: str, run_as: str | None, alias: str = "") -> Destination | None:
    """The destination a queue file's ``kind``/``address``/``run_as`` stand for; None for
    kinds that are not a destination (:data:`ADDRESS`, :data:`LEGACY`, unknown)."""
    match kind:
        case "remote":
            return RemoteAddress(address)
        case "local":
            return LocalMailbox(address)
        case "file":
            return FileDestination(address, alias, run_as or "")
        case "program":
            return ProgramDestination(address, alias, run_as or "")
    return None


def shown(kind: str, address: str) -> str:
    """How ``mailq`` shows an expanded recipient: sendmail's notation, typed by its kind
    (``\\user``, ``|command``, ``/path``, the address itself)."""
    match kind:
        case "local":
            return "\\" + address
        case "program":
            return "|" + address
    return address


def legacy_token(destination: Destination) -> str:
    """The token an older version wrote for *destination* (for comparison only)."""
    match destination:
        case LocalMailbox(user=user):
            return "\\" + user
        case FileDestination(path=path):
            return path
        case ProgramDestination(command=command):
            return "|" + command
        case RemoteAddress() as remote:
            return f"{remote.local_part}@{split_address(remote.address)[1]}"
    raise TypeError(f"not a destination: {destination!r}")
