"""The user directory and the authenticator's growing, per-client and per-user delay."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.auth.authenticator import Authenticator, UserDirectory
from posthouse.auth.users import ServiceType, User, UserDatabase

BASE, MAX = 0.5, 8.0

pytestmark = pytest.mark.usefixtures("cheap_hashes")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSleep:
    """Records requested delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)

    def blocking(self, delay: float) -> None:
        self.delays.append(delay)


def system_account(name: str) -> User | None:
    if name.lower() != "sysuser":
        return None
    return User("sysuser", None, ServiceType.UNIX, 1001, 1001, "/home/sysuser", "system")


class FakePam:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, name: str, password: str, service: str) -> bool:
        self.calls.append((name, password, service))
        return name == "sysuser" and password == "unix-pw"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[UserDatabase]:
    database = UserDatabase(tmp_path / "users.db")
    database.add("alice", "alice-pw")
    database.add("bob", "bob-pw", ServiceType.IMAP)
    database.add("nopass", None)
    yield database
    database.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def auth(db: UserDatabase, clock: FakeClock, sleep: FakeSleep) -> Authenticator:
    return Authenticator(
        UserDirectory(db),
        base_delay=BASE,
        max_delay=MAX,
        clock=clock,
        quiet_period=600.0,
        sleep=sleep,
        blocking_sleep=sleep.blocking,
    )


# -- verification --------------------------------------------------------------


def test_correct_password_succeeds_without_delay(auth: Authenticator, sleep: FakeSleep) -> None:
    assert asyncio.run(auth.check_async("alice", "alice-pw", client="192.0.2.1"))
    assert asyncio.run(auth.check_async("ALICE", "alice-pw", client="192.0.2.1"))
    assert auth.check("bob", "bob-pw", client="192.0.2.1")
    assert sleep.delays == []


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("alice", "wrong"),
        ("alice", "bob-pw"),
        ("alice", ""),
        ("nobody", "alice-pw"),
        ("nopass", ""),
        ("nopass", "anything"),
        ("bad name!", "alice-pw"),
    ],
)
def test_failures(auth: Authenticator, sleep: FakeSleep, name: str, password: str) -> None:
    assert not asyncio.run(auth.check_async(name, password, client="192.0.2.1"))
    assert sleep.delays == [BASE]


def test_sync_check_sleeps_with_blocking_sleep(auth: Authenticator, sleep: FakeSleep) -> None:
    assert not auth.check("alice", "wrong", client="192.0.2.1")
    assert not auth.check("alice", "wrong", client="192.0.2.1")
    assert sleep.delays == [BASE, 2 * BASE]


# -- the delay -----------------------------------------------------------------


def test_delay_grows_per_client_and_is_capped(auth: Authenticator, sleep: FakeSleep) -> None:
    async def run() -> None:
        # Different user names each time, so only the client's counter grows.
        for i in range(7):
            assert (
                auth.failure_delay(f"user{i}", "198.51.100.7") == sleep.delays[-1] * 2
                if (i and sleep.delays[-1] < MAX)
                else True
            )
            assert not await auth.check_async(f"user{i}", "guess", client="198.51.100.7")

    asyncio.run(run())
    assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_delay_grows_per_user_across_clients(auth: Authenticator, sleep: FakeSleep) -> None:
    async def run() -> None:
        for i in range(5):
            assert not await auth.check_async("alice", "guess", client=f"203.0.113.{i}")

    asyncio.run(run())
    assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert auth.failure_delay("alice", "203.0.113.200") == MAX
    assert auth.failure_delay("bob", "203.0.113.200") == BASE


def test_failing_client_does_not_slow_another_client(auth: Authenticator, sleep: FakeSleep) -> None:
    async def run() -> None:
        for _ in range(4):
            await auth.check_async("attacked", "guess", client="198.51.100.1")
        assert auth.failure_delay("attacked", "198.51.100.1") == 8.0
        assert auth.failure_delay("carol", "192.0.2.50") == BASE
        sleep.delays.clear()
        # Another client: a success is not delayed, a typo costs only the base delay.
        assert await auth.check_async("alice", "alice-pw", client="192.0.2.50")
        assert not await auth.check_async("bob", "typo", client="192.0.2.50")

    asyncio.run(run())
    assert sleep.delays == [BASE]


