"""Quotas end to end through the real daemon (chapter 12.5.8, RFC 9208): imaplib and
imapclient with GETQUOTA/GETQUOTAROOT/SETQUOTA, APPEND/COPY/MOVE refused with [OVERQUOTA]
and nothing written, the quotawarn alert on SELECT, and delivery over quota deferred: 452
4.2.2 at RCPT TO over SMTP and LMTP, exit 75 from ``posthouse deliver``, mail already
queued kept there until the user deletes mail and the queue runs."""

from __future__ import annotations

import asyncio
import re
import smtplib
import socket
from collections.abc import Callable

import imapclient
import pytest
from imapclient.imapclient import Quota

from posthouse.app import mail_store_for
from posthouse.config.load import load_settings
from tests.e2e.conftest import PASSWORD, Server, wait_until
from tests.e2e.imap.mailbox import connect

ADMIN = '\n[imap]\nadmins = "carol"\nquotawarn = 50\n'
KB = 1024


def sized(subject: str, size: int) -> bytes:
    head = f"From: dave@remote.test\r\nSubject: {subject}\r\n\r\n".encode()
    return head + b"x" * (size - len(head))


def set_quota(server: Server, root: str, limit_kb: int | None) -> None:
    """SETQUOTA as the admin, over IMAP."""
    client = connect(server, "carol")
    try:
        limits = "" if limit_kb is None else f"STORAGE {limit_kb}"
        status, data = client._simple_command("SETQUOTA", root, f"({limits})")
        assert status == "OK", data
    finally:
        client.logout()


def messages_in(server: Server, user: str, mailbox: str = "INBOX") -> int:
    client = connect(server, user)
    try:
        status, data = client.status(mailbox, "(MESSAGES)")
        assert status == "OK", data
        found = re.search(rb"MESSAGES (\d+)", data[0])
        assert found is not None
        return int(found.group(1))
    finally:
        client.logout()


@pytest.fixture
def server(imap_factory: Callable[..., Server]) -> Server:
    return imap_factory(extra=ADMIN)


def unquoted(data: list[object]) -> list[object]:
    """imaplib's response lines without the quotes around names (either form is valid)."""
    return [d.replace(b'"', b"") if isinstance(d, bytes) else d for d in data]


def test_quota_commands_with_imaplib(server: Server) -> None:
    admin = connect(server, "carol")
    alice = connect(server, "alice")
    try:
        status, data = alice.capability()  # after login (RFC 9208 §3.1)
        assert {b"QUOTA", b"QUOTA=RES-STORAGE"} <= set(data[0].split())
        status, data = admin._simple_command("SETQUOTA", "user.alice", "(STORAGE 100)")
        assert status == "OK", data
        assert unquoted(admin.untagged_responses.pop("QUOTA")) == [b"user.alice (STORAGE 0 100)"]
        status, data = alice.append("INBOX", None, None, sized("one", 3 * KB))
        assert status == "OK", data
        status, data = alice.getquotaroot("INBOX")
        assert status == "OK", data
        assert [unquoted(d) for d in data] == [[b"INBOX INBOX"], [b"INBOX (STORAGE 3 100)"]]
        status, data = alice.getquota("INBOX")
        assert (status, unquoted(data)) == ("OK", [b"INBOX (STORAGE 3 100)"])
        status, data = admin.getquota("user.alice")
        assert (status, unquoted(data)) == ("OK", [b"user.alice (STORAGE 3 100)"])
        status, data = alice.getquotaroot("INBOX.Sent")  # below the root: limited by it
        assert [unquoted(d) for d in data] == [[b"INBOX.Sent INBOX"], [b"INBOX (STORAGE 3 100)"]]
        # Only admins set quotas; others' roots are not to be seen.
        status, data = alice._simple_command("SETQUOTA", "INBOX", "(STORAGE 1000)")
        assert status == "NO" and b"[NOPERM]" in data[0]
        bob = connect(server, "bob")
        try:
            status, data = bob.getquota("user.alice")
            assert status == "NO" and b"[NOPERM]" in data[0]
            status, data = bob.getquotaroot("user.alice")  # not shared with bob: no such box
            assert status == "NO" and data[0][0].startswith(b"[NONEXISTENT]"), data
            status, data = bob.getquotaroot("INBOX")
            assert (status, unquoted(data[0])) == ("OK", [b"INBOX"])  # bob has no root
        finally:
            bob.logout()
        status, data = admin._simple_command("SETQUOTA", "user.alice", "(FILES 10)")
        assert status == "NO" and b"STORAGE" in data[0]
        status, data = admin._simple_command("SETQUOTA", "user.nobody", "(STORAGE 10)")
        assert status == "NO" and b"[NONEXISTENT]" in data[0]
        # An empty list removes the root: the limit is lifted.
        status, data = admin._simple_command("SETQUOTA", "user.alice", "()")
        assert status == "OK", data
        status, data = alice.getquotaroot("INBOX")
        assert (status, unquoted(data[0])) == ("OK", [b"INBOX"])
        status, data = admin.getquota("user.alice")
        assert status == "NO" and b"[NONEXISTENT]" in data[0]
    finally:
        alice.logout()
        admin.logout()


