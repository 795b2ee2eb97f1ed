"""CredentialChecker: every service type x protocol x password kind, delays, logging."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from posthouse.auth.authenticator import Authenticator, UserDirectory
from posthouse.auth.credentials import CredentialChecker, LoginResult, Protocol
from posthouse.auth.mailauth import MailAuthDatabase
from posthouse.auth.users import ServiceType, User, UserDatabase

pytestmark = pytest.mark.usefixtures("cheap_hashes")

BASE, MAX = 0.5, 8.0
TIMESTAMP = "<4711.1700000000@mail.example.test>"
CLIENT = "192.0.2.7"

OK = "ok"
AUTH = "AUTH"
NOT_IMAP = "this account is not enabled for IMAP"
MUST_APOP = "this account must log in with APOP"
BAD_APOP = "invalid user name or APOP digest"  # the same for every refusal (issue 8)

# (service type) -> {(protocol, password kind): expected}; OK, AUTH, or a SYS/PERM reason.
TABLE: dict[ServiceType, dict[tuple[Protocol, str], str]] = {
    ServiceType.UNIX: {
        ("pop3", "login"): OK, ("pop3", "mail"): AUTH,
        ("imap", "login"): OK, ("imap", "mail"): AUTH,
        ("smtp", "login"): OK, ("smtp", "mail"): AUTH,
    },
    ServiceType.POP: {
        ("pop3", "login"): OK, ("pop3", "mail"): AUTH,
        ("imap", "login"): NOT_IMAP, ("imap", "mail"): AUTH,
        ("smtp", "login"): OK, ("smtp", "mail"): AUTH,
    },
    ServiceType.POP_MAILPASS: {
        ("pop3", "login"): AUTH, ("pop3", "mail"): OK,
        ("imap", "login"): AUTH, ("imap", "mail"): NOT_IMAP,
        ("smtp", "login"): OK, ("smtp", "mail"): AUTH,
    },
    ServiceType.APOP_MAILPASS: {
        ("pop3", "login"): AUTH, ("pop3", "mail"): MUST_APOP,
        ("imap", "login"): AUTH, ("imap", "mail"): NOT_IMAP,
        ("smtp", "login"): OK, ("smtp", "mail"): AUTH,
    },
    ServiceType.IMAP: {
        ("pop3", "login"): OK, ("pop3", "mail"): AUTH,
        ("imap", "login"): OK, ("imap", "mail"): AUTH,
        ("smtp", "login"): OK, ("smtp", "mail"): AUTH,
    },
    ServiceType.IMAP_MAILPASS: {
        ("pop3", "login"): AUTH, ("pop3", "mail"): OK,
        ("imap", "login"): AUTH, ("imap", "mail"): OK,
        ("smtp", "login"): OK, ("smtp", "mail"): AUTH,
    },
}  # fmt: skip
APOP_TABLE = {t: (OK if t is ServiceType.APOP_MAILPASS else BAD_APOP) for t in ServiceType}
CASES = [
    (service_type, protocol, kind, expected)
    for service_type, row in TABLE.items()
    for (protocol, kind), expected in row.items()
]


def user_name(service_type: ServiceType) -> str:
    return "u-" + service_type.value


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)

    def blocking(self, delay: float) -> None:  # pragma: no cover - async paths only
        self.delays.append(delay)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.users = UserDatabase(tmp_path / "users.db")
        self.mailauth = MailAuthDatabase(tmp_path / "mailauth.db", tmp_path / "mailauth.key")
        self.mailauth.init()
        for service_type in ServiceType:
            name = user_name(service_type)
            self.users.add(name, f"login-{name}", service_type)
            # Every user gets a mail password, so the table shows it is ignored
            # by the types that use the login password.
            self.mailauth.set_password(name, f"mail-{name}")
        self.sleep = FakeSleep()
        self.now = 1000.0
        self.directory = UserDirectory(self.users)
        self.authenticator = Authenticator(
            self.directory,
            base_delay=BASE,
            max_delay=MAX,
            clock=lambda: self.now,
            sleep=self.sleep,
            blocking_sleep=self.sleep.blocking,
        )
        self.checker = CredentialChecker(self.directory, self.authenticator, self.mailauth)

    def password(
        self, user: str, password: str, protocol: Protocol = "pop3", client: str = CLIENT
    ) -> LoginResult:
        return asyncio.run(
            self.checker.check_password(user, password, protocol=protocol, client=client)
        )

    def apop(self, user: str, secret: str, client: str = CLIENT) -> LoginResult:
        digest = hashlib.md5((TIMESTAMP + secret).encode()).hexdigest()
        return asyncio.run(self.checker.check_apop(user, TIMESTAMP, digest, client=client))

    def close(self) -> None:
        self.users.close()
        self.mailauth.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def assert_outcome(result: LoginResult, expected: str, name: str) -> None:
    if expected == OK:
        assert result == LoginResult(True, "login accepted", None, name)
    elif expected == AUTH:
        assert (result.ok, result.code) == (False, "AUTH")
        assert result.reason == "invalid user name or password"
    elif expected == BAD_APOP:
        assert (result.ok, result.code, result.reason) == (False, "AUTH", BAD_APOP)
    else:
        assert (result.ok, result.code, result.reason) == (False, "SYS/PERM", expected)


@pytest.mark.parametrize(("service_type", "protocol", "kind", "expected"), CASES)
def test_password_table(
    world: World,
    service_type: ServiceType,
    protocol: Protocol,
    kind: Literal["login", "mail"],
    expected: str,
) -> None:
    name = user_name(service_type)
    result = world.password(name.upper(), f"{kind}-{name}", protocol)
    assert_outcome(result, expected, name)
    # A wrong password is always the generic failure, never the SYS/PERM reason.
    assert_outcome(world.password(name, "wrong", protocol), AUTH, name)


@pytest.mark.parametrize(("service_type", "expected"), APOP_TABLE.items())
def test_apop_table(world: World, service_type: ServiceType, expected: str) -> None:
    name = user_name(service_type)
    result = world.apop(name, f"mail-{name}")
    assert_outcome(result, expected, name)
    wrong = world.apop(name, f"login-{name}")
    assert not wrong.ok
    assert (wrong.code, wrong.reason) == ("AUTH", BAD_APOP)


def test_unknown_user(world: World) -> None:
    assert_outcome(world.password("nobody", "x", "imap"), AUTH, "nobody")
    assert_outcome(world.password("bad name!", "x", "smtp"), AUTH, "nobody")
    unknown_apop = world.apop("nobody", "x")
    assert (unknown_apop.code, unknown_apop.reason) == ("AUTH", BAD_APOP)


def test_mailpass_user_without_a_mail_password(world: World) -> None:
    world.users.add("fresh", "login-fresh", ServiceType.IMAP_MAILPASS)
    assert_outcome(world.password("fresh", "login-fresh", "imap"), AUTH, "fresh")
    world.users.add("fresh-apop", "login-fresh", ServiceType.APOP_MAILPASS)
    assert world.apop("fresh-apop", "").code == "AUTH"


def test_without_a_mailauth_database(world: World) -> None:
    checker = CredentialChecker(world.directory, world.authenticator, None)
    name = user_name(ServiceType.POP_MAILPASS)
    result = asyncio.run(checker.check_password(name, f"mail-{name}", protocol="pop3", client="c"))
    assert (result.ok, result.code) == (False, "SYS/TEMP")
    apop = asyncio.run(
        checker.check_apop(user_name(ServiceType.APOP_MAILPASS), "<t>", "0" * 32, client="c")
    )
    assert apop.code == "SYS/TEMP"
    # Login-password types do not need the database.
    unix = user_name(ServiceType.UNIX)
    assert asyncio.run(
        checker.check_password(unix, f"login-{unix}", protocol="imap", client="c")
    ).ok


def test_failures_grow_the_shared_delay(world: World) -> None:
    pop_mail = user_name(ServiceType.POP_MAILPASS)
    apop = user_name(ServiceType.APOP_MAILPASS)
    unix = user_name(ServiceType.UNIX)
    assert world.password(pop_mail, f"mail-{pop_mail}").ok
    assert world.sleep.delays == []
    world.password(pop_mail, "wrong")  # mail password failure
    world.apop(apop, "wrong")  # APOP failure
    world.password(unix, "wrong")  # login password failure
    world.apop(unix, "anything")  # APOP for a type without APOP
    assert world.sleep.delays == [BASE, 2 * BASE, 4 * BASE, 8 * BASE]
    # A good login is never delayed; another client is not slowed by this one.
    assert world.password(unix, f"login-{unix}", "imap").ok
    assert world.password(pop_mail, "wrong", client="198.51.100.1").ok is False
    assert world.sleep.delays[-1] == 2 * BASE  # 1 failure against that user name before
    assert len(world.sleep.delays) == 5


def test_logging(world: World, caplog: pytest.LogCaptureFixture) -> None:
    name = user_name(ServiceType.IMAP_MAILPASS)
    with caplog.at_level(logging.DEBUG, logger="posthouse.auth"):
        world.password(name, f"mail-{name}", "imap")
        world.password(name, "wrong", "imap")
    notices = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.getMessage() for r in notices] == [
        f"imap login ok: user={name} client={CLIENT}",
        f"imap login failed: user='{name}' client={CLIENT}: invalid user name or password [AUTH]",
    ]
    assert all(r.name == "posthouse.auth" for r in caplog.records)
    assert any(
        r.levelno == logging.DEBUG and "mail password" in r.getMessage() for r in caplog.records
    )
    assert "wrong" not in caplog.text  # passwords never logged


def test_every_type_is_in_the_table() -> None:
    assert set(TABLE) == set(ServiceType)
    assert all(len(row) == 6 for row in TABLE.values())


def test_system_account_uses_its_recorded_type(tmp_path: Path) -> None:
    users = UserDatabase(tmp_path / "u.db")
    users.add("sys", None, ServiceType.POP_MAILPASS)
    mailauth = MailAuthDatabase(tmp_path / "m.db", tmp_path / "m.key")
    mailauth.init()
    mailauth.set_password("sys", "alt")
    system = User("sys", None, ServiceType.UNIX, 1001, 1001, "/home/sys", "system")
    directory = UserDirectory(
        users, system_accounts=True, system_lookup=lambda n: system if n == "sys" else None
    )

    async def no_sleep(_delay: float) -> None:
        return None

    authenticator = Authenticator(directory, sleep=no_sleep, pam_check=lambda u, p, s: p == "unix")
    checker = CredentialChecker(directory, authenticator, mailauth)
    pop = asyncio.run(checker.check_password("sys", "alt", protocol="pop3", client="c"))
    smtp = asyncio.run(checker.check_password("sys", "unix", protocol="smtp", client="c"))
    pop_login = asyncio.run(checker.check_password("sys", "unix", protocol="pop3", client="c"))
    assert (pop.ok, smtp.ok, pop_login.ok) == (True, True, False)
    users.close()
    mailauth.close()
