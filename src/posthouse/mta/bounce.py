"""Delivery status notifications (RFC 3464) for recipients that failed for good.

A bounce goes to the envelope sender with the null sender ``<>`` (RFC 5321
§4.5.5), so it can never cause another bounce to a stranger.  When the failed
message was itself a bounce, the notice goes to the postmaster instead; when
even that fails, the message is logged and dropped, never looped.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import datetime
from email.utils import format_datetime, formatdate

from posthouse.mta.queue.store import Envelope, QueueStore, RecipientState

log = logging.getLogger("posthouse.mta.bounce")

MAX_RETURNED_HEADER_BYTES = 64 * 1024


class BounceMaker:
    """Builds and queues DSNs."""

    def __init__(self, store: QueueStore, *, hostname: str, postmaster: str = "postmaster") -> None:
        self.store = store
        self.hostname = hostname
        self.postmaster = postmaster

    def bounce(self, envelope: Envelope, failed: list[RecipientState]) -> str | None:
        """Queue a DSN about ``failed``; returns its queue id, or None when none is sent."""
        kind = envelope.extra.get("bounce", "")
        if kind == "double":
            log.error(
                "%s: double bounce for %s dropped: %s",
                envelope.queue_id,
                ", ".join(r.original or r.address for r in failed),
                "; ".join(r.last_error or "" for r in failed),
            )
            return None
        if envelope.sender:
            recipient, next_kind = envelope.sender, "single"
        else:
            recipient, next_kind = self.postmaster, "double"
        content = self.render(envelope, failed, recipient)
        message = self.store.new_message(
            "", [recipient], protocol="local", extra={"bounce": next_kind}
        )
        try:
            message.write(content)
            queue_id = message.commit_blocking()
        except BaseException:
            message.abort()
            raise
        log.info("%s: sender notify: %s (DSN %s)", envelope.queue_id, recipient, queue_id)
        return queue_id

    def delay_warning(self, envelope: Envelope, waiting: list[RecipientState]) -> str | None:
        """Queue an RFC 3464 "delayed" notice to the sender (never for bounces); its id."""
        if not envelope.sender or envelope.extra.get("bounce"):
            return None
        content = self.render(envelope, waiting, envelope.sender, action="delayed")
        message = self.store.new_message(
            "", [envelope.sender], protocol="local", extra={"bounce": "single"}
        )
        try:
            message.write(content)
            queue_id = message.commit_blocking()
        except BaseException:
            message.abort()
            raise
        log.info("%s: delay warning to %s (DSN %s)", envelope.queue_id, envelope.sender, queue_id)
        return queue_id

    def render(
        self,
        envelope: Envelope,
        failed: list[RecipientState],
        recipient: str,
        *,
        action: str = "failed",
    ) -> bytes:
        boundary = f"{envelope.queue_id}.{secrets.token_hex(8)}/{self.hostname}"
        arrival = format_datetime(datetime.fromtimestamp(envelope.received_at).astimezone())
        lines = [
            f"From: Mail Delivery System <MAILER-DAEMON@{self.hostname}>",
            f"To: <{recipient}>",
            (
                "Subject: Undelivered Mail Returned to Sender"
                if action == "failed"
                else "Subject: Delayed Mail (still being retried)"
            ),
            f"Date: {formatdate(time.time(), localtime=True)}",
            f"Message-ID: <{envelope.queue_id}.{secrets.token_hex(6)}@{self.hostname}>",
            "Auto-Submitted: auto-replied",  # RFC 3834 §5
            "MIME-Version: 1.0",
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
            "",
            "This is a MIME-encapsulated message.",
            "",
            f"--{boundary}",
            "Content-Type: text/plain; charset=utf-8",
            "",
            f"This is the mail system at host {self.hostname}.",
            "",
            *(
                (
                    "I'm sorry to have to inform you that your message could not",
                    "be delivered to one or more recipients. The reasons are below.",
                )
                if action == "failed"
                else (
                    "Your message could not be delivered yet to the recipients below.",
                    "The mail system will keep trying; no action is needed from you.",
                )
            ),
            "",
        ]
        for rcpt in failed:
            lines.append(f"<{rcpt.original or rcpt.address}>: {rcpt.last_error or 'failed'}")
        lines += [
            "",
            f"--{boundary}",
            "Content-Type: message/delivery-status",
            "",
            # RFC 3464 §2.2: per-message fields.
            f"Reporting-MTA: dns; {self.hostname}",
            f"X-Posthouse-Queue-ID: {envelope.queue_id}",
            f"Arrival-Date: {arrival}",
        ]
        for rcpt in failed:
            status, _, text = (rcpt.last_error or "5.0.0 failed").partition(" ")
            if not status[:1].isdigit():
                status, text = "5.0.0", rcpt.last_error or "failed"
            lines += [
                "",
                # RFC 3464 §2.3: per-recipient fields.
                f"Final-Recipient: rfc822; {rcpt.original or rcpt.address}",
                f"Action: {action}",
                f"Status: {status}",
                f"Diagnostic-Code: X-Posthouse; {text}",
            ]
        lines += [
            "",
            f"--{boundary}",
            "Content-Type: text/rfc822-headers",
            "",
        ]
        head = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n"
        original = self._original_headers(envelope.queue_id)
        return head + original + f"\r\n--{boundary}--\r\n".encode()

    def _original_headers(self, queue_id: str) -> bytes:
        try:
            with self.store.open_data(queue_id) as stream:
                data = stream.read(MAX_RETURNED_HEADER_BYTES)
        except OSError:
            return b""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            end = data.find(b"\n\n")
        header = data if end < 0 else data[:end]
        return header.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
