"""``posthouse deliver -e`` (duplicate suppression by Message-ID, Cyrus's deliver.db) and
``-q`` (deliver even over quota), without a server."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from posthouse.admin import deliver as admin_deliver
from posthouse.app import mail_store_for
from posthouse.cli.deliver import EX_TEMPFAIL, run_deliver
from posthouse.config.load import load_settings
from posthouse.config.schema import Settings
from posthouse.store.backend import MailboxRecord, MailStoreBackend
from posthouse.store.errors import OverQuota
from posthouse.store.service import MailStore


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    path = tmp_path / "posthouse.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\nrun_as = ""\n', "utf-8")
    settings = load_settings(path)
    store = mail_store_for(settings)

    async def create() -> None:
        await store.create_user("alice")
        await store.session("alice").create("INBOX.work")
        await store.backend.close()

    asyncio.run(create())
    return settings


def deliver(
    settings: Settings, content: bytes, *argv: str, folder: str = "work"
) -> tuple[int, str]:
    args = argparse.Namespace(
        users=[a for a in argv if not a.startswith("-")],
        sender="x@y.test",
        folder=folder if "-m" in argv else None,
        poster="alice" if "-m" in argv else None,
        ignore_quota="-q" in argv,
        suppress_duplicates="-e" in argv,
    )
    err = io.StringIO()
    status = run_deliver(settings, args, stdin=io.BytesIO(content), stderr=err)
    return status, err.getvalue()


def count(settings: Settings, mailbox: str) -> int:
    store = mail_store_for(settings)

    async def status() -> int:
        try:
            return (await store.session("alice").status(mailbox)).messages
        finally:
            await store.backend.close()

    return asyncio.run(status())


def message(message_id: str) -> bytes:
    return f"Message-ID: {message_id}\nSubject: dup\n\nbody\n".encode()


def test_e_delivers_a_message_id_once_per_user_and_folder(settings: Settings) -> None:
    first = message("<one@y.test>")
    assert deliver(settings, first, "-e", "alice") == (0, "")
    status, err = deliver(settings, first, "-e", "alice")
    assert status == 0 and "duplicate" in err
    assert count(settings, "INBOX") == 1
    assert deliver(settings, message("<two@y.test>"), "-e", "alice")[0] == 0
    assert count(settings, "INBOX") == 2
    assert deliver(settings, first, "-e", "-m", "alice")[0] == 0  # another folder: delivered
    assert count(settings, "INBOX.work") == 1
    assert deliver(settings, first, "alice")[0] == 0  # without -e nothing is suppressed
    assert count(settings, "INBOX") == 3
    no_id = b"Subject: no id\n\nbody\n"
    assert deliver(settings, no_id, "-e", "alice")[0] == 0
    assert deliver(settings, no_id, "-e", "alice")[0] == 0  # no Message-ID: no suppression
    assert count(settings, "INBOX") == 5


def test_e_keys_on_the_mailbox_written_not_the_folder_asked_for(settings: Settings) -> None:
    first = message("<fallback@y.test>")
    assert deliver(settings, first, "-e", "-m", "alice", folder="missing") == (0, "")
    assert count(settings, "INBOX") == 1  # no such folder: the INBOX
    status, err = deliver(settings, first, "-e", "alice")  # the INBOX has it already
    assert status == 0 and "duplicate" in err
    status, err = deliver(settings, first, "-e", "-m", "alice", folder="other")
    assert status == 0 and "duplicate" in err
    assert count(settings, "INBOX") == 1
    assert deliver(settings, first, "-e", "-m", "alice") == (0, "")  # INBOX.work: not yet
    assert count(settings, "INBOX.work") == 1


class FullQuota:
    async def check(
        self, backend: MailStoreBackend, record: MailboxRecord, added_bytes: int, *, delivery: bool
    ) -> None:
        raise OverQuota(f"{record.name} is over its quota")


def test_q_delivers_over_quota(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_store(settings: Settings) -> MailStore:
        return replace(mail_store_for(settings), quota=FullQuota())

    monkeypatch.setattr(admin_deliver, "mail_store_for", full_store)
    status, err = deliver(settings, message("<q@y.test>"), "alice")
    assert status == EX_TEMPFAIL and "quota" in err
    assert deliver(settings, message("<q@y.test>"), "-q", "alice") == (0, "")
    assert count(settings, "INBOX") == 1


def lmtp(settings: Settings, conversation: bytes, *argv: str) -> tuple[int, list[bytes]]:
    args = argparse.Namespace(
        users=[a for a in argv if not a.startswith("-")],
        sender=None,
        folder=None,
        poster="alice",  # -a alice: her post right lets alice+work into INBOX.work
        ignore_quota="-q" in argv,
        suppress_duplicates="-e" in argv,
        lmtp=True,
    )
    out, err = io.BytesIO(), io.StringIO()
    status = run_deliver(settings, args, stdin=io.BytesIO(conversation), stderr=err, stdout=out)
    return status, out.getvalue().splitlines()


def test_l_speaks_lmtp_on_stdin_and_stdout(settings: Settings) -> None:
    body = b"Message-ID: <l@y.test>\r\nSubject: lmtp\r\n\r\n..dot-stuffed\r\n"
    conversation = (
        b"LHLO mta.example.test\r\n"
        b"MAIL FROM:<x@y.test>\r\n"
        b"RCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\n"
        b"RCPT TO:<alice+work@example.test>\r\n"
        b"RCPT TO:<+work@example.test>\r\n"
        b"DATA\r\n" + body + b".\r\n"
        b"MAIL FROM:<x@y.test>\r\n"
        b"RCPT TO:<alice@example.test>\r\n"
        b"DATA\r\n" + body + b".\r\n"
        b"QUIT\r\n"
    )
    status, lines = lmtp(settings, conversation, "-e")
    assert status == 0
    codes = [line[:3] for line in lines if not line.startswith(b"250-")]
    # greeting, LHLO, MAIL, 3 RCPTs accepted and one refused, DATA, one reply per accepted
    # recipient (nobody has no INBOX), then the second message: a duplicate under -e.
    first = [b"220", b"250", b"250", b"250", b"250", b"250", b"550", b"354", b"250", b"550", b"250"]
    second = [b"250", b"250", b"354", b"250", b"221"]
    assert codes == first + second, lines
    assert b"delivered before" in lines[-2]
    assert count(settings, "INBOX") == 1
    assert count(settings, "INBOX.work") == 1
    store = mail_store_for(settings)

    async def first() -> bytes:
        try:
            user = store.session("alice")
            opened = await user.select("INBOX", read_only=True)
            with user.open_message(opened, opened.snapshot.uids[0]) as stream:
                return stream.read()
        finally:
            await store.backend.close()

    stored = asyncio.run(first())
    assert stored.startswith(b"Return-Path: <x@y.test>\r\n")
    assert stored.endswith(b"\r\n.dot-stuffed\r\n")


def test_l_refuses_users_on_the_command_line(settings: Settings) -> None:
    assert lmtp(settings, b"", "alice")[0] == 64


def test_the_command_line_takes_l_q_and_e(settings: Settings) -> None:
    conversation = (
        b"LHLO mta\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
        b"Subject: piped\r\n\r\nover a pipe\r\n.\r\nQUIT\r\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "posthouse", "deliver", "-l", "-q", "-e"],
        input=conversation,
        capture_output=True,
        env={**os.environ, "POSTHOUSE_CONFIG": settings.source},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"250 2.1.5 <alice> delivered\r\n221" in done.stdout, done.stdout
    assert count(settings, "INBOX") == 1


def test_l_takes_bare_user_and_user_plus_folder_as_cyrus_lmtpd(settings: Settings) -> None:
    conversation = (
        b"LHLO mta\r\nMAIL FROM:<x@y.test>\r\nRCPT TO:<alice>\r\nRCPT TO:<alice+work>\r\n"
        b"RCPT TO:<+work>\r\nDATA\r\nSubject: bare\r\n\r\nno domain\r\n.\r\nQUIT\r\n"
    )
    status, lines = lmtp(settings, conversation)
    codes = [line[:3] for line in lines if not line.startswith(b"250-")]
    assert status == 0
    assert codes == [b"220", b"250", b"250", b"250", b"250", b"550", b"354", b"250", b"250", b"221"]
    assert count(settings, "INBOX") == 1 and count(settings, "INBOX.work") == 1
