"""Credential checks with a growing delay after failures.

:class:`UserDirectory` answers "who is this user?" from posthouse's own
database and, when enabled, the system's accounts (the chapter's classic
setup, §12.4.4).  :class:`Authenticator` checks a login password: argon2 for
posthouse's users, PAM for system accounts.

After a failure the authenticator waits before answering, longer the more
recent failures there were from the same client address *or* against the same
user name: ``base_delay * 2**n`` capped at ``max_delay``, where ``n`` is the
larger of the two recent-failure counts.  So a guesser slows down whether it
hammers one account from one address or spreads over many addresses, while
a correct password is never delayed, and a failing client does not slow any
other client: in :meth:`Authenticator.check_async` the wait is an
``asyncio.sleep`` and the hashing or PAM call runs in a worker thread.  A
counter is forgotten after ``quiet_period`` seconds without a failure, and a
success resets the client's counter.

Beyond the delay, two bounds hold against guessers (issue 8):

* with a shared :class:`~posthouse.auth.failure_limits.LoginLimiter`, at most so many
  failures per minute per client address and per user name, across all worker processes;
  an attempt beyond that is refused (:attr:`Outcome.LIMITED`) without checking anything;
* argon2 work is bounded: at most ``hash_threads`` verifications at once in a process, at
  most one at a time per client address (one client's guesses queue behind each other), and
  run by threads of the lowest scheduling priority (nice 19; libargon2's own lane threads
  inherit it), so hashing only uses CPU time the event loops leave over and a guesser
  cannot take the CPU from everyone else.  Verified-cache hits never wait for hashing, and
  while a client's turn is taken they do not queue behind it either: a password verified in
  the last minutes is let in at once (no hashing, so nothing a guesser could use), as many
  users' mail clients behind one address (a NAT, a webmail host) log in again all the time.

The mail-password service types (``*-mailpass``) are checked against the
mailauth database by :mod:`posthouse.auth.credentials`, through :meth:`Authenticator.guarded`
so they count against the same limits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import functools
import hashlib
import hmac
import mmap
import os
import secrets
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from posthouse.auth.failure_limits import LoginLimiter
from posthouse.auth.passwords import hash_password, verify_password
from posthouse.auth.system import DEFAULT_MAX_UID, DEFAULT_MIN_UID, pam_authenticate, system_user
from posthouse.auth.users import User, UserDatabase

__all__ = ["Authenticator", "Outcome", "UserDirectory", "VerifiedCache"]

_T = TypeVar("_T")


class Outcome(enum.Enum):
    """How a login attempt ended."""

    OK = "ok"
    FAILED = "failed"  # checked and wrong (the failure delay has been waited)
    LIMITED = "limited"  # refused unchecked: too many recent failures (client or user)


_MAX_KEY_LENGTH = 128  # client-supplied names longer than this share one counter
_MAX_REMEMBERED = 10_000  # users UserDirectory.exists remembers at most


class UserDirectory:
    """posthouse's users plus, when ``system_accounts`` is on, the system's accounts.

    A posthouse user with a password of its own wins.  Otherwise a system
    account of that name is used; if the database also holds a password-less
    entry for it (as ``mailusradm`` records a system user's service type), the
    system account takes that entry's service type.

    :meth:`exists` (asked for every recipient, at RCPT and again at the end of the data)
    remembers users it found for ``exists_ttl`` seconds, so the mail path does not query the
    database for every message: a user deleted meanwhile is still accepted for that long
    (and then bounced by the queue), while a new user is found at once, since absences are
    never remembered.  :meth:`get`, which logins use, always asks the database.
    """

    def __init__(
        self,
        database: UserDatabase,
        *,
        system_accounts: bool = False,
        exists_ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        min_uid: int = DEFAULT_MIN_UID,
        max_uid: int = DEFAULT_MAX_UID,
        system_lookup: Callable[[str], User | None] | None = None,
    ) -> None:
        self.database = database
        self.system_accounts = system_accounts
        if system_lookup is None:
            system_lookup = functools.partial(system_user, min_uid=min_uid, max_uid=max_uid)
        self._system_lookup = system_lookup
        self._exists_ttl = exists_ttl
        self._clock = clock
        self._found: dict[str, float] = {}  # name -> until when it is known to exist

    def get(self, name: str) -> User | None:
        """Return the user called *name* (any case), or ``None``."""
        own = self.database.get(name)
        if not self.system_accounts or (own is not None and own.password_hash is not None):
            return own
        system = self._system_lookup(name)
        if system is None:
            return own
        if own is not None:
            return replace(system, service_type=own.service_type)
        return system

    def exists(self, name: str) -> bool:
        """Whether a user called *name* exists (a recent "yes" is remembered)."""
        now = self._clock()
        until = self._found.get(name)
        if until is not None and until > now:
            return True
        if self.get(name) is None:
            return False
        if len(self._found) >= _MAX_REMEMBERED:
            self._found.clear()
        self._found[name] = now + self._exists_ttl
        return True


@dataclass
class _Turn:
    """The checks of one client address waiting or running in this process."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


@dataclass
class _Failures:
    count: int
    last: float


class _FailureTable:
    """Recent-failure counts by key, forgotten after a quiet period; bounded in size."""

    def __init__(self, quiet_period: float, max_entries: int) -> None:
        self._quiet_period = quiet_period
        self._max_entries = max_entries
        self._entries: dict[str, _Failures] = {}

    def count(self, key: str, now: float) -> int:
        entry = self._entries.get(key)
        if entry is None:
            return 0
        if now - entry.last >= self._quiet_period:
            del self._entries[key]
            return 0
        return entry.count

    def record(self, key: str, now: float) -> None:
        count = self.count(key, now)
        self._entries[key] = _Failures(count + 1, now)
        if len(self._entries) > self._max_entries:
            self._prune(now)

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def _prune(self, now: float) -> None:
        """Drop expired entries, then the oldest, down to 90% of the limit."""
        live = {k: e for k, e in self._entries.items() if now - e.last < self._quiet_period}
        keep = max(1, self._max_entries * 9 // 10)
        if len(live) > keep:
            newest = sorted(live.items(), key=lambda item: item[1].last)[-keep:]
            live = dict(newest)
        self._entries = live


_SLOT = struct.Struct("=32sd")  # keyed hash, expiry on the clock


class VerifiedCache:
    """Recently verified (user, password) pairs, so mail clients that log in every few
    minutes do not pay a full argon2 verification each time (like Dovecot's auth cache).

    Holds only a keyed hash of the password under a random key, tied to the stored hash: a
    password change, or ``ttl`` seconds, ends a cached entry.  Failures are never cached, so
    guessing still costs argon2 and the failure delay.

    The entries live in a table of ``slots`` fixed slots (chosen by user name) in an anonymous
    *shared* memory map: worker processes forked after the cache was made share both the key
    and the table, so a login one worker verified is not verified again by the next.  Two
    writers can only overwrite each other's slot, or leave a torn one; either way the keyed
    hash no longer matches and the next login is verified in full -- a miss, never a wrong
    success.  ``clock`` must be one all processes share (``time.monotonic`` is).
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, ttl: float, slots: int = 8192
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._clock = clock
        self._ttl = ttl
        self._slots = slots
        self._table = mmap.mmap(-1, slots * _SLOT.size)  # MAP_SHARED | MAP_ANONYMOUS
        self._lock = threading.Lock()

    def _digest(self, name: str, stored_hash: str, password: str) -> bytes:
        material = f"{name}\0{stored_hash}\0{password}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, material, hashlib.sha256).digest()

    def _offset(self, name: str) -> int:
        mark = hmac.new(self._key, name.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return int.from_bytes(mark.digest()[:8], "little") % self._slots * _SLOT.size

    def check(
        self,
        name: str,
        stored_hash: str,
        password: str,
        verify: Callable[[str, str], bool] | None = None,
    ) -> bool:
        """Whether ``password`` is right: from the cache, else by ``verify`` (argon2)."""
        digest = self._digest(name, stored_hash, password)
        offset = self._offset(name)
        now = self._clock()
        with self._lock:
            cached, expiry = _SLOT.unpack_from(self._table, offset)
        if expiry > now and hmac.compare_digest(cached, digest):
            return True
        if not (verify or verify_password)(stored_hash, password):
            return False
        if self._ttl > 0:
            with self._lock:
                _SLOT.pack_into(self._table, offset, digest, now + self._ttl)
        return True


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random secret, verified for unknown users so they cost the same time."""
    return hash_password(secrets.token_urlsafe(16))


class Authenticator:
    """Checks login passwords and slows down repeated failures (see the module docstring)."""

    def __init__(
        self,
        directory: UserDirectory,
        *,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
        quiet_period: float = 600.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        blocking_sleep: Callable[[float], None] = time.sleep,
        pam_check: Callable[[str, str, str], bool] = pam_authenticate,
        pam_service: str = "login",
        max_tracked: int = 10_000,
        verified_cache_seconds: float = 300.0,
        verified_cache: VerifiedCache | None = None,
        limiter: LoginLimiter | None = None,
        hash_threads: int = 2,
    ) -> None:
        self.directory = directory
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.pam_service = pam_service
        self._clock = clock
        self._sleep = sleep
        self._blocking_sleep = blocking_sleep
        self._pam_check = pam_check
        self._lock = threading.Lock()  # check() may run in several threads
        self._by_client = _FailureTable(quiet_period, max_tracked)
        # One made before the workers were forked is shared by all of them (see VerifiedCache).
        self._verified = verified_cache or VerifiedCache(clock=clock, ttl=verified_cache_seconds)
        self._by_user = _FailureTable(quiet_period, max_tracked)
        self.limiter = limiter
        self._hashers = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, hash_threads),
            thread_name_prefix="argon2",
            initializer=_lowest_priority,
        )
        self._client_turns: dict[str, _Turn] = {}  # one check at a time per client

    def verify(self, name: str, password: str) -> bool:
        """Check the credentials only: no delay and no failure counting. Blocking."""
        if not password:
            return False  # never let an empty password through (e.g. PAM's nullok)
        user = self.directory.get(name)
        if user is not None and user.source == "system":
            return self._pam_check(user.name, password, self.pam_service)
        if user is None or user.password_hash is None:
            self._hash_verify(_dummy_hash(), password)  # same cost as a real mismatch
            return False
        return self._verified.check(
            user.name, user.password_hash, password, verify=self._hash_verify
        )

    def _hash_verify(self, stored_hash: str, password: str) -> bool:
        """argon2 in the low-priority pool, at most ``hash_threads`` at once per process."""
        return self._hashers.submit(verify_password, stored_hash, password).result()

    def check(self, name: str, password: str, *, client: str) -> bool:
        """Check the credentials; after a failure, block for the failure delay first."""
        delay = self._settle(self.verify(name, password), name, client)
        if delay is None:
            return True
        self._blocking_sleep(delay)
        return False

    async def check_async(self, name: str, password: str, *, client: str) -> bool:
        """Check the credentials in a worker thread; after a failure, ``await`` the delay."""
        return await self.attempt(name, password, client=client) is Outcome.OK

    async def attempt(self, name: str, password: str, *, client: str) -> Outcome:
        """Check a login password within the limits (see the module docstring)."""
        if client in self._client_turns and await asyncio.to_thread(
            self._verified_recently, name, password
        ):
            self._settle(True, name, client)
            return Outcome.OK
        outcome, _ok = await self.guarded(name, client, lambda: self.verify(name, password))
        return outcome

    def _verified_recently(self, name: str, password: str) -> bool:
        """Whether the verified-login cache holds this password for ``name`` (no hashing)."""
        user = self.directory.get(name) if password else None
        if user is None or user.source == "system" or user.password_hash is None:
            return False
        return self._verified.check(user.name, user.password_hash, password, verify=_never_verified)

    async def guarded(
        self, name: str, client: str, check: Callable[[], _T]
    ) -> tuple[Outcome, _T | None]:
        """Run the blocking credential ``check`` (truthy: right) for a login of ``name`` from
        ``client`` within the failure limits: in a worker thread, one at a time per client,
        counted in the shared limits, and followed by the failure delay when it fails.

        Returns the outcome and what ``check`` returned (None when it did not run).  An
        exception from ``check`` (a database that cannot be read) propagates and counts as
        no attempt at all.
        """
        turn = self._client_turns.setdefault(client, _Turn())
        turn.users += 1
        ticket = None
        limited = False
        try:
            async with turn.lock:
                # Counted at the client's turn, not on arrival: a burst of good logins from
                # one address (a NAT, a webmail host) is not refused for being in flight at
                # once, and a guesser's attempts still each see the failures before them
                # (across worker processes the advance count keeps the limit).
                if self.limiter is not None:
                    ticket = self.limiter.acquire(client, _user_key(name))
                    limited = ticket is None
                if not limited:
                    result = await asyncio.to_thread(check)
        except BaseException:
            if ticket is not None and self.limiter is not None:
                self.limiter.refund(ticket)
            raise
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._client_turns[client]
        if limited:
            await self._sleep(self.failure_delay(name, client))
            return Outcome.LIMITED, None
        delay = self._settle(bool(result), name, client)
        if delay is None:
            if ticket is not None and self.limiter is not None:
                self.limiter.refund(ticket)
            return Outcome.OK, result
        await self._sleep(delay)
        return Outcome.FAILED, result

    async def record_failure(self, name: str, client: str) -> None:
        """A login for *name* from *client* failed elsewhere (e.g. a mail password): count
        it like any failure and wait the delay."""
        delay = self._settle(False, name, client)
        assert delay is not None
        await self._sleep(delay)

    def record_success(self, client: str) -> None:
        """A login from *client* succeeded elsewhere: forget its recent failures."""
        self._settle(True, "", client)

    def failure_delay(self, name: str, client: str) -> float:
        """The delay a failure by *client* against *name* would incur now."""
        with self._lock:
            return self._delay_locked(name, client, self._clock())

    def _settle(self, ok: bool, name: str, client: str) -> float | None:
        """Record the outcome; return ``None`` on success, else the delay to apply."""
        with self._lock:
            if ok:
                self._by_client.reset(client)
                return None
            now = self._clock()
            delay = self._delay_locked(name, client, now)
            self._by_client.record(client, now)
            self._by_user.record(_user_key(name), now)
            return delay

    def _delay_locked(self, name: str, client: str, now: float) -> float:
        failures = max(
            self._by_client.count(client, now), self._by_user.count(_user_key(name), now)
        )
        return min(self.max_delay, self.base_delay * 2.0 ** min(failures, 64))


def _never_verified(stored_hash: str, password: str) -> bool:
    return False


def _lowest_priority() -> None:
    """Run this (hashing) thread, and the threads it starts, at nice 19 (Linux: per thread)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _user_key(name: str) -> str:
    return name.lower()[:_MAX_KEY_LENGTH]
