"""What POP3 needs from any mail store: a maildrop (RFC 1939).

A :class:`Maildrop` is one POP session's view of a user's mail:

* it is opened with an exclusive *session* lock (RFC 1939 §8): a second session for the
  same user fails with :class:`MaildropBusy` (``-ERR [IN-USE]``) while the first is open;
  mail delivery is **not** blocked by that lock;
* :attr:`Maildrop.messages` is a snapshot taken at open: messages delivered during the
  session are not shown (they appear in the next session);
* :meth:`Maildrop.read` streams one message in its RFC 5322 form: CRLF line ends, no mbox
  ``From_`` line, mboxrd quoting removed (how it goes on the wire, byte-stuffing included,
  is the POP3 engine's business);
* :meth:`Maildrop.commit_deletions` is the UPDATE state (RFC 1939 §6): it removes the
  messages marked deleted, durably, without touching mail delivered since the open;
* :meth:`Maildrop.close` releases the session lock (it is also released if the process
  dies).

Errors: :class:`MaildropBusy` for the session lock, :class:`MaildropError` (with a
``temporary`` flag, for ``[SYS/TEMP]`` versus ``[SYS/PERM]``) for everything else the
store cannot do.  Message numbers out of range raise :class:`IndexError`.

The concrete mbox implementation is :class:`posthouse.store.mbox.maildrop.MboxMaildrop`;
:func:`open_maildrop` is the factory the POP3 server uses.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from posthouse.store.mbox.locking import LockSettings

__all__ = [
    "Maildrop",
    "MaildropBusy",
    "MaildropError",
    "MaildropMessage",
    "open_maildrop",
]


class MaildropMessage(NamedTuple):
    """One message of a maildrop snapshot.

    ``number`` is 1-based and stable for the session.  ``uid`` is the RFC 1939 §7 unique-id
    (1-70 characters in 0x21-0x7E), stable across sessions, restarts and deletions of
    other messages.  ``size`` is the exact number of octets :meth:`Maildrop.read` yields
    (CRLF line ends, mboxrd quoting removed).  ``dot_free`` is what the store knows of the
    content without reading it: True when no line of it starts with ``.`` (False: some
    line does, or the store does not know), which spares the POP3 server a scan for lines
    to byte-stuff.
    """

    number: int
    uid: str
    size: int
    dot_free: bool = False


class MaildropBusy(Exception):
    """The maildrop is already open by another POP session (``-ERR [IN-USE]``)."""


class MaildropError(Exception):
    """The maildrop cannot be opened, read or updated (damaged or changed spool, I/O error).

    ``temporary`` tells whether trying again later may help (``[SYS/TEMP]``) or not
    (``[SYS/PERM]``).
    """

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


@runtime_checkable
class Maildrop(Protocol):
    """One POP session's locked view of a user's mail (see the module docstring)."""

    @property
    def messages(self) -> Sequence[MaildropMessage]:
        """The snapshot taken at open; ``messages[i].number == i + 1``."""
        ...

    def read(self, number: int) -> Iterator[bytes]:
        """Content chunks of message ``number`` (CRLF, unquoted, no ``From_`` line).

        Problems detectable up front (a changed spool) raise :class:`MaildropError` from
        the call itself, before any chunk is produced.
        """
        ...

    def commit_deletions(self, numbers: Collection[int]) -> None:
        """Remove the messages ``numbers`` durably; mail delivered since the open is kept."""
        ...

    def close(self) -> None:
        """Release the session lock.  Idempotent."""
        ...


def open_maildrop(
    path: Path,
    *,
    user: str,
    locking: LockSettings,
    index_dir: Path,
    session_lock_dir: Path,
) -> Maildrop:
    """Open the mbox maildrop ``path`` of ``user`` for a POP session.

    See :meth:`posthouse.store.mbox.maildrop.MboxMaildrop.open` for the parameters.
    """
    from posthouse.store.mbox.maildrop import MboxMaildrop  # local import: avoids a cycle

    return MboxMaildrop.open(
        path,
        user=user,
        locking=locking,
        index_dir=index_dir,
        session_lock_dir=session_lock_dir,
    )