def test_quota_commands_with_imapclient(server: Server) -> None:
    with imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False) as admin:
        admin.login("carol", PASSWORD)
        [set_to] = admin.set_quota([Quota("user.bob", "STORAGE", 0, 50)])
        assert (set_to.quota_root, set_to.resource, set_to.limit) == ("user.bob", "STORAGE", 50)
    with imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False) as bob:
        bob.login("bob", PASSWORD)
        bob.append("INBOX.Drafts", sized("draft", 2 * KB))
        roots, quotas = bob.get_quota_root("INBOX.Drafts")
        assert (roots.mailbox, roots.quota_roots) == ("INBOX.Drafts", ["INBOX"])
        assert [(q.quota_root, q.resource, q.usage, q.limit) for q in quotas] == [
            ("INBOX", "STORAGE", 2, 50)
        ]
        [quota] = bob.get_quota("INBOX")
        assert (quota.usage, quota.limit) == (2, 50)


def test_append_copy_move_over_quota_fail_with_nothing_written(server: Server) -> None:
    set_quota(server, "user.alice", 10)
    alice = connect(server, "alice")
    try:
        assert alice.append("INBOX", None, None, sized("six", 6 * KB))[0] == "OK"
        status, data = alice.append("INBOX", None, None, sized("five", 5 * KB))
        assert status == "NO" and data[0].startswith(b"[OVERQUOTA]"), data
        # MULTIAPPEND (RFC 3502): all or nothing.
        first, second = sized("a", 2 * KB), sized("b", 3 * KB)
        tag = alice._new_tag().decode()
        alice.send(
            f"{tag} APPEND INBOX.Sent {{{len(first)}+}}\r\n".encode()
            + first
            + f" {{{len(second)}+}}\r\n".encode()
            + second
            + b"\r\n"
        )
        reply = alice.readline()
        while not reply.startswith(tag.encode()):
            reply = alice.readline()
        assert reply.startswith(f"{tag} NO [OVERQUOTA]".encode()), reply
        alice.select("INBOX")
        status, data = alice.copy("1", "INBOX.Trash")
        assert status == "NO" and data[0].startswith(b"[OVERQUOTA]"), data
        status, data = alice._simple_command("MOVE", "1", "INBOX.Trash")
        assert status == "OK", data  # a MOVE within the root adds nothing
        alice.select("INBOX.Trash")
        status, data = alice.copy("1", "INBOX")
        assert status == "NO" and data[0].startswith(b"[OVERQUOTA]"), data
    finally:
        alice.logout()
    assert messages_in(server, "alice", "INBOX") == 0
    assert messages_in(server, "alice", "INBOX.Sent") == 0
    assert messages_in(server, "alice", "INBOX.Trash") == 1


