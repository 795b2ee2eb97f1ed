"""Connection admission: a total limit and a limit per client address, counted from accept.

A connection is counted the moment it is accepted, before any TLS handshake or greeting,
so clients that never finish a handshake use up their own per-client slots and no one
else's.  As Postfix's ``smtpd_client_event_limit_exceptions`` does, trusted networks (and
local unix-socket clients) are exempt from the per-client limit, and a client that has
authenticated stops counting against it (:meth:`ConnectionLimiter.exempt`): a busy trusted
or authenticated source is limited only by the total.  The counts are per worker process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Slot:
    """One admitted connection; ``per_client`` while it counts against its client's limit."""

    client: str
    per_client: bool


def _never(_client: str) -> bool:
    return False


class ConnectionLimiter:
    """Counts live connections in this process, in total and per client address."""

    def __init__(
        self,
        max_total: int,
        max_per_client: int,
        exempt: Callable[[str], bool] = _never,
    ) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.is_exempt = exempt  # client address -> exempt from the per-client limit
        self._per_client: Counter[str] = Counter()
        self._total = 0

    @property
    def total(self) -> int:
        return self._total

    def count(self, client: str) -> int:
        """Connections counted against ``client``'s own limit."""
        return self._per_client[client]

    def admit(self, client: str) -> Slot | str:
        """Take a slot for ``client``: the slot when admitted, else the reason it was not."""
        if self._total >= self.max_total:
            return "too many connections"
        per_client = bool(client) and not self.is_exempt(client)
        if per_client and self._per_client[client] >= self.max_per_client:
            return f"too many connections from {client}"
        self._total += 1
        if per_client:
            self._per_client[client] += 1
        return Slot(client, per_client)

    def exempt(self, slot: Slot) -> None:
        """The client of ``slot`` authenticated: it no longer counts against its own limit."""
        if slot.per_client:
            slot.per_client = False
            self._drop(slot.client)

    def release(self, slot: Slot) -> None:
        self._total -= 1
        if slot.per_client:
            slot.per_client = False
            self._drop(slot.client)

    def _drop(self, client: str) -> None:
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]
