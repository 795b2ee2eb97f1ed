"""12.4.2 migrating to the new POP3: a Qualcomm popauth database and MH POP3 folders,
converted with the chapter's commands while the daemon runs, then used over POP3."""

from __future__ import annotations

import poplib
from collections.abc import Callable
from pathlib import Path

from tests.auth.test_popauth_convert import obscured, write_gdbm, write_ndbm
from tests.cli.test_mailcv import mh_folder
from tests.e2e.conftest import PASSWORD, Server

Factory = Callable[..., Server]


def test_popauth_database_converted_then_apop_logins(server: Server, tmp_path: Path) -> None:
    # 12.4.2.2 step 2: "If a previous popauth database exists, convert it".
    write_gdbm(tmp_path / "pop.auth", {b"bob\0": obscured("bob's apop secret")})
    write_ndbm(tmp_path / "old.auth", {b"carol\0": obscured("carol-secret")})
    assert server.cli("mailauth", "-init").returncode == 0
    for database in ("pop.auth", "old.auth"):
        done = server.cli("mailauth", "-convert", str(tmp_path / database))
        assert done.returncode == 0, done.stderr
        assert b"imported 1 users, skipped 0 lines" in done.stdout
    for user in ("bob", "carol"):
        done = server.cli("mailusradm", "set", user, "apop-mailpass")
        assert done.returncode == 0, done.stderr
    for user, secret in (("bob", "bob's apop secret"), ("carol", "carol-secret")):
        client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
        assert client.apop(user, secret).startswith(b"+OK")
        client.quit()
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    try:
        client.apop("bob", "not the secret")
        raise AssertionError("APOP with a wrong secret was accepted")
    except poplib.error_proto:
        pass
    finally:
        client.close()


def test_mh_pop_folder_converted_then_read_over_pop3(server: Server, tmp_path: Path) -> None:
    # 12.4.2.1 step 5: "mailcv -Q -f input" (here with the new name, carol).
    folder = mh_folder(tmp_path / "POP", "charlie")
    done = server.cli("mailcv", "-Q", "-f", str(folder), "carol")
    assert done.returncode == 0, done.stderr
    assert server.messages("carol")[0].startswith(b"Return-Path: <sender1@example.org>")
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    client.user("carol")
    client.pass_(PASSWORD)
    try:
        assert client.stat()[0] == 4
        _, lines, _ = client.retr(4)
        assert b"Subject: message 10" in lines
    finally:
        client.quit()