def test_select_alerts_past_quotawarn_only_users_who_can_expunge(server: Server) -> None:
    set_quota(server, "user.alice", 10)
    alice = connect(server, "alice")
    try:
        alice.append("INBOX", None, None, sized("four", 4 * KB))  # 40%: no alert yet
        alice.select("INBOX")
        assert "NO" not in alice.untagged_responses
        alice.append("INBOX", None, None, sized("two", 2 * KB))  # 60% > quotawarn 50
        alice.select("INBOX")
        [alert] = alice.untagged_responses.pop("NO")
        assert alert.startswith(b"[ALERT] Mailbox is at 60% of quota"), alert
        alice.select("INBOX", readonly=True)  # EXAMINE: nothing to correct there
        assert "NO" not in alice.untagged_responses
    finally:
        alice.logout()
    store = mail_store_for(load_settings(server.config_path))

    async def share_read_only() -> None:
        inbox = await store.backend.get_mailbox("user.alice")
        assert inbox is not None
        await store.backend.set_acl("user.alice", inbox.acl + "bob\tlrsw\t")
        await store.backend.close()

    asyncio.run(share_read_only())
    bob = connect(server, "bob")
    try:
        status, data = bob._simple_command("SELECT", "user.alice")
        assert status == "OK" and b"READ-WRITE" in data[0], data
        assert "NO" not in bob.untagged_responses  # without "e" bob cannot free anything
    finally:
        bob.logout()


class LMTPClient:
    """An LMTP conversation over the daemon's unix socket, one command at a time."""

    def __init__(self, server: Server) -> None:
        assert server.lmtp_path is not None
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(server.lmtp_path))
        self.sock.settimeout(60)
        self.stream = self.sock.makefile("rwb")
        assert self.reply().startswith(b"220 ")
        assert self.command(b"LHLO client").startswith(b"250")

    def reply(self) -> bytes:
        line = self.stream.readline()
        while line[3:4] == b"-":
            line = self.stream.readline()
        return line

    def command(self, line: bytes) -> bytes:
        self.stream.write(line + b"\r\n")
        self.stream.flush()
        return self.reply()

    def data(self, body: bytes) -> bytes:
        assert self.command(b"DATA").startswith(b"354")
        self.stream.write(body + b"\r\n.\r\n")
        self.stream.flush()
        return self.reply()

    def close(self) -> None:
        self.command(b"QUIT")
        self.stream.close()
        self.sock.close()


def lmtp_deliver(server: Server, recipient: str, body: bytes) -> bytes:
    """The RCPT reply when it refuses, else the reply after DATA."""
    client = LMTPClient(server)
    try:
        assert client.command(b"MAIL FROM:<a@remote.test>").startswith(b"250")
        rcpt = client.command(f"RCPT TO:<{recipient}>".encode())
        return client.data(body) if rcpt.startswith(b"250") else rcpt
    finally:
        client.close()


