"""Login password hashes: argon2id through argon2-cffi.

posthouse keeps only hashes of its own users' login passwords, never the
passwords themselves.  A hash is a self-describing PHC string
(``$argon2id$v=19$m=...,t=...,p=...$salt$hash``), so the cost parameters may
be raised later without invalidating stored hashes; :func:`needs_rehash`
tells a caller when a stored hash was made with weaker parameters than the
current ones.

:func:`verify_password` never raises for a wrong password or a malformed
stored hash: it answers ``False``, so callers on the authentication path
need no exception handling of their own.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["hash_password", "needs_rehash", "verify_password"]

_HASHER = PasswordHasher()  # argon2id with argon2-cffi's current recommended parameters


def hash_password(password: str) -> str:
    """Return an argon2id hash (PHC string) of *password* with a fresh random salt."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Return whether *password* matches *stored_hash*.

    ``False`` for a mismatch and for anything that is not a valid argon2 hash
    (empty, truncated, another scheme, non-ASCII garbage); never raises for those.
    """
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError, ValueError, TypeError):
        # VerifyMismatchError is a VerificationError; InvalidHashError covers
        # malformed strings; ValueError/TypeError guard against odd inputs
        # (e.g. surrogates that cannot be encoded).
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Return whether *stored_hash* was made with parameters other than the current ones.

    A malformed hash also "needs rehash" (answers ``True``).
    """
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError, TypeError):
        return True
