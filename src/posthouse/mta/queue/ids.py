"""Queue identifiers for the mail queue.

A queue id is 16 characters of lowercase Crockford base32
(``0123456789abcdefghjkmnpqrstvwxyz``, whose characters are in ASCII order):

* 11 characters: the creation time in microseconds since the epoch (55 bits, good until
  about year 3100), so ids sort by creation time as plain strings;
* 5 characters: the low 22 bits of the process id and 3 random bits.

Within one process the time part is strictly increasing (if the clock has not moved on, or went
backwards, the previous value plus one microsecond is used), so ids from one process never
repeat; processes running at the same time differ in their pid part. Ids contain neither ``/``
nor ``.``, so they are safe as file names, and they are case-insensitive-filesystem safe.
The queue store additionally creates its files with ``O_EXCL`` and retries with a new id on the
(practically impossible) collision with a recycled pid.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time

__all__ = ["QUEUE_ID_ALPHABET", "QUEUE_ID_LENGTH", "is_queue_id", "new_queue_id", "queue_id_time"]

QUEUE_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
QUEUE_ID_LENGTH = 16
_TIME_CHARS = 11
_TAIL_CHARS = QUEUE_ID_LENGTH - _TIME_CHARS
_PID_BITS = 22
_RANDOM_BITS = 5 * _TAIL_CHARS - _PID_BITS

_lock = threading.Lock()
_last_micros = 0


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(QUEUE_ID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_queue_id() -> str:
    """Return a new queue id: unique, time-sortable, filename-safe, 16 characters."""
    global _last_micros
    with _lock:
        now = time.time_ns() // 1000
        if now <= _last_micros:
            now = _last_micros + 1
        _last_micros = now
    tail = ((os.getpid() & ((1 << _PID_BITS) - 1)) << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)
    return _encode(now, _TIME_CHARS) + _encode(tail, _TAIL_CHARS)


_ID_PATTERN = re.compile(f"[{re.escape(QUEUE_ID_ALPHABET)}]+")


def is_queue_id(value: str) -> bool:
    """Whether ``value`` has the shape of a queue id (used to reject path tricks)."""
    return len(value) == QUEUE_ID_LENGTH and _ID_PATTERN.fullmatch(value) is not None


def queue_id_time(queue_id: str) -> float:
    """The creation time (seconds since the epoch) encoded in ``queue_id``."""
    if not is_queue_id(queue_id):
        raise ValueError(f"not a queue id: {queue_id!r}")
    micros = 0
    for c in queue_id[:_TIME_CHARS]:
        micros = micros * 32 + QUEUE_ID_ALPHABET.index(c)
    return micros / 1e6
