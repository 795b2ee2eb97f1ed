"""Delivery into the IMAP store end to end: SMTP, LMTP, ``posthouse deliver``, ``user+folder``,
POP3 over the same INBOX, ``mailcv -I`` and a kill -9 during delivery."""

from __future__ import annotations

import asyncio
import imaplib
import os
import poplib
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import trustme

from posthouse.app import mail_store_for
from posthouse.config.load import load_settings
from posthouse.store.names import INBOX
from posthouse.store.service import MailStore
from posthouse.store.uidset import UidSet
from tests.e2e.conftest import PASSWORD, Server, wait_until
from tests.e2e.imap.conftest import start


def set_imap(server: Server, *users: str) -> None:
    for user in users:
        done = server.cli("mailusradm", "set", user, "imap")
        assert done.returncode == 0, done.stderr


def imap(server: Server, user: str = "alice") -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login(user, PASSWORD)
    return client


def fetch_all(server: Server, user: str, mailbox: str = "INBOX") -> list[tuple[int, bytes]]:
    """(UID, message bytes) of every message, read over IMAP."""
    client = imap(server, user)
    try:
        typ, _ = client.select(mailbox, readonly=True)
        assert typ == "OK"
        typ, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
        assert typ == "OK"
        found = []
        for item in data:
            if isinstance(item, tuple):
                uid = re.search(rb"UID (\d+)", item[0])
                assert uid is not None
                found.append((int(uid.group(1)), item[1]))
        return found
    finally:
        client.logout()


def send(server: Server, recipients: list[str], body: str) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as client:
        message = f"From: dave@remote.test\r\nSubject: test\r\n\r\n{body}\r\n"
        return client.sendmail("dave@remote.test", recipients, message)


def store_of(server: Server) -> MailStore:
    return mail_store_for(load_settings(server.config_path))


def test_smtp_to_an_imap_user_is_the_same_bytes_over_imap_and_pop3(
    imap_factory: Callable[..., Server],
) -> None:
    server = imap_factory()
    set_imap(server, "alice")
    send(server, ["alice@example.test", "bob@example.test"], "first line\r\n.dot line")
    [(uid, over_imap)] = fetch_all(server, "alice")
    assert b"Return-Path: <dave@remote.test>\r\n" in over_imap
    assert b"\r\n.dot line\r\n" in over_imap
    assert server.messages("alice") == []  # not the spool: the store
    assert len(server.messages("bob")) == 1  # bob is still a spool (UNIX type) user

    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    pop.user("alice")
    pop.pass_(PASSWORD)
    _, lines, _ = pop.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == over_imap
    unique_id = pop.uidl(1).split()[-1]
    assert unique_id.endswith(b"." + str(uid).encode())  # UIDVALIDITY.UID: the same UID
    pop.dele(1)
    pop.quit()  # DELE at QUIT expunges
    assert fetch_all(server, "alice") == []


def test_user_plus_folder_reaches_the_folder_when_it_allows_posting(
    imap_factory: Callable[..., Server],
) -> None:
    server = imap_factory()
    set_imap(server, "alice")
    client = imap(server)
    assert client.create("INBOX.lists")[0] == "OK"
    assert client.create("INBOX.closed")[0] == "OK"
    client.logout()
    store = store_of(server)

    async def allow_posting() -> None:
        await store.backend.set_acl("user.alice.lists", "alice\tlrswipkxtea\tanyone\tp\t")
        await store.backend.close()

    asyncio.run(allow_posting())
    send(server, ["alice+lists@example.test"], "to the list folder")
    send(server, ["alice+closed@example.test"], "no p right: INBOX")
    send(server, ["alice+missing@example.test"], "no folder: INBOX")
    [(_, listed)] = fetch_all(server, "alice", "INBOX.lists")
    assert listed.endswith(b"to the list folder\r\n")
    assert fetch_all(server, "alice", "INBOX.closed") == []
    inbox = [m for _, m in fetch_all(server, "alice")]
    assert [m.endswith(b"INBOX\r\n") for m in inbox] == [True, True]


