"""``posthouse deliver -l``: LMTP (RFC 2033) on standard input and output, as Cyrus's
``deliver -l`` speaks it to an MTA that delivers over a pipe.

The conversation is the SMTP engine's, in its LMTP mode (LHLO, MAIL, RCPT, DATA or BDAT,
one reply per recipient after the message); each message is delivered exactly as
``posthouse deliver`` delivers (:func:`posthouse.admin.deliver.deliver_message`: durable
in every mailbox before its reply).  A recipient is ``user`` or ``user+folder`` (the
mailbox ``INBOX.folder`` when it admits posting, else the INBOX), bare as Cyrus's lmtpd
takes it (the engine's LMTP mode, RFC 2033 §3: final delivery) or with any domain, which is
not looked at: whoever pipes to ``deliver`` has routed the mail here.  The session ends at
QUIT or at the end of input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from posthouse.admin.deliver import DeliverRequest, DeliverResult, deliver_message
from posthouse.config.schema import Settings
from posthouse.protocols.smtp.engine import NEED_DATA, SMTPEngine, SMTPSettings
from posthouse.protocols.smtp.events import (
    DataStart,
    Hello,
    MailFrom,
    MessageAborted,
    MessageData,
    MessageEnd,
    RcptTo,
    Reset,
)
from posthouse.protocols.smtp.replies import Reply
from posthouse.server.smtp import reply_for_error

__all__ = ["DeliverOptions", "serve_lmtp"]

READ_SIZE = 65536
SENDER_OK = Reply(250, "2.1.0", ("Sender OK",))
RECIPIENT_OK = Reply(250, "2.1.5", ("Recipient OK",))
NO_USER = Reply(550, "5.1.3", ("A recipient is user or user+folder, with a domain or not",))


@dataclass(frozen=True)
class DeliverOptions:
    """What ``deliver``'s other options say about every message of the session."""

    poster: str | None = None  # -a
    ignore_quota: bool = False  # -q
    suppress_duplicates: bool = False  # -e


def recipient(address: str) -> tuple[str, str | None] | None:
    """(user, folder or None) of an RCPT address, or None when it names no user."""
    local = address.rpartition("@")[0] if "@" in address else address
    user, plus, folder = local.partition("+")
    if not user or (plus and not folder):
        return None
    return user, folder or None


def serve_lmtp(
    settings: Settings, stdin: BinaryIO, stdout: BinaryIO, options: DeliverOptions
) -> int:
    """Run one LMTP session on the two streams; 0 (each message's outcome is its replies)."""
    engine = SMTPEngine(
        SMTPSettings(
            hostname=settings.config.server.hostname or "localhost",
            mode="lmtp",
            max_message_size=settings.config.imap.maxmessagesize,
        )
    )
    read = getattr(stdin, "read1", stdin.read)
    sender = ""
    recipients: list[tuple[str, str | None]] = []
    content = bytearray()
    while not engine.closed:
        event = engine.next_event()
        if event is NEED_DATA:
            _write(stdout, engine.data_to_send())
            data = read(READ_SIZE)
            if data:
                engine.receive_data(data)
            else:
                engine.receive_eof()
            continue
        match event:
            case MailFrom(address=address):
                sender, recipients = address, []
                engine.respond(SENDER_OK)
            case RcptTo(address=address):
                target = recipient(address)
                if target is None:
                    engine.respond(NO_USER)
                else:
                    recipients.append(target)
                    engine.respond(RECIPIENT_OK)
            case DataStart() | MessageAborted():
                content.clear()
            case MessageData(data=data):
                content += data
            case MessageEnd():
                engine.respond_per_recipient(
                    _deliver(settings, options, sender, recipients, bytes(content))
                )
                content.clear()
                recipients = []
            case Hello() | Reset():
                recipients = []
    _write(stdout, engine.data_to_send())
    return 0


def _deliver(
    settings: Settings,
    options: DeliverOptions,
    sender: str,
    recipients: list[tuple[str, str | None]],
    content: bytes,
) -> list[Reply]:
    """One delivery per folder asked for; the replies in the order of the recipients."""
    results: dict[tuple[str, str | None], DeliverResult] = {}
    for folder in dict.fromkeys(folder for _, folder in recipients):
        users = tuple(dict.fromkeys(user for user, f in recipients if f == folder))
        request = DeliverRequest(
            users,
            content,
            sender,
            folder,
            options.poster,
            ignore_quota=options.ignore_quota,
            suppress_duplicates=options.suppress_duplicates,
        )
        for user, result in zip(users, deliver_message(settings, request), strict=True):
            results[user, folder] = result
    replies = []
    for user, folder in recipients:
        result = results[user, folder]
        name = f"{user}+{folder}" if folder else user
        if result.error is not None:
            replies.append(reply_for_error(result.error))
        elif result.duplicate:
            replies.append(Reply(250, "2.1.5", (f"<{name}> delivered before, not again",)))
        else:
            replies.append(Reply(250, "2.1.5", (f"<{name}> delivered",)))
    return replies


def _write(stdout: BinaryIO, data: bytes) -> None:
    if data:
        stdout.write(data)
        stdout.flush()