def test_correct_password_is_never_delayed_even_for_attacked_user(
    auth: Authenticator, sleep: FakeSleep
) -> None:
    for i in range(6):
        auth.check("alice", "guess", client=f"198.51.100.{i}")
    sleep.delays.clear()
    assert auth.check("alice", "alice-pw", client="192.0.2.9")
    assert sleep.delays == []


def test_success_resets_the_clients_counter(auth: Authenticator, sleep: FakeSleep) -> None:
    for name in ("x1", "x2", "x3"):
        auth.check(name, "guess", client="192.0.2.1")
    assert auth.failure_delay("fresh", "192.0.2.1") == 4.0
    assert auth.check("alice", "alice-pw", client="192.0.2.1")
    assert auth.failure_delay("fresh", "192.0.2.1") == BASE
    # The per-user counters are not reset by someone else's success.
    assert auth.failure_delay("x1", "192.0.2.99") == 1.0


def test_counters_decay_after_quiet_period(
    auth: Authenticator, sleep: FakeSleep, clock: FakeClock
) -> None:
    for _ in range(3):
        auth.check("alice", "guess", client="192.0.2.1")
    assert auth.failure_delay("alice", "192.0.2.1") == 4.0
    clock.now += 599.0  # still within the quiet period
    assert auth.failure_delay("alice", "192.0.2.1") == 4.0
    auth.check("alice", "guess", client="192.0.2.1")  # a failure restarts the period
    assert sleep.delays[-1] == 4.0
    clock.now += 599.0
    assert auth.failure_delay("alice", "192.0.2.1") == 8.0
    clock.now += 1.0
    assert auth.failure_delay("alice", "192.0.2.1") == BASE
    auth.check("alice", "guess", client="192.0.2.1")
    assert sleep.delays[-1] == BASE


def test_failure_table_is_bounded(db: UserDatabase, clock: FakeClock, sleep: FakeSleep) -> None:
    auth = Authenticator(
        UserDirectory(db), clock=clock, sleep=sleep, blocking_sleep=sleep.blocking, max_tracked=10
    )
    for i in range(100):
        clock.now += 1.0
        auth.check(f"u{i}", "", client=f"c{i}")
    assert len(auth._by_client._entries) <= 10
    assert len(auth._by_user._entries) <= 10
    # The most recent offender is still remembered.
    assert auth.failure_delay("u99", "elsewhere") == 2 * auth.base_delay


def test_huge_failure_counts_do_not_overflow(auth: Authenticator) -> None:
    for _ in range(1100):
        auth.check("alice", "", client="192.0.2.1")
    assert auth.failure_delay("alice", "192.0.2.1") == MAX


# -- concurrency ---------------------------------------------------------------


def test_delay_does_not_block_other_clients(db: UserDatabase) -> None:
    """A failing client waits in asyncio.sleep while another client is served."""

    async def run() -> None:
        waiting = asyncio.Event()
        release = asyncio.Event()

        async def parked_sleep(delay: float) -> None:
            waiting.set()
            await release.wait()

        auth = Authenticator(UserDirectory(db), sleep=parked_sleep)
        failing = asyncio.create_task(auth.check_async("alice", "guess", client="198.51.100.1"))
        await waiting.wait()
        assert await auth.check_async("alice", "alice-pw", client="192.0.2.1")
        assert not failing.done()
        release.set()
        assert await failing is False

    asyncio.run(run())


def test_verification_runs_off_the_event_loop(db: UserDatabase) -> None:
    """The PAM/argon2 work runs in a worker thread, so the loop keeps running meanwhile."""
    proceed = threading.Event()

    def blocking_pam(name: str, password: str, service: str) -> bool:
        # Only returns True if the event loop was free to set `proceed` meanwhile.
        return proceed.wait(timeout=10)

    async def run() -> bool:
        directory = UserDirectory(db, system_accounts=True, system_lookup=system_account)
        auth = Authenticator(directory, pam_check=blocking_pam)
        check = asyncio.create_task(auth.check_async("sysuser", "unix-pw", client="192.0.2.1"))
        await asyncio.sleep(0)  # let the check start and hand off to its thread
        proceed.set()  # runs on the loop while the worker thread is blocked
        return await check

    assert asyncio.run(run()) is True


