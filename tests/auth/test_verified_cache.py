"""The verified-credentials cache: repeated good logins skip argon2, nothing else does."""

from __future__ import annotations

import os

import pytest

from posthouse.auth import authenticator
from posthouse.auth.authenticator import VerifiedCache
from posthouse.auth.passwords import hash_password


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = authenticator.verify_password

    def counting(stored: str, password: str) -> bool:
        calls.append(password)
        return real(stored, password)

    monkeypatch.setattr(authenticator, "verify_password", counting)
    return calls


def test_second_good_login_skips_the_hash(counted: list[str]) -> None:
    clock = Clock()
    cache = VerifiedCache(clock=clock, ttl=300)
    stored = hash_password("right")
    assert cache.check("alice", stored, "right")
    assert cache.check("alice", stored, "right")
    assert counted == ["right"]


def test_wrong_password_is_always_hashed_and_never_cached(counted: list[str]) -> None:
    cache = VerifiedCache(clock=Clock(), ttl=300)
    stored = hash_password("right")
    assert cache.check("alice", stored, "right")
    assert not cache.check("alice", stored, "wrong")
    assert not cache.check("alice", stored, "wrong")
    assert counted == ["right", "wrong", "wrong"]


def test_password_change_and_expiry_end_an_entry(counted: list[str]) -> None:
    clock = Clock()
    cache = VerifiedCache(clock=clock, ttl=300)
    old = hash_password("right")
    assert cache.check("alice", old, "right")
    new = hash_password("right")  # same password, new salt: the stored hash changed
    assert cache.check("alice", new, "right")
    clock.now += 301
    assert cache.check("alice", new, "right")
    assert counted == ["right", "right", "right"]
    assert not cache.check("alice", hash_password("other"), "right")


def test_processes_forked_after_the_cache_share_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = VerifiedCache(ttl=300)
    stored = hash_password("right")
    pid = os.fork()
    if pid == 0:  # a worker verifies the login (argon2) and exits
        os._exit(0 if cache.check("alice", stored, "right") else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    def no_argon2(stored_hash: str, password: str) -> bool:
        raise AssertionError("verified again despite the other process's entry")

    monkeypatch.setattr(authenticator, "verify_password", no_argon2)
    assert cache.check("alice", stored, "right")  # another worker: found in the shared table
    with pytest.raises(AssertionError):
        cache.check("alice", stored, "wrong")  # a different password is not an entry
    with pytest.raises(AssertionError):
        cache.check("bob", stored, "right")  # nor another user's name


def test_colliding_slots_only_cost_a_verification(counted: list[str]) -> None:
    cache = VerifiedCache(clock=Clock(), ttl=300, slots=1)  # every name in the same slot
    stored = hash_password("right")
    assert cache.check("alice", stored, "right")
    assert cache.check("bob", stored, "right")  # overwrites alice's entry
    assert cache.check("alice", stored, "right")
    assert counted == ["right", "right", "right"]