def test_deliver_command_puts_stdin_into_the_folder_with_sysexits_codes(
    imap_factory: Callable[..., Server],
) -> None:
    server = imap_factory()
    client = imap(server)
    assert client.create("INBOX.work")[0] == "OK"
    client.logout()
    store = store_of(server)

    async def allow_bob() -> None:
        await store.backend.set_acl("user.alice.work", "alice\tlrswipkxtea\tbob\tp\t")
        await store.backend.close()

    asyncio.run(allow_bob())
    message = b"From: x@y.test\nSubject: deliver\n\nby deliver(8)\n"
    done = server.cli(
        "deliver", "-a", "bob", "-m", "work", "-f", "x@y.test", "alice", input=message
    )
    assert done.returncode == 0, done.stderr
    [(_, stored)] = fetch_all(server, "alice", "INBOX.work")
    assert stored == b"Return-Path: <x@y.test>\r\n" + message.replace(b"\n", b"\r\n")
    # Without -a bob the folder does not admit it: the INBOX gets it.
    done = server.cli("deliver", "-m", "work", "alice", input=message)
    assert done.returncode == 0, done.stderr
    assert len(fetch_all(server, "alice")) == 1
    # --config after the sub-command; a user without an INBOX: EX_NOUSER.
    done = server.cli("deliver", "nobody", "--config", str(server.config_path), input=message)
    assert done.returncode == 67, done.stderr
    assert b"5.1.1" in done.stderr
    assert server.cli("deliver", "alice", input=b"").returncode == 65
    assert server.cli("deliver", "--bogus", "alice", input=message).returncode == 64
    assert server.cli("deliver", "--help").returncode == 0


def test_lmtp_replies_per_recipient_for_store_users(imap_factory: Callable[..., Server]) -> None:
    server = imap_factory()
    set_imap(server, "alice", "bob")
    store = store_of(server)

    async def drop_bobs_inbox() -> None:
        await store.delete_user("bob")
        await store.backend.close()

    asyncio.run(drop_bobs_inbox())  # bob is IMAP type without an INBOX: 5.1.1 after DATA
    assert server.lmtp_path is not None
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(server.lmtp_path))
        sock.settimeout(60)
        stream = sock.makefile("rwb")
        assert stream.readline().startswith(b"220 ")
        stream.write(
            b"LHLO client\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\nDATA\r\n"
        )
        stream.flush()
        lines = []
        while not lines or not lines[-1].startswith(b"354"):
            lines.append(stream.readline())
        stream.write(b"Subject: lmtp\r\n\r\nper recipient\r\n.\r\n")
        stream.flush()
        replies = [stream.readline(), stream.readline()]
        assert replies[0].startswith(b"250 2.1.5"), replies
        assert replies[1].startswith(b"550 5.1.1"), replies
        [(_, stored)] = fetch_all(server, "alice")  # delivered before the reply
        assert stored.endswith(b"per recipient\r\n")
        stream.write(b"QUIT\r\n")
        stream.flush()
        assert stream.readline().startswith(b"221")


def spool_entry(n: int, from_line: str, status: str = "") -> bytes:
    return (
        f"From dave@remote.test {from_line}\nFrom: dave@remote.test\nSubject: old {n}\n"
        f"{status}\n>From the archive {n}\n\n"
    ).encode()


