"""Failed logins limited per client address and per user name, across worker processes.

:class:`LoginLimiter` owns the rule "at most ``limit`` failed logins in any ``window``
seconds", counted separately per client address and per user name, and shared by every
worker process of ``posthouse serve``: its tables live in a shared memory map made *before*
the workers fork (like :class:`~posthouse.auth.authenticator.VerifiedCache`), so a guesser
spreading its connections over the workers gets no more guesses than one connection would.

A login attempt first :meth:`~LoginLimiter.acquire`\\ s a ticket: atomically, the attempt is
refused if either its client or its user already has ``limit`` failures in the window, and
otherwise counted *as a failure in advance* in both.  A success gives the ticket back
(:meth:`~LoginLimiter.refund`); a failure keeps it.  Counting before the password is checked
is what makes the limit hold for parallel guessers: forty connections racing through
the check cannot all see "9 failures so far".

Each table is a set-associative array (``buckets`` x ``WAYS`` entries) chosen by a keyed
hash (a random key, so clients cannot aim collisions at someone else's entry); an entry holds
the key's tag and the times of its last ``limit`` failures.  A new key takes the way whose
newest failure is oldest.  The file behind the map is unlinked (a memfd where available); a
``lockf`` lock on it orders processes, a thread lock orders threads, and both are released
by the kernel if a worker dies, so no process can wedge the others.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import secrets
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["LoginLimiter", "Ticket"]

WAYS = 4
_TAG = 16
_MAX_KEY = 256  # longer client-supplied names share one entry per prefix


@dataclass(frozen=True)
class Ticket:
    """A login attempt counted in advance; give it back on success."""

    client: str
    user: str
    at: float


class _Table:
    """One set-associative table of failure times inside the shared map."""

    def __init__(self, view: memoryview, buckets: int, limit: int, salt: bytes) -> None:
        self._view = view
        self._buckets = buckets
        self._limit = limit
        self._salt = salt
        self._entry = struct.Struct(f"={_TAG}s{limit}d")

    @staticmethod
    def size_for(buckets: int, limit: int) -> int:
        return buckets * WAYS * struct.calcsize(f"={_TAG}s{limit}d")

    def _tag_and_bucket(self, key: str) -> tuple[bytes, int]:
        raw = key[:_MAX_KEY].encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(raw, key=self._salt, digest_size=_TAG + 8).digest()
        tag = digest[:_TAG]
        if tag == bytes(_TAG):
            tag = b"\x01" + tag[1:]  # all-zero marks an empty entry
        return tag, int.from_bytes(digest[_TAG:], "little") % self._buckets

    def _offset(self, bucket: int, way: int) -> int:
        return (bucket * WAYS + way) * self._entry.size

    def _find(self, key: str, now: float, window: float, create: bool) -> int | None:
        """The offset of ``key``'s entry (made, evicting the stalest way, if ``create``)."""
        tag, bucket = self._tag_and_bucket(key)
        stalest, stalest_time = 0, float("inf")
        for way in range(WAYS):
            offset = self._offset(bucket, way)
            fields = self._entry.unpack_from(self._view, offset)
            if fields[0] == tag:
                return offset
            newest = max(fields[1:])
            if fields[0] == bytes(_TAG) or newest <= now - window:
                newest = float("-inf")  # free, or nothing left in the window: take it first
            if newest < stalest_time:
                stalest, stalest_time = offset, newest
        if not create:
            return None
        times = [0.0] * self._limit
        self._entry.pack_into(self._view, stalest, tag, *times)
        return stalest

    def live(self, key: str, now: float, window: float) -> list[float]:
        """The failure times of ``key`` within the window."""
        offset = self._find(key, now, window, create=False)
        if offset is None:
            return []
        return [t for t in self._entry.unpack_from(self._view, offset)[1:] if t > now - window]

    def add(self, key: str, now: float, window: float) -> None:
        offset = self._find(key, now, window, create=True)
        assert offset is not None
        tag, *times = self._entry.unpack_from(self._view, offset)
        times[times.index(min(times))] = now  # replace the oldest
        self._entry.pack_into(self._view, offset, tag, *times)

    def remove(self, key: str, at: float, now: float, window: float) -> None:
        offset = self._find(key, now, window, create=False)
        if offset is None:
            return
        tag, *times = self._entry.unpack_from(self._view, offset)
        if at in times:
            times[times.index(at)] = 0.0
            self._entry.pack_into(self._view, offset, tag, *times)


class LoginLimiter:
    """At most ``limit`` failed logins per ``window`` seconds per client and per user name,
    shared by every process forked after it was made (see the module docstring)."""

    def __init__(
        self,
        *,
        per_client: int,
        per_user: int,
        window: float = 60.0,
        buckets: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_client < 1 or per_user < 1:
            raise ValueError("failure limits must be at least 1")
        self.per_client = per_client
        self.per_user = per_user
        self.window = window
        self._clock = clock
        salt = secrets.token_bytes(32)
        split = _Table.size_for(buckets, per_client)
        size = split + _Table.size_for(buckets, per_user)
        self._fd = _anonymous_file(size)
        self._map = mmap.mmap(self._fd, size)  # MAP_SHARED: forked workers see every write
        view = memoryview(self._map)
        self._clients = _Table(view[:split], buckets, per_client, salt)
        self._users = _Table(view[split:], buckets, per_user, salt[::-1])
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def acquire(self, client: str, user: str) -> Ticket | None:
        """Count an attempt by ``client`` against ``user`` in advance; None when either has
        reached its limit (the attempt must then be refused without checking anything)."""
        user = user.lower()
        now = self._clock()
        with self._locked():
            if len(self._clients.live(client, now, self.window)) >= self.per_client:
                return None
            if len(self._users.live(user, now, self.window)) >= self.per_user:
                return None
            self._clients.add(client, now, self.window)
            self._users.add(user, now, self.window)
        return Ticket(client, user, now)

    def refund(self, ticket: Ticket) -> None:
        """The attempt succeeded: it is not a failure after all."""
        now = self._clock()
        with self._locked():
            self._clients.remove(ticket.client, ticket.at, now, self.window)
            self._users.remove(ticket.user, ticket.at, now, self.window)

    def retry_after(self, client: str, user: str) -> float:
        """Seconds until ``client`` may try ``user`` again (0 when it may now)."""
        user = user.lower()
        now = self._clock()
        with self._locked():
            waits = [0.0]
            for table, key, limit in (
                (self._clients, client, self.per_client),
                (self._users, user, self.per_user),
            ):
                times = sorted(table.live(key, now, self.window))
                if len(times) >= limit:
                    waits.append(times[len(times) - limit] + self.window - now)
            return max(waits)

    def failures(self, client: str = "", user: str = "") -> tuple[int, int]:
        """Failures in the window of ``client`` and of ``user`` (for tests and logs)."""
        now = self._clock()
        with self._locked():
            return (
                len(self._clients.live(client, now, self.window)) if client else 0,
                len(self._users.live(user.lower(), now, self.window)) if user else 0,
            )


def _anonymous_file(size: int) -> int:
    """A file descriptor of ``size`` zero bytes with no name (lockable, mappable)."""
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        fd = int(memfd("posthouse-login-failures", os.MFD_CLOEXEC))
    else:  # pragma: no cover - non-Linux
        with tempfile.NamedTemporaryFile(delete=False) as handle:
            fd = os.dup(handle.fileno())
            os.unlink(handle.name)
    os.ftruncate(fd, size)
    return fd
