"""Bad input over real sockets: each gets its RFC reply and the server stays up for others."""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Server, wait_until


def converse(port: int, payload: bytes, *, timeout: float = 30.0) -> bytes:
    """Send ``payload`` after the greeting and read until the server closes or QUIT is answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        received = sock.recv(4096)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def still_serves(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        assert client.noop()[0] == 250


def test_overlong_command_line(server: Server) -> None:
    reply = converse(server.smtp_port, b"EHLO " + b"a" * 5000 + b"\r\nQUIT\r\n")
    assert b"500 5.5.2" in reply
    assert b"221 2.0.0" in reply
    still_serves(server)


def test_binary_garbage(server: Server) -> None:
    garbage = bytes(range(256)) * 40 + b"\r\n" + os.urandom(4096) + b"\r\n"
    reply = converse(server.smtp_port, garbage)
    assert reply.startswith(b"220 ")
    assert b"500 5.5" in reply or b"421 4.7.0" in reply
    still_serves(server)


def test_commands_out_of_order(server: Server) -> None:
    reply = converse(
        server.smtp_port,
        b"RCPT TO:<alice@example.test>\r\nDATA\r\nEHLO x\r\nRCPT TO:<alice@example.test>\r\n"
        b"DATA\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nQUIT\r\n",
    )
    assert reply.count(b"503 5.5.1") >= 4
    assert b"221 2.0.0" in reply


def test_ten_thousand_recipients(server: Server) -> None:
    rcpts = b"".join(b"RCPT TO:<alice@example.test>\r\n" for _ in range(10_000))
    reply = converse(server.smtp_port, b"EHLO x\r\nMAIL FROM:<a@b.test>\r\n" + rcpts + b"QUIT\r\n")
    assert b"452 4.5.3" in reply  # RFC 5321 §4.5.3.1.10
    # Either the session was ended for too many errors or it answered QUIT: never a crash.
    assert b"421 4.7.0" in reply or b"221 2.0.0" in reply
    still_serves(server)


def test_client_drops_mid_data_nothing_delivered_nothing_queued(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.smtp_port), timeout=30) as sock:
        sock.recv(4096)
        sock.sendall(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        buffered = b""
        while b"354" not in buffered:
            buffered += sock.recv(4096)
        sock.sendall(b"Subject: cut short\r\n\r\nhalf a messa")
    # A complete message afterwards is delivered alone: the broken one left no trace.
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.sendmail("a@b.test", ["alice@example.test"], b"Subject: whole\r\n\r\nok\r\n")
    messages = server.wait_for_messages("alice", 1)
    assert len(messages) == 1 and b"Subject: whole" in messages[0]
    # The aborted message's temporary files are removed, the delivered one is gone too.
    wait_until(lambda: not any(server.queue_dir.iterdir()), what="an empty queue directory")


def test_smuggling_lf_dot_lf_does_not_end_data(server: Server) -> None:
    smuggled = (
        b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
        b"Subject: outer\r\n\r\nbody\n.\nMAIL FROM:<evil@b.test>\r\nRCPT TO:<bob@example.test>\r\n"
        b"DATA\r\nSubject: smuggled\r\n\r\n.\r\nQUIT\r\n"
    )
    reply = converse(server.smtp_port, smuggled)
    assert reply.count(b"250 2.0.0 Ok: queued") == 1
    (stored,) = server.wait_for_messages("alice", 1)
    assert b"Subject: smuggled" in stored  # it is content of the one message
    assert server.messages("bob") == []


def test_unknown_command_and_error_limit(server: Server) -> None:
    reply = converse(server.smtp_port, b"".join(b"BOGUS %d\r\n" % i for i in range(50)))
    assert b"500 5.5.1" in reply
    assert b"421 4.7.0" in reply  # too many errors: the server ends the session
    still_serves(server)


def test_bad_config_stops_startup_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nhostname = "x"\n\n[smtp]\nmax_recipients = "many"\n')
    result = subprocess.run(
        [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 78  # EX_CONFIG
    assert f"{config}:5:" in result.stderr
    assert "smtp.max_recipients" in result.stderr and "integer" in result.stderr


def test_toml_syntax_error_reports_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text('[server]\nhostname = "x"\nworkers = \n')
    result = subprocess.run(
        [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 78
    assert f"{config}:3:" in result.stderr and "syntax" in result.stderr


def test_starttls_command_injection_is_discarded(server: Server) -> None:
    import ssl

    context = ssl.create_default_context()
    server.ca.configure_trust(context)
    with socket.create_connection(("127.0.0.1", server.smtp_port), timeout=30) as sock:
        assert sock.recv(4096).startswith(b"220")
        sock.sendall(b"EHLO x\r\n")
        buffered = b""
        while not buffered.endswith(b"250 HELP\r\n"):
            buffered += sock.recv(4096)
        # CVE-2011-0411: a command pipelined behind STARTTLS, in plaintext.
        sock.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(4096)
        assert reply.startswith(b"220 2.0.0")
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"NOOP\r\n")
            answer = tls.recv(4096)
            # The first reply over TLS answers NOOP; the injected MAIL was never executed.
            assert answer == b"250 2.0.0 Ok\r\n"
            tls.sendall(b"RCPT TO:<alice@example.test>\r\n")
            assert tls.recv(4096).startswith(b"503")


def test_idle_clients_are_closed_after_the_idle_timeout(
    server_factory: Callable[..., Server],
) -> None:
    """A client that stops talking gets 421 (SMTP) or the autologout -ERR (POP3), mid-command
    as well as between commands, and the server goes on serving the others."""
    server = server_factory(
        smtp={"idle_timeout_seconds": 1.0}, extra="\n[pop3]\nidle_timeout_seconds = 1.0\n"
    )
    for port, payload, expected in (
        (server.smtp_port, b"", b"421 4.4.2"),
        (server.smtp_port, b"EHLO idle.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<bo", b"421 4.4.2"),
        (server.ports["pop3"], b"USER alice\r\n", b"-ERR autologout timer expired"),
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.recv(4096)
            sock.sendall(payload)
            received = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                received += chunk
        assert expected in received, (port, received)
    still_serves(server)
