"""The IMAP server's log levels as the chapter's 12.5.4 lists them: authentications at
NOTICE (logged at INFO with the word NOTICE, see logsetup.py), I/O errors at ERR naming
the file and the system's error, protection failures and timeouts at WARNING, mailbox
openings at INFO."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest

from posthouse.auth.credentials import CredentialChecker, LoginResult
from posthouse.server.connection import Deadlines
from posthouse.server.imap.views import prepared
from posthouse.store.service import MailStore
from tests.server.test_imap_in_memory import TIMEOUT, Client, message, scenario


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "posthouse.imap"]


def test_logins_openings_refusals_and_io_errors_at_their_levels(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lost: list[Path] = []

    async def body(store: MailStore) -> None:
        await store.create_user("bob")
        alice = store.session("alice")
        now = dt.datetime.now(dt.UTC)
        await alice.append("INBOX", [prepared(message("lost"), now, frozenset())])
        client = Client(store)
        await asyncio.wait_for(client.memory.line(), TIMEOUT)
        assert (await client.command(b"l1 LOGIN alice wrong"))[-1].startswith(b"l1 NO")
        assert (await client.command(b"l2 LOGIN alice secret"))[-1].startswith(b"l2 OK")
        assert (await client.command(b"s EXAMINE INBOX"))[-1].startswith(b"s OK")
        lines = await client.command(b"c CREATE user.bob.mine")
        assert lines[-1].startswith(b"c NO [NOPERM]")
        [path] = (tmp_path / "spool").glob("*/*/1.")
        path.unlink()  # the message file is lost under the server
        lost.append(path)
        lines = await client.command(b"f FETCH 1 BODY[]")
        assert lines[-1].startswith(b"f NO [EXPUNGEISSUED]")
        await client.command(b"z LOGOUT")
        await client.task

    with caplog.at_level(logging.DEBUG):
        scenario(body, tmp_path)
    logged = records(caplog)
    store_errors = [r for r in caplog.records if r.name == "posthouse.store"]
    assert [(r.levelno, str(lost[0]) in r.getMessage()) for r in store_errors] == [
        (logging.ERROR, True)
    ]
    assert "No such file or directory" in store_errors[0].getMessage()
    infos = [text for level, text in logged if level == logging.INFO]
    assert any(t.startswith("NOTICE imap: login of alice from ") for t in infos), logged
    assert any(t.startswith("NOTICE imap: alice logged in from ") for t in infos), logged
    assert "imap: alice opened INBOX" in infos
    warnings = [text for level, text in logged if level == logging.WARNING]
    assert any("CREATE refused" in t for t in warnings), logged


class AnyName:
    """Credentials that accept a user name the store cannot serve."""

    async def check_password(
        self, user: str, password: str, *, protocol: str, client: str
    ) -> LoginResult:
        return LoginResult(True, "", None, "a*b")


def test_a_login_the_store_refuses_is_an_authentication_at_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store)
        services = client.session.services
        client.session.services = replace(services, credentials=cast(CredentialChecker, AnyName()))
        await asyncio.wait_for(client.memory.line(), TIMEOUT)
        lines = await client.command(b"l LOGIN someone secret")
        assert lines[-1].startswith(b"l NO [CANNOT]")
        await client.command(b"z LOGOUT")
        await client.task

    with caplog.at_level(logging.INFO, logger="posthouse.imap"):
        scenario(body, tmp_path)
    assert any(
        level == logging.INFO and text.startswith("NOTICE imap: login of a*b from ")
        for level, text in records(caplog)
    ), records(caplog)


def test_a_timeout_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body(store: MailStore) -> None:
        client = Client(store, deadlines=Deadlines(command_timeout=0.2))
        await client.login()
        client.memory.send(b"n NOOP")  # a command line that never ends
        assert await asyncio.wait_for(client.memory.line(), TIMEOUT) == b"* BYE Command timeout\r\n"
        await client.task

    with caplog.at_level(logging.INFO, logger="posthouse.imap"):
        scenario(body, tmp_path)
    assert (logging.WARNING, "imap: command timeout of [192.0.2.7]:40000 (alice)") in records(
        caplog
    )