# -- the directory and system accounts -------------------------------------------


def test_directory_without_system_accounts(db: UserDatabase) -> None:
    directory = UserDirectory(db, system_lookup=system_account)
    assert directory.exists("alice")
    assert directory.exists("Alice")
    assert not directory.exists("sysuser")
    assert directory.get("nobody") is None


def test_directory_with_system_accounts(db: UserDatabase) -> None:
    directory = UserDirectory(db, system_accounts=True, system_lookup=system_account)
    user = directory.get("sysuser")
    assert user is not None and user.source == "system"
    assert user.uid == 1001
    alice = directory.get("alice")
    assert alice is not None and alice.source == "posthouse"
    # A password-less database entry records a system account's service type.
    db.add("sysuser", None, ServiceType.IMAP_MAILPASS)
    user = directory.get("sysuser")
    assert user is not None
    assert (user.source, user.service_type) == ("system", ServiceType.IMAP_MAILPASS)
    # A posthouse user with its own password wins over a system account.
    db.set_password("sysuser", "own-pw")
    user = directory.get("sysuser")
    assert user is not None and user.source == "posthouse"


def test_system_users_are_checked_with_pam(
    db: UserDatabase, clock: FakeClock, sleep: FakeSleep
) -> None:
    pam = FakePam()
    directory = UserDirectory(db, system_accounts=True, system_lookup=system_account)
    auth = Authenticator(
        directory,
        clock=clock,
        sleep=sleep,
        blocking_sleep=sleep.blocking,
        pam_check=pam,
        pam_service="posthouse",
    )
    assert asyncio.run(auth.check_async("SysUser", "unix-pw", client="192.0.2.1"))
    assert not asyncio.run(auth.check_async("sysuser", "wrong", client="192.0.2.1"))
    assert pam.calls == [("sysuser", "unix-pw", "posthouse"), ("sysuser", "wrong", "posthouse")]
    assert sleep.delays == [auth.base_delay]
    # Empty passwords never reach PAM (where nullok could accept them).
    assert not auth.check("sysuser", "", client="192.0.2.1")
    assert len(pam.calls) == 2
    assert sleep.delays == [auth.base_delay, 2 * auth.base_delay]
    # posthouse users are not sent to PAM.
    assert auth.check("alice", "alice-pw", client="192.0.2.1")
    assert len(pam.calls) == 2


def test_recently_verified_login_does_not_queue_behind_its_clients_turn(db: UserDatabase) -> None:
    """Many mail clients behind one address: while a slow check holds the address's turn, a
    password verified minutes ago gets in at once; a wrong one still waits and is counted."""
    in_pam = threading.Event()
    release = threading.Event()

    def slow_pam(name: str, password: str, service: str) -> bool:
        in_pam.set()
        return release.wait(timeout=30)

    async def run() -> None:
        sleep = FakeSleep()
        directory = UserDirectory(db, system_accounts=True, system_lookup=system_account)
        auth = Authenticator(directory, pam_check=slow_pam, sleep=sleep)
        client = "192.0.2.7"
        assert await auth.check_async("alice", "alice-pw", client=client)  # now cached
        slow = asyncio.create_task(auth.check_async("sysuser", "unix-pw", client=client))
        await asyncio.to_thread(in_pam.wait, 30)
        again = asyncio.create_task(auth.check_async("alice", "alice-pw", client=client))
        guess = asyncio.create_task(auth.check_async("alice", "guess", client=client))
        done, _pending = await asyncio.wait({again}, timeout=20)
        assert again in done and again.result() is True
        assert not slow.done() and not guess.done()  # the guess waits for the turn
        release.set()
        assert await slow is True
        assert await guess is False
        assert sleep.delays  # the guess was counted and delayed

    asyncio.run(run())