def queue_listing(server: Server) -> str:
    done = server.cli("mailq")
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def test_delivery_over_quota_is_deferred_until_the_user_deletes_mail(
    imap_factory: Callable[..., Server],
) -> None:
    server = imap_factory(extra=ADMIN, queue={"retry_seconds": 3600.0})
    for user in ("alice",):
        assert server.cli("mailusradm", "set", user, "imap").returncode == 0
    set_quota(server, "user.alice", 10)
    # Under the limit when delivery starts: delivered whatever its size.
    assert lmtp_deliver(server, "alice@example.test", sized("big", 12 * KB)).startswith(b"250 ")
    # Now over it: 452 4.2.2 (RFC 3463 mailbox full) at RCPT TO, over LMTP as over SMTP,
    # so the sending server keeps the message and retries.
    reply = lmtp_deliver(server, "alice@example.test", sized("lmtp", 1 * KB))
    assert reply.startswith(b"452 4.2.2"), reply
    with (
        smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as client,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        client.sendmail("dave@remote.test", ["alice@example.test"], sized("smtp", KB))
    code, text = refused.value.recipients["alice@example.test"]
    assert code == 452 and text.startswith(b"4.2.2"), text
    # deliver(8): EX_TEMPFAIL, for the MTA that called it to retry.
    done = server.cli("deliver", "alice", input=sized("deliver", KB))
    assert done.returncode == 75 and b"quota" in done.stderr, done
    # Mail that is already here (submitted locally) waits in the queue, deferred.
    done = server.cli("sendmail", "alice@example.test", input=sized("queued", KB))
    assert done.returncode == 0, done.stderr
    wait_until(lambda: "over quota" in queue_listing(server), what="a deferred entry")
    assert "<alice@example.test>" in queue_listing(server)
    assert messages_in(server, "alice") == 1
    # Alice deletes the big message; the administrator runs the queue: it is delivered.
    alice = connect(server, "alice")
    try:
        alice.select("INBOX")
        alice.store("1", "+FLAGS", "\\Deleted")
        assert alice.expunge()[0] == "OK"
    finally:
        alice.logout()
    result = server.cli("sendmail", "-q")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: messages_in(server, "alice") == 1 and "empty" in queue_listing(server),
               what="the queued message delivered")  # fmt: skip
    client = connect(server, "alice")
    try:
        client.select("INBOX", readonly=True)
        status, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK" and b"Subject: queued" in data[0][1]
    finally:
        client.logout()


def test_lmtp_refusing_after_data_leaves_nothing_in_the_queue(
    imap_factory: Callable[..., Server],
) -> None:
    """Over quota between RCPT and DATA: 452 after DATA, and the client keeps the message
    (RFC 2033), so this host must not deliver it later as well."""
    server = imap_factory(extra=ADMIN, queue={"retry_seconds": 3600.0})
    assert server.cli("mailusradm", "set", "alice", "imap").returncode == 0
    set_quota(server, "user.alice", 10)
    client = LMTPClient(server)
    try:
        assert client.command(b"MAIL FROM:<a@remote.test>").startswith(b"250")
        assert client.command(b"RCPT TO:<alice@example.test>").startswith(b"250")
        done = server.cli("deliver", "alice", input=sized("big", 12 * KB))  # now over
        assert done.returncode == 0, done.stderr
        reply = client.data(sized("late", KB))
        assert reply.startswith(b"452 4.2.2"), reply
    finally:
        client.close()
    assert "empty" in queue_listing(server)
    assert messages_in(server, "alice") == 1


def test_rcpt_follows_aliases_to_the_full_mailbox(imap_factory: Callable[..., Server]) -> None:
    """An alias whose every target is a full store mailbox is refused at RCPT TO like the
    user's own address; one with a target that has room is accepted (delivery defers the
    full one)."""
    server = imap_factory(extra=ADMIN, queue={"retry_seconds": 3600.0})
    for user in ("alice", "bob"):
        assert server.cli("mailusradm", "set", user, "imap").returncode == 0
    (server.home / "data" / "etc" / "aliases").write_text(
        "sales: alice\nfront: sales\nteam: alice, bob\n", encoding="utf-8"
    )
    assert server.cli("newaliases").returncode == 0
    set_quota(server, "user.alice", 10)
    assert lmtp_deliver(server, "alice@example.test", sized("big", 12 * KB)).startswith(b"250 ")
    for alias in ("sales@example.test", "front@example.test"):
        with (
            smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as client,
            pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
        ):
            client.sendmail("dave@remote.test", [alias], sized("to the alias", KB))
        code, text = refused.value.recipients[alias]
        assert code == 452 and text.startswith(b"4.2.2"), text
        assert lmtp_deliver(server, alias, sized("lmtp", KB)).startswith(b"452 4.2.2")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as client:
        assert client.sendmail("dave@remote.test", ["team@example.test"], sized("team", KB)) == {}
    wait_until(lambda: messages_in(server, "bob") == 1, what="bob's copy")
    wait_until(lambda: "over quota" in queue_listing(server), what="alice's copy deferred")
    assert messages_in(server, "alice") == 1
