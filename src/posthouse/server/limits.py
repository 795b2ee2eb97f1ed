"""Connection admission: a total limit and a limit per client address."""

from __future__ import annotations

from collections import Counter


class ConnectionLimiter:
    """Counts live connections in this process, in total and per client address."""

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._per_client: Counter[str] = Counter()
        self._total = 0

    @property
    def total(self) -> int:
        return self._total

    def admit(self, client: str) -> str | None:
        """Take a slot for ``client``; returns None when admitted, else the reason it was not."""
        if self._total >= self.max_total:
            return "too many connections"
        if self._per_client[client] >= self.max_per_client:
            return f"too many connections from {client}"
        self._total += 1
        self._per_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self._total -= 1
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]
