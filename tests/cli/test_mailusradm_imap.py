"""The chapter's Mail User Administration flow for IMAP (12.5.2 steps 5 to 9) in
``posthouse mailusradm set``: the INBOX and its special-use folders made when missing, the
privileges chosen on them, the mail password asked where the type needs one, and a user
leaving IMAP told where their IMAP mail is, which is deleted only when asked for."""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posthouse.admin.mailauth import files_of
from posthouse.admin.mailstore import ensure_inbox
from posthouse.app import mail_store_for
from posthouse.auth.mailauth import MailAuthDatabase
from posthouse.auth.users import ServiceType, UserDatabase
from posthouse.cli import mailusradm
from posthouse.config.load import load_settings
from posthouse.store.backend import NewMessage

FOLDERS = ["user.jake", "user.jake.Drafts", "user.jake.Junk", "user.jake.Sent", "user.jake.Trash"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posthouse.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\nrun_as = ""\n')
    settings = load_settings(path)
    settings.paths.users_db.parent.mkdir(parents=True, exist_ok=True)
    with UserDatabase(settings.paths.users_db) as users:
        users.add("jake", "pw-of-jake")
    return path


def tool(config: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, POSTHOUSE_CONFIG=str(config))
    return subprocess.run(
        [sys.executable, "-m", "posthouse", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def acls(config: Path) -> dict[str, str]:
    """The store's mailboxes of jake and their ACLs."""
    store = mail_store_for(load_settings(config))

    async def read() -> dict[str, str]:
        try:
            return {r.name: r.acl for r in await store.backend.list_mailboxes("user.jake")}
        finally:
            await store.backend.close()

    return asyncio.run(read())


def deliver(config: Path, size: int) -> None:
    store = mail_store_for(load_settings(config))
    content = b"Subject: big\r\n\r\n" + b"x" * size + b"\r\n"

    async def put() -> None:
        try:
            await store.deliver("jake", [NewMessage(content, datetime.now(UTC))])
        finally:
            await store.backend.close()

    asyncio.run(put())


def service_type(config: Path) -> ServiceType:
    with UserDatabase(load_settings(config).paths.users_db) as users:
        user = users.get("jake")
        assert user is not None
        return user.service_type


def test_missing_special_use_folders_are_made_again_with_the_inbox_acl(config: Path) -> None:
    assert tool(config, "mailusradm", "set", "jake", "imap", "--rights", "lrs").returncode == 0
    store = mail_store_for(load_settings(config))

    async def drop_sent() -> None:
        try:
            await store.backend.delete_mailboxes(["user.jake.Sent"])
        finally:
            await store.backend.close()

    asyncio.run(drop_sent())
    assert "user.jake.Sent" not in acls(config)
    done = tool(config, "mailusradm", "set", "jake", "imap")
    assert done.returncode == 0, done.stderr
    assert "created" not in done.stdout  # the INBOX was there
    assert acls(config) == {name: "jake\tlrs\t" for name in FOLDERS}  # default: left as is


def test_rights_given_for_existing_mailboxes_set_the_users_entry(config: Path) -> None:
    assert tool(config, "mailusradm", "set", "jake", "imap").returncode == 0
    assert set(acls(config).values()) == {"jake\tlrswipkxtea\t"}  # all, by default
    done = tool(config, "mailusradm", "set", "jake", "imap", "--rights", "lrsip")
    assert done.returncode == 0, done.stderr
    assert acls(config) == {name: "jake\tlrsip\t" for name in FOLDERS}
    done = tool(config, "mailusradm", "set", "jake", "imap", "--rights", "lrQ")
    assert done.returncode == 64 and "unknown right 'Q'" in done.stderr
    assert set(acls(config).values()) == {"jake\tlrsip\t"}


def test_imap_with_mail_password_reads_it_from_a_file_or_refuses_without_a_terminal(
    config: Path, tmp_path: Path
) -> None:
    assert tool(config, "mailauth", "-init").returncode == 0
    done = tool(config, "mailusradm", "set", "jake", "imap-mailpass")
    assert done.returncode == 64 and "use --password-file FILE" in done.stderr
    assert service_type(config) is ServiceType.UNIX and acls(config) == {}
    password_file = tmp_path / "mail-password"
    password_file.write_text("jakes-imap-secret\n")
    done = tool(
        config, "mailusradm", "set", "jake", "imap-mailpass", "--password-file", str(password_file)
    )
    assert done.returncode == 0, done.stderr
    assert "mail password set for jake" in done.stdout
    assert service_type(config) is ServiceType.IMAP_MAILPASS
    assert sorted(acls(config)) == FOLDERS
    files = files_of(load_settings(config))
    with MailAuthDatabase(files.database, files.key) as database:
        assert database.verify("jake", "jakes-imap-secret")
    missing = tool(
        config, "mailusradm", "set", "jake", "imap-mailpass", "--password-file", "/no/such"
    )
    assert missing.returncode == 66


class TtyInput(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_imap_with_mail_password_asks_for_it_twice_on_a_terminal(config: Path) -> None:
    settings = load_settings(config)
    assert tool(config, "mailauth", "-init").returncode == 0
    asked: list[str] = []
    answers = iter(["typed-secret", "typed-secret"])

    def prompt(question: str) -> str:
        asked.append(question)
        return next(answers)

    out, err = io.StringIO(), io.StringIO()
    args = argparse.Namespace(
        mailusradm_action="set",
        user="jake",
        service_type="imap-mailpass",
        rights=None,
        password_file=None,
        password_stdin=False,
        delete_imap_mail=False,
    )
    status = mailusradm.run_mailusradm(
        files_of(settings),
        args,
        stdin=TtyInput(),
        stdout=out,
        stderr=err,
        prompt=prompt,
        create_inbox=functools.partial(ensure_inbox, settings),
    )
    assert status == 0, err.getvalue()
    assert asked == ["New mail password for jake: ", "Retype new mail password: "]
    assert "IMAP INBOX created" in out.getvalue()
    files = files_of(settings)
    with MailAuthDatabase(files.database, files.key) as database:
        assert database.verify("jake", "typed-secret")


def test_leaving_imap_says_where_the_mail_is_and_deletes_it_only_when_asked(
    config: Path,
) -> None:
    assert tool(config, "mailusradm", "set", "jake", "imap").returncode == 0
    deliver(config, 5000)
    deliver(config, 3000)
    done = tool(config, "mailusradm", "set", "jake", "pop")
    assert done.returncode == 0, done.stderr
    assert service_type(config) is ServiceType.POP
    lines = done.stdout.splitlines()
    assert "jake: the IMAP mailboxes are kept in the IMAP store:" in lines
    inbox = next(line.split() for line in lines if line.split()[:1] == ["user.jake"])
    assert inbox[1:5] == ["2", "messages", "8", "KB"]  # 2 messages, 8,000-odd octets
    assert Path(inbox[5]).is_dir()  # where the files are
    assert any(line.split()[:2] == ["user.jake.Sent", "0"] for line in lines)
    assert "--delete-imap-mail" in done.stdout
    assert sorted(acls(config)) == FOLDERS  # kept

    refused = tool(config, "mailusradm", "set", "jake", "imap", "--delete-imap-mail")
    assert refused.returncode == 64 and sorted(acls(config)) == FOLDERS

    done = tool(config, "mailusradm", "set", "jake", "unix", "--delete-imap-mail")
    assert done.returncode == 0, done.stderr
    assert "jake: the IMAP mailboxes are deleted:" in done.stdout
    assert "user.jake.Trash" in done.stdout
    assert acls(config) == {}
    assert service_type(config) is ServiceType.UNIX
