"""Converting a user's mbox spool file into their IMAP mailbox (``mailcv -I``, 12.5.3).

:func:`convert_spool_to_imap` appends every message of the mbox file to the user's INBOX
(or ``INBOX.SUBFOLDER``, created when missing), after what is there, keeping each message's
internal date from its ``From_`` line and its flags from the ``Status:``/``X-Status:``
fields (:mod:`posthouse.store.mbox.entry_state`).  Messages go in batches through the
store's append (each batch fsynced and committed before the next), as the user, so the
user's own seen state gets ``\\Seen``.  Messages marked old (``O``/``R``) at the start of
the file are not ``\\Recent`` (the store keeps \\Recent as one mark per user, Cyrus's
"recent UID": what follows the first new message stays recent).

**No mail is lost** (12.5.3: "mail received ... prior to the conversion process is not
lost"): the spool file stays locked with the delivery agent's own lock for the whole
conversion, so a delivery to it waits (or is queued and retried); everything the file
holds is converted, and only after the last batch is in the store is the file emptied
(``ftruncate`` + ``fsync``), still under the lock.  If the conversion fails or the machine
crashes before that, the spool file is left whole: running ``mailcv -I`` again may append
some messages twice but never loses one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from posthouse.admin.errors import InputMissing, InvalidRequest, NotFound, StorageFailure
from posthouse.admin.mailstore import run_with_store, store_errors
from posthouse.app import lock_settings_for
from posthouse.config.schema import Settings
from posthouse.store.backend import NewMessage
from posthouse.store.content import to_crlf
from posthouse.store.errors import MailboxExists
from posthouse.store.mbox.entry_state import from_line_date, status_flags
from posthouse.store.mbox.locking import MailboxLockTimeout, locked_mailbox
from posthouse.store.mbox.mboxrd import MboxrdDecoder
from posthouse.store.mbox.scan import Scanned, scan
from posthouse.store.names import INBOX, SEPARATOR, check_name, user_inbox
from posthouse.store.service import MailStore

__all__ = ["BATCH_BYTES", "BATCH_MESSAGES", "ImapConversion", "convert_spool_to_imap"]

BATCH_MESSAGES = 200
BATCH_BYTES = 16 * 1024 * 1024
Progress = Callable[[int, int], None]  # (messages done, messages in all)


@dataclass(frozen=True)
class ImapConversion:
    """What a conversion did: ``messages`` appended to the user's mailbox ``mailbox``."""

    mailbox: str
    messages: int


def convert_spool_to_imap(
    settings: Settings,
    spool: Path,
    user: str,
    subfolder: str | None = None,
    *,
    progress: Progress | None = None,
) -> ImapConversion:
    """Move the messages of the mbox file ``spool`` into ``user``'s INBOX or
    ``INBOX.subfolder`` (module docstring)."""
    if not spool.is_file():
        raise InputMissing(f"{spool}: no such mail folder")
    visible = INBOX if not subfolder else INBOX + SEPARATOR + subfolder
    locking = lock_settings_for(settings)
    try:
        with locked_mailbox(
            spool, locking.method, timeout=locking.timeout, stale_after=locking.stale_after
        ) as file:
            fd = file.fileno()
            entries, _ = scan(fd, 0, spool)
            with store_errors(user):
                run_with_store(
                    settings, lambda store: _append(store, fd, entries, user, visible, progress)
                )
            os.ftruncate(fd, 0)  # everything was converted, and nothing came in: locked
            os.fsync(fd)
    except (OSError, MailboxLockTimeout) as exc:
        raise StorageFailure(f"{spool}: {exc}") from exc
    return ImapConversion(visible, len(entries))


async def _append(
    store: MailStore,
    fd: int,
    entries: list[Scanned],
    user: str,
    visible: str,
    progress: Progress | None,
) -> None:
    internal = user_inbox(user)
    if await store.backend.get_mailbox(internal) is None:
        raise NotFound(f"{user} has no IMAP INBOX: make the user IMAP type first (mailusradm)")
    session = store.session(user)
    if visible != INBOX:
        internal = check_name(internal + visible[len(INBOX) :])
        with contextlib.suppress(MailboxExists):
            await session.create(visible)
    record = await store.backend.get_mailbox(internal)
    if record is None:
        raise InvalidRequest(f"{visible}: cannot be created")
    done = 0
    old_until = 0  # the last UID of the leading run of old messages
    leading_old = True
    for batch in _batches(entries):
        messages, olds = zip(*(_message(fd, entry) for entry in batch), strict=True)
        result = await session.append(visible, list(messages))
        for uid, old in zip(result.uids, olds, strict=True):
            leading_old = leading_old and old
            if leading_old:
                old_until = uid
        done += len(batch)
        if progress is not None:
            progress(done, len(entries))
    if old_until:
        await store.backend.claim_recent(record.id, user, old_until)


def _batches(entries: list[Scanned]) -> Iterator[list[Scanned]]:
    batch: list[Scanned] = []
    size = 0
    for entry in entries:
        if batch and (len(batch) >= BATCH_MESSAGES or size + entry.length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry.length
    if batch:
        yield batch


def _message(fd: int, entry: Scanned) -> tuple[NewMessage, bool]:
    raw = os.pread(fd, entry.from_len + entry.content_len, entry.offset)
    decoder = MboxrdDecoder()
    content = decoder.feed(raw[entry.from_len :]) + decoder.finish()
    state = status_flags(to_crlf(content))
    date = from_line_date(raw[: entry.from_len]) or datetime.now(UTC)
    return NewMessage(state.content, date, state.flags), state.old
