"""LMTP's per-recipient replies, graceful shutdown, workers and reload."""

from __future__ import annotations

import signal
import smtplib
import socket
from collections.abc import Callable

from tests.e2e.conftest import Server


def test_lmtp_replies_once_per_recipient(server: Server) -> None:
    assert server.lmtp_path is not None
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(server.lmtp_path))
        sock.settimeout(30)
        stream = sock.makefile("rwb")
        assert stream.readline().startswith(b"220 ")
        stream.write(
            b"LHLO client\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<nobody-x@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        )
        stream.flush()
        lines = []
        while not lines or not lines[-1].startswith(b"354"):
            lines.append(stream.readline())
        assert any(line.startswith(b"550 5.1.1") for line in lines)
        stream.write(b"Subject: lmtp\r\n\r\nper recipient\r\n.\r\n")
        stream.flush()
        replies = [stream.readline(), stream.readline()]
        assert all(r.startswith(b"250 2.1.5") for r in replies), replies
        # The deliveries happened before the replies (RFC 2033 §4.2).
        assert b"per recipient" in server.messages("alice")[0]
        assert b"per recipient" in server.messages("bob")[0]
        stream.write(b"QUIT\r\n")
        stream.flush()
        assert stream.readline().startswith(b"221")


def test_lmtp_takes_a_bare_local_part_for_a_local_user(server: Server) -> None:
    """<user> and <user+detail> without a domain, as Cyrus's lmtpd takes them (RFC 2033 §3:
    final delivery here); no user, a program, or another host's domain: refused."""
    assert server.lmtp_path is not None
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(server.lmtp_path))
        sock.settimeout(30)
        stream = sock.makefile("rwb")
        assert stream.readline().startswith(b"220 ")
        stream.write(b"LHLO client\r\n")
        stream.flush()
        while not stream.readline().startswith(b"250 "):
            pass

        def command(line: bytes) -> bytes:
            stream.write(line + b"\r\n")
            stream.flush()
            return stream.readline()

        assert command(b"MAIL FROM:<a@remote.test>").startswith(b"250 ")
        assert command(b"RCPT TO:<alice>").startswith(b"250 ")
        assert command(b"RCPT TO:<bob+lists>").startswith(b"250 ")
        assert command(b"RCPT TO:<nobody-x>").startswith(b"550 5.1.1")
        assert command(b'RCPT TO:<"|/bin/true">').startswith(b"550 ")
        assert command(b"DATA").startswith(b"354")
        stream.write(b"Subject: bare\r\n\r\nno domain\r\n.\r\n")
        stream.flush()
        replies = [stream.readline(), stream.readline()]
        assert all(r.startswith(b"250 2.1.5") for r in replies), replies
        assert command(b"QUIT").startswith(b"221")
    for user in ("alice", "bob"):
        assert b"no domain" in server.messages(user)[0]


def test_sigterm_finishes_transaction_in_flight(server: Server) -> None:
    client = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30)
    client.ehlo()
    client.mail("a@remote.test")
    client.rcpt("carol@example.test")
    idle = socket.create_connection(("127.0.0.1", server.smtp_port), timeout=30)
    assert idle.recv(1024).startswith(b"220")
    server.process.send_signal(signal.SIGTERM)
    # The idle session is told the service is going away.
    assert idle.recv(1024).startswith(b"421 4.3.2")
    idle.close()
    # The session in a transaction may finish it.
    code, reply = client.data(b"Subject: in flight\r\n\r\nstill accepted\r\n")
    assert code == 250, reply
    client.close()
    assert server.stop() == 0
    assert b"still accepted" in server.messages("carol")[0]


def test_workers_share_listeners_and_queue(server_factory: Callable[..., Server]) -> None:
    server = server_factory(workers=2)
    for number in range(40):
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
            client.sendmail(
                "a@remote.test", ["bob@example.test"],
                f"Message-ID: <w{number}@remote.test>\r\n\r\nx\r\n".encode(),
            )  # fmt: skip
    messages = server.wait_for_messages("bob", 40)
    assert len(messages) == 40
    ids = {m.split(b"Message-ID: ")[1].split(b"\n")[0] for m in messages}
    assert len(ids) == 40
    assert server.stop() == 0


def test_sighup_reloads_configuration(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.ehlo()
        client.mail("x@remote.test")
        assert client.rcpt("bob@newdomain.test")[0] == 554
    text = server.config_path.read_text().replace(
        'local_domains = ["example.test"]', 'local_domains = ["example.test", "newdomain.test"]'
    )
    server.config_path.write_text(text)
    server.process.send_signal(signal.SIGHUP)

    def accepted() -> bool:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
            client.ehlo()
            client.mail("x@remote.test")
            return client.rcpt("bob@newdomain.test")[0] == 250

    from tests.e2e.conftest import wait_until

    wait_until(accepted, what="the reloaded local domain")


def test_locked_mailbox_is_queued_and_retried(server: Server) -> None:
    import fcntl
    import os

    from tests.e2e.conftest import wait_until

    path = server.mbox("carol")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX)  # another program holds carol's mailbox
    try:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as client:
            refused = client.sendmail(
                "a@remote.test", ["alice@example.test", "carol@example.test"],
                b"Message-ID: <locked@remote.test>\r\nSubject: locked\r\n\r\nwait for it\r\n",
            )  # fmt: skip
            assert refused == {}
        # alice has it at once; carol's copy waits in the queue with the reason.
        assert b"wait for it" in server.messages("alice")[0]
        queued = [p for p in server.queue_dir.iterdir() if p.suffix == ".qf"]
        assert len(queued) == 1
        assert "locked" in queued[0].read_text()
        assert '"address":"carol","original":"carol@example.test"' in queued[0].read_text()
        assert '"kind":"local"' in queued[0].read_text()
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)
    (stored,) = server.wait_for_messages("carol", 1)
    assert b"wait for it" in stored
    assert len(server.messages("alice")) == 1  # never delivered twice
    wait_until(lambda: not any(server.queue_dir.iterdir()), what="an empty queue")
