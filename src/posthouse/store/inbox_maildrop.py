"""POP3 over an IMAP user's INBOX: the :class:`~posthouse.store.maildrop.Maildrop` of the store.

POP3 serves IMAP-type users from the IMAP store (chapter 12.5.2), so the same message is
the same bytes over both protocols.  The RFC 1939 §7 unique-id is ``UIDVALIDITY.UID``: stable
across sessions and the same message in IMAP and POP3.  The snapshot is the INBOX at open
(mail delivered during the session shows in the next one); deletions are applied at QUIT as
an expunge of exactly those UIDs (a message another client expunged meanwhile is simply
gone).  The session lock is an ``flock`` on a per-user file, released if the process dies.

The maildrop is blocking (the POP3 server runs it in a thread); it runs the service's
coroutines through ``run`` (``asyncio.run`` by default; a server hands them to its own loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable, Collection, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from posthouse.store.backend import FlagChange, FlagMode
from posthouse.store.errors import MailboxNotFound, MessageNotFound, StoreError
from posthouse.store.maildrop import MaildropBusy, MaildropError, MaildropMessage
from posthouse.store.names import INBOX, InvalidName
from posthouse.store.service import MailStore, OpenMailbox
from posthouse.store.uidset import UidSet

__all__ = ["InboxMaildrop"]

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, Any]], Any]
_CHUNK = 64 * 1024


def _lock(path: Path, user: str) -> int:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MaildropBusy(f"maildrop of {user} is already in use by another session") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


class InboxMaildrop:
    """One POP session on a user's INBOX in the IMAP store.  Create with :meth:`open`."""

    def __init__(self, store: MailStore, mailbox: OpenMailbox, lock_fd: int, run: Runner) -> None:
        self._store = store
        self._mailbox = mailbox
        self._lock_fd: int | None = lock_fd
        self._run = run
        self._session = store.session(mailbox.viewer.user)
        uidvalidity = mailbox.snapshot.status.uidvalidity
        metas = run(self._session.fetch(mailbox, UidSet.of(mailbox.snapshot.uids)))
        self._uids = [m.uid for m in metas]
        self._messages = tuple(
            MaildropMessage(i + 1, f"{uidvalidity}.{m.uid}", m.size) for i, m in enumerate(metas)
        )

    @classmethod
    def open(
        cls,
        store: MailStore,
        user: str,
        *,
        session_lock: Path,
        run: Runner = asyncio.run,
    ) -> InboxMaildrop:
        """Lock ``user``'s POP session (``session_lock`` is the lock file) and take the
        snapshot.  :class:`MaildropBusy` if another session holds it; :class:`MaildropError`
        if the user has no INBOX or the store fails."""
        fd = _lock(session_lock, user)
        try:
            session = store.session(user)
            mailbox = run(session.select(INBOX))
            return cls(store, mailbox, fd, run)
        except (MailboxNotFound, InvalidName) as exc:
            os.close(fd)
            raise MaildropError(f"{user} has no IMAP INBOX: {exc}", temporary=False) from exc
        except StoreError as exc:
            os.close(fd)
            raise MaildropError(f"cannot open {user}'s INBOX: {exc}") from exc
        except BaseException:
            os.close(fd)
            raise

    @property
    def messages(self) -> Sequence[MaildropMessage]:
        return self._messages

    def read(self, number: int) -> Iterator[bytes]:
        if not 1 <= number <= len(self._uids):
            raise IndexError(number)
        try:
            file = self._session.open_message(self._mailbox, self._uids[number - 1])
        except MessageNotFound as exc:
            raise MaildropError(f"message {number} was expunged by another session") from exc
        except StoreError as exc:
            raise MaildropError(str(exc), temporary=exc.temporary) from exc
        return self._chunks(file)

    @staticmethod
    def _chunks(file: Any) -> Iterator[bytes]:
        with file:
            while chunk := file.read(_CHUNK):
                yield chunk

    def commit_deletions(self, numbers: Collection[int]) -> None:
        """RFC 1939 §6 UPDATE: mark the messages \\Deleted and expunge exactly those."""
        if not numbers:
            return
        uids = UidSet.of(self._uids[n - 1] for n in numbers)
        change = FlagChange(FlagMode.ADD, frozenset({"\\Deleted"}))
        try:
            self._run(self._session.store_flags(self._mailbox, uids, change))
            self._run(self._session.expunge(self._mailbox, uids))
        except StoreError as exc:
            raise MaildropError(f"cannot remove the deleted messages: {exc}") from exc

    def close(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> InboxMaildrop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
