"""Converting an MH POP3 folder into a user's mbox spool file (``mailcv -Q``, §12.4.2.1 step 5).

MH's POP3 server kept each subscriber's mail as an MH folder: a directory whose messages are
files named by their number (``1``, ``2``, ...; other names such as ``.mh_sequences`` are
MH's bookkeeping).  :func:`convert_mh_folder` appends every numbered message, in numeric
order, to the spool mailbox of the user (``spool/mail/USER``, the name checked as delivery
checks it), exactly as local delivery appends: under the configured lock, in one
all-or-nothing transaction that is fsynced before it returns, and owned like a mailbox
delivery creates.  The folder itself is left as it was.

Each message's envelope sender (its ``From_`` line) is the address of its ``Return-Path:``
field, else ``MAILER-DAEMON``; its time, the file's modification time.  A ``From_`` line
a message file starts with (some MH versions kept one) is dropped, as the mbox writes its
own.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from posthouse.admin.errors import InputMissing, InvalidRequest, StorageFailure
from posthouse.app import build_application, daemon_account_uids
from posthouse.config.schema import Settings
from posthouse.store.mbox.append import MboxMessage, append_messages
from posthouse.store.mbox.locking import MailboxLockTimeout, MailboxNameError, spool_file

__all__ = ["MAX_MESSAGES", "MailcvReport", "convert_mh_folder", "mh_messages"]

MAX_MESSAGES = 1_000_000  # a limit on input: more files than any POP maildrop held
_HEAD = 64 * 1024  # bytes of a message searched for its Return-Path: field
_RETURN_PATH = re.compile(rb"^Return-Path:[ \t]*<?([^>\r\n]*)>?", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class MailcvReport:
    """What a conversion did: messages appended to ``mailbox``."""

    mailbox: Path
    messages: int


def mh_messages(folder: Path) -> list[Path]:
    """The message files of an MH folder, in numeric order (InputMissing / InvalidRequest)."""
    if not folder.exists():
        raise InputMissing(f"{folder}: no such MH folder")
    if not folder.is_dir():
        raise InvalidRequest(f"{folder}: not an MH folder (a directory of numbered messages)")
    numbered = [p for p in folder.iterdir() if p.name.isdigit() and p.is_file()]
    if len(numbered) > MAX_MESSAGES:
        raise InvalidRequest(f"{folder}: more than {MAX_MESSAGES} messages")
    return sorted(numbered, key=lambda p: int(p.name))


def convert_mh_folder(settings: Settings, folder: Path, user: str) -> MailcvReport:
    """Append the messages of ``folder`` to ``user``'s spool mailbox (module docstring)."""
    try:
        mailbox = spool_file(settings.paths.spool_dir, user)
    except MailboxNameError as exc:
        raise InvalidRequest(str(exc)) from exc
    files = mh_messages(folder)
    app = build_application(settings)
    try:
        found = app.users.get(user)
        owner = None
        if found is not None and found.uid is not None and found.gid is not None:
            owner = (found.uid, found.gid)
        opened: list[BinaryIO] = []
        messages: list[MboxMessage] = []
        try:
            for path in files:
                stream = path.open("rb")
                opened.append(stream)
                messages.append(_message(path, stream))
            append_messages(
                mailbox,
                messages,
                method=app.locking.method,
                timeout=app.locking.timeout,
                stale_after=app.locking.stale_after,
                owner=owner,
                trusted_uids=daemon_account_uids(settings.config.server.run_as),
            )
        except (OSError, MailboxLockTimeout) as exc:
            raise StorageFailure(f"{mailbox}: {exc} (nothing was appended)") from exc
        finally:
            for opened_file in opened:
                opened_file.close()
    finally:
        app.close()
    return MailcvReport(mailbox, len(messages))


def _message(path: Path, stream: BinaryIO) -> MboxMessage:
    head = stream.read(_HEAD)
    start = 0
    if head.startswith(b"From "):
        start = head.find(b"\n") + 1 if b"\n" in head else len(head)
    match = _RETURN_PATH.search(head[start:].split(b"\n\n", 1)[0])
    sender = match.group(1).strip().decode("utf-8", "replace") if match else ""
    stream.seek(start, io.SEEK_SET)
    received = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return MboxMessage(sender=sender or "MAILER-DAEMON", content=stream, received=received)
