"""The failed-login limits (issue 8): per client and per user, shared across a fork; the
authenticator refusing unchecked beyond them and checking one password at a time per client;
APOP answering alike for every kind of refusal; an unreadable user database."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from posthouse.auth.authenticator import Authenticator, Outcome, UserDirectory
from posthouse.auth.credentials import CredentialChecker
from posthouse.auth.failure_limits import LoginLimiter
from posthouse.auth.mailauth import MailAuthDatabase
from posthouse.auth.users import ServiceType, UserDatabase

TIMESTAMP = "<1.2@mail.example.test>"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def no_sleep(_delay: float) -> None:
    return None


def test_a_client_gets_limit_attempts_per_window_and_the_window_slides() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_client=3, per_user=100, window=60.0, clock=clock)
    for n in range(3):
        clock.now += 1
        assert limiter.acquire("192.0.2.1", f"user{n}") is not None
    assert limiter.acquire("192.0.2.1", "other") is None
    assert limiter.acquire("192.0.2.2", "other") is not None  # another client is not limited
    assert limiter.retry_after("192.0.2.1", "x") == pytest.approx(58.0)
    clock.now += 58.0  # the first failure leaves the window
    assert limiter.acquire("192.0.2.1", "other") is not None
    assert limiter.acquire("192.0.2.1", "other") is None


def test_a_user_is_limited_whatever_the_client_and_a_success_is_refunded() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_client=100, per_user=2, window=60.0, clock=clock)
    first = limiter.acquire("192.0.2.1", "Alice")
    assert first is not None
    limiter.refund(first)  # it succeeded: not a failure
    assert limiter.failures("192.0.2.1", "alice") == (0, 0)
    assert limiter.acquire("192.0.2.1", "alice") is not None
    assert limiter.acquire("192.0.2.9", "ALICE") is not None
    assert limiter.acquire("198.51.100.7", "alice") is None
    assert limiter.failures("", "alice") == (0, 2)


def test_the_limit_holds_across_forked_processes_racing() -> None:
    limiter = LoginLimiter(per_client=10, per_user=1000, window=60.0)
    go_read, go_write = os.pipe()
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            try:
                os.read(go_read, 1)  # all start together
                code = sum(limiter.acquire("203.0.113.5", f"u{n}") is not None for n in range(25))
            finally:
                os._exit(code)
        children.append(pid)
    os.write(go_write, b"gggg")
    granted = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        granted += os.waitstatus_to_exitcode(status)
    os.close(go_read)
    os.close(go_write)
    assert granted == 10
    assert limiter.failures("203.0.113.5") == (10, 0)  # the parent sees the children's counts


def _authenticator(tmp_path: Path, limiter: LoginLimiter | None) -> Authenticator:
    users = UserDatabase(tmp_path / "users.db")
    return Authenticator(UserDirectory(users), base_delay=0.0, sleep=no_sleep, limiter=limiter)


def test_beyond_the_limit_nothing_is_checked(tmp_path: Path) -> None:
    limiter = LoginLimiter(per_client=2, per_user=100, window=60.0)
    authenticator = _authenticator(tmp_path, limiter)
    checked: list[int] = []

    def wrong() -> bool:
        checked.append(1)
        return False

    async def scenario() -> list[Outcome]:
        results = []
        for _ in range(4):
            outcome, _ = await authenticator.guarded("alice", "192.0.2.1", wrong)
            results.append(outcome)
        right, _ = await authenticator.guarded("alice", "192.0.2.1", lambda: True)
        return [*results, right]

    outcomes = asyncio.run(scenario())
    assert outcomes == [Outcome.FAILED] * 2 + [Outcome.LIMITED] * 3
    assert len(checked) == 2


def test_a_burst_of_good_logins_from_one_address_is_not_limited(tmp_path: Path) -> None:
    # Twenty users behind one address (a NAT, a webmail host, the POP3 benchmark) log in
    # at once: more than the per-client limit in flight, none of them a failure.
    limiter = LoginLimiter(per_client=10, per_user=100, window=60.0)
    authenticator = _authenticator(tmp_path, limiter)

    async def scenario() -> list[Outcome]:
        logins = [authenticator.guarded(f"u{n}", "192.0.2.1", lambda: True) for n in range(20)]
        return [outcome for outcome, _ in await asyncio.gather(*logins)]

    assert asyncio.run(scenario()) == [Outcome.OK] * 20
    assert limiter.failures("192.0.2.1") == (0, 0)


def test_a_parallel_burst_of_guesses_gets_no_more_than_the_limit(tmp_path: Path) -> None:
    limiter = LoginLimiter(per_client=10, per_user=100, window=60.0)
    authenticator = _authenticator(tmp_path, limiter)
    checked: list[int] = []

    def wrong() -> bool:
        checked.append(1)
        return False

    async def scenario() -> list[Outcome]:
        guesses = [authenticator.guarded("alice", "192.0.2.9", wrong) for _ in range(40)]
        return [outcome for outcome, _ in await asyncio.gather(*guesses)]

    outcomes = asyncio.run(scenario())
    assert outcomes.count(Outcome.FAILED) == 10 and outcomes.count(Outcome.LIMITED) == 30
    assert len(checked) == 10


def test_one_check_at_a_time_per_client(tmp_path: Path) -> None:
    authenticator = _authenticator(tmp_path, None)
    running = 0
    most = 0
    lock = threading.Lock()
    release = threading.Event()

    def slow_check() -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(0.05)  # a check that takes a while (argon2's stand-in)
        with lock:
            running -= 1
        return False

    async def scenario() -> None:
        same = [authenticator.guarded("u", "192.0.2.1", slow_check) for _ in range(5)]
        other = [authenticator.guarded("u", "192.0.2.2", slow_check)]
        await asyncio.gather(*same, *other)

    asyncio.run(scenario())
    assert most == 2  # one per client: 192.0.2.1's five never overlapped each other


@pytest.mark.usefixtures("cheap_hashes")
def test_apop_answers_alike_for_unknown_users_other_types_and_wrong_digests(
    tmp_path: Path,
) -> None:
    users = UserDatabase(tmp_path / "users.db")
    users.add("popper", "login", ServiceType.APOP_MAILPASS)
    users.add("plain", "login", ServiceType.POP)
    mailauth = MailAuthDatabase(tmp_path / "mailauth.db", tmp_path / "mailauth.key")
    mailauth.init()
    mailauth.set_password("popper", "secret")
    mailauth.set_password("plain", "secret")
    directory = UserDirectory(users)
    checker = CredentialChecker(directory, _authenticator(tmp_path, None), mailauth)

    def apop(user: str, secret: str) -> tuple[bool, str, str | None]:
        digest = hashlib.md5((TIMESTAMP + secret).encode()).hexdigest()
        result = asyncio.run(checker.check_apop(user, TIMESTAMP, digest, client="192.0.2.1"))
        return result.ok, result.reason, result.code

    unknown = apop("nobody", "secret")
    other_type = apop("plain", "secret")
    wrong = apop("popper", "wrong")
    assert unknown == other_type == wrong == (False, "invalid user name or APOP digest", "AUTH")
    assert apop("popper", "secret")[0]
    users.close()
    mailauth.close()


class BrokenDatabase(UserDatabase):
    """A users database whose file can no longer be opened."""

    def get(self, name: str) -> None:
        raise sqlite3.OperationalError("unable to open database file")


def test_an_unreadable_user_database_is_a_temporary_failure(tmp_path: Path) -> None:
    directory = UserDirectory(BrokenDatabase(tmp_path / "users.db"))
    authenticator = Authenticator(directory, base_delay=0.0, sleep=no_sleep)
    checker = CredentialChecker(directory, authenticator, None)
    password = asyncio.run(
        checker.check_password("alice", "pw", protocol="smtp", client="192.0.2.1")
    )
    apop = asyncio.run(checker.check_apop("alice", TIMESTAMP, "0" * 32, client="192.0.2.1"))
    assert (password.ok, password.code) == (False, "SYS/TEMP")
    assert (apop.ok, apop.code) == (False, "SYS/TEMP")