def test_mailcv_imap_keeps_dates_and_flags_and_loses_nothing_delivered_meanwhile(
    imap_factory: Callable[..., Server],
) -> None:
    server = imap_factory()
    spool = server.mbox("carol")
    spool.parent.mkdir(parents=True, exist_ok=True)
    head = [
        spool_entry(1, "Mon Mar  2 09:15:00 2026", "Status: RO\nX-Status: AF\n"),
        spool_entry(2, "Tue Mar  3 10:00:00 2026", "Status: O\nX-Status: D\n"),
        spool_entry(3, "Wed Mar  4 11:30:45 2026"),
    ]
    filler = [spool_entry(n, "Thu Mar  5 12:00:00 2026", "Status: RO\n") for n in range(4, 3001)]
    spool.write_bytes(b"".join(head + filler))
    converter = subprocess.Popen(
        [sys.executable, "-m", "posthouse", "mailcv", "-I", "-f", "carol", "business"],
        cwd=spool.parent,
        env=dict(os.environ, POSTHOUSE_CONFIG=str(server.config_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    store = store_of(server)

    async def converted_so_far() -> int:
        record = await store.backend.get_mailbox("user.carol.business")
        return (
            0
            if record is None
            else (await store.session("carol").status("INBOX.business")).messages
        )

    wait_until(lambda: asyncio.run(converted_so_far()) > 0, 120, "the conversion to start")
    assert converter.poll() is None, "the conversion finished before mail came in"
    send(server, ["carol@example.test"], "arrived during the conversion")  # carol: spool type
    out, err = converter.communicate(timeout=300)
    assert converter.returncode == 0, err
    assert b"3000 messages" in out
    arrived = server.wait_for_messages("carol", 1, timeout=120)
    assert [m.endswith(b"arrived during the conversion\n") for m in arrived] == [True]

    client = imap(server, "carol")
    client.select("INBOX.business")
    typ, data = client.fetch("1:3", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK"
    metas = [item[0] for item in data if isinstance(item, tuple)]
    bodies = [item[1] for item in data if isinstance(item, tuple)]
    assert b'INTERNALDATE " 2-Mar-2026 09:15:00 +0000"' in metas[0]
    assert b'INTERNALDATE " 4-Mar-2026 11:30:45 +0000"' in metas[2]
    assert set(re.findall(rb"\\\w+", metas[0].split(b"FLAGS")[1].split(b")")[0])) == {
        b"\\Seen",
        b"\\Answered",
        b"\\Flagged",
    }
    assert b"\\Deleted" in metas[1] and b"\\Seen" not in metas[1]
    assert b"\\Recent" not in metas[0] and b"\\Recent" in metas[2]
    assert b"Status:" not in bodies[0] and b"\r\nFrom the archive 1\r\n" in bodies[0]
    client.logout()
    asyncio.run(store.backend.close())


def test_kill_9_during_smtp_delivery_to_store_users_loses_nothing_acknowledged(
    imap_factory: Callable[..., Server], ca: trustme.CA
) -> None:
    server = imap_factory(workers=2)
    set_imap(server, "alice", "bob", "carol")
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        n = 0
        while not stop.is_set() and n < 400:
            marker = f"w{worker}-m{n}"
            try:
                with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
                    for _ in range(20):
                        message = f"Subject: {marker}\r\n\r\n{marker}\r\n"
                        client.sendmail(
                            "dave@remote.test",
                            ["alice@example.test", "bob@example.test", "carol@example.test"],
                            message,
                        )
                        with lock:
                            acknowledged.append(marker)
                        n += 1
                        marker = f"w{worker}-m{n}"
            except (OSError, smtplib.SMTPException):
                return

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acknowledged) >= 60, 120, "deliveries under way")
    server.process.kill()
    server.process.wait(timeout=30)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    server.release()
    got = list(acknowledged)
    restarted = start(server.config_path, server.home, ca, 2)
    try:
        store = store_of(restarted)

        async def markers(user: str) -> set[str]:
            session = store.session(user)
            found: set[str] = set()
            for item in await session.list_mailboxes("", "*"):
                opened = await session.select(item.name, read_only=True)
                metas = await session.fetch(opened, UidSet.of(opened.snapshot.uids))
                assert [m.uid for m in metas] == list(opened.snapshot.uids)  # index readable
                for uid in opened.snapshot.uids:
                    content = await session.read_message(opened, uid)
                    if item.name == INBOX:
                        found.add(content.rsplit(b"\r\n", 2)[-2].decode())
            return found

        async def everything() -> list[set[str]]:
            try:
                return [await markers(user) for user in ("alice", "bob", "carol")]
            finally:
                await store.backend.close()

        for found in asyncio.run(everything()):
            missing = set(got) - found
            assert not missing, f"{len(missing)} acknowledged messages lost: {sorted(missing)[:5]}"
        assert fetch_all(restarted, "alice")  # the restarted server serves the same INBOX
    finally:
        restarted.stop(signal.SIGKILL)


def test_a_large_message_goes_through_the_queue_into_the_store(
    imap_factory: Callable[..., Server],
) -> None:
    server = imap_factory()
    set_imap(server, "alice")
    body = "\r\n".join(f"line {n:06d} " + "x" * 60 for n in range(4000))  # ~280 KB: queued
    send(server, ["alice@example.test"], body)
    wait_until(lambda: len(fetch_all(server, "alice")) == 1, 120, "the queued delivery")
    [(_, stored)] = fetch_all(server, "alice")
    assert stored.endswith(body.encode() + b"\r\n")
    assert server.messages("alice") == []
