"""Protocol-neutral MTA errors.

Domain code raises ``MailError`` with an RFC 3463 enhanced status code and a
human sentence; each server maps it to its own reply (an SMTP reply code, an
LMTP per-recipient reply, a DSN action).  The first digit of the status says
whether the failure is temporary (4) or permanent (5).
"""

from __future__ import annotations


class MailError(Exception):
    """A refusal or failure with an enhanced status code (RFC 3463 §3)."""

    def __init__(self, status: str, message: str, *, remote: tuple[int, str] | None = None) -> None:
        if status[:2] not in ("4.", "5."):
            raise ValueError(f"status {status!r} is not a failure status")
        self.status = status
        self.message = message
        # Another host's reply this error reports: its code and its text (after the status).
        self.remote = remote
        super().__init__(f"{status} {message}")

    @property
    def temporary(self) -> bool:
        return self.status.startswith("4.")
