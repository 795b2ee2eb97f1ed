"""Real clients deliver through a running server into local mbox files."""

from __future__ import annotations

import email
import smtplib
import ssl
import subprocess
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest

from tests.e2e.conftest import PASSWORD, Server


def make_message(
    subject: str, to: str = "alice@example.test", body: str = "Hello.\n"
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sender@remote.test"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@remote.test>"
    message.set_content(body)
    return message


def test_smtplib_delivers_to_mbox(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        code, banner = client.ehlo("client.test")
        assert code == 250
        assert b"PIPELINING" in banner and b"8BITMIME" in banner and b"SIZE 20000000" in banner
        refused = client.send_message(make_message("first"), to_addrs=["alice@example.test"])
        assert refused == {}
    (stored,) = server.wait_for_messages("alice", 1)
    parsed = email.message_from_bytes(stored, policy=default_policy)
    assert parsed["Subject"] == "first"
    assert parsed["Return-Path"] == "<sender@remote.test>"
    assert "by mail.example.test (posthouse) with ESMTP" in " ".join(parsed.get_all("Received"))
    assert server.mbox("alice").read_bytes().startswith(b"From sender@remote.test ")


def test_from_lines_in_body_are_quoted(server: Server) -> None:
    raw_message = (
        b"Subject: quoting\r\n\r\nline one\r\nFrom the start of a line\r\n"
        b">From quoted already\r\n.leading dot\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.sendmail("sender@remote.test", ["alice@example.test"], raw_message)
    raw = server.mbox("alice").read_bytes() if server.wait_for_messages("alice", 1) else b""
    assert b"\n>From the start of a line\n" in raw
    assert b"\n>>From quoted already\n" in raw
    assert b"\n.leading dot\n" in raw
    assert b"\r\n" not in raw


def test_swaks_delivers_with_pipelining(server: Server) -> None:
    result = subprocess.run(
        [
            "swaks", "--server", "127.0.0.1", "--port", str(server.smtp_port),
            "--from", "swaks@remote.test", "--to", "bob@example.test",
            "--header", "Subject: via swaks", "--pipeline",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    (stored,) = server.wait_for_messages("bob", 1)
    assert b"Subject: via swaks" in stored


def test_curl_mail_rcpt(server: Server, tmp_path: object) -> None:
    message = b"From: curl@remote.test\r\nTo: carol@example.test\r\nSubject: via curl\r\n\r\nhi\r\n"
    result = subprocess.run(
        [
            "curl", "-sS", f"smtp://127.0.0.1:{server.smtp_port}/client.test",
            "--mail-from", "curl@remote.test",
            "--mail-rcpt", "carol@example.test", "--mail-rcpt", "alice@example.test",
            "--upload-file", "-",
        ],
        input=message, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert b"Subject: via curl" in server.wait_for_messages("carol", 1)[0]
    assert b"Subject: via curl" in server.wait_for_messages("alice", 1)[0]


def test_8bitmime_and_smtputf8(server: Server) -> None:
    body = "Grüße aus Köln — ünïcödé\n"
    message = make_message("eight bit", body=body)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.ehlo()
        assert client.has_extn("8bitmime") and client.has_extn("smtputf8")
        client.send_message(message, mail_options=["BODY=8BITMIME"])
    (stored,) = server.wait_for_messages("alice", 1)
    parsed = email.message_from_bytes(stored, policy=default_policy)
    assert parsed.get_content() == body


def test_ten_megabyte_attachment(server: Server) -> None:
    payload = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    message = make_message("big")
    message.add_attachment(payload, maintype="application", subtype="octet-stream", filename="x")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=120) as client:
        client.send_message(message)
    (stored,) = server.wait_for_messages("alice", 1, timeout=120)
    parsed = email.message_from_bytes(stored, policy=default_policy)
    attachments = list(parsed.iter_attachments())
    assert attachments[0].get_content() == payload


def test_size_refused_in_mail_from_and_while_streaming(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as client:
        client.ehlo()
        code, reply = client.mail("big@remote.test", options=["SIZE=30000000"])
        assert code == 552 and reply.startswith(b"5.3.4")
        client.rset()
        # A client that lies about (or omits) SIZE is stopped while streaming.
        client.mail("big@remote.test")
        client.rcpt("alice@example.test")
        code, reply = client.data(b"Subject: huge\r\n\r\n" + (b"y" * 998 + b"\r\n") * 21_000)
        assert code == 552, reply
        # The session is still usable afterwards.
        assert client.noop()[0] == 250
    assert server.messages("alice") == []
    assert [p for p in server.queue_dir.iterdir() if not p.name.startswith(".")] == []


def test_starttls_then_auth_on_submission(server: Server) -> None:
    context = ssl.create_default_context()
    server.ca.configure_trust(context)
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")
        code, _ = client.mail("alice@example.test")
        assert code == 530  # RFC 4954 §6: authentication required on submission
        client.rset()
        client.starttls(context=context)
        client.ehlo("client.test")
        assert "PLAIN" in client.esmtp_features.get("auth", "")
        client.login("alice", PASSWORD)
        refused = client.sendmail(
            "alice@example.test", ["someone@elsewhere.test", "bob@example.test"],
            make_message("submitted", to="bob@example.test").as_bytes(),
        )  # fmt: skip
        assert refused == {}
    stored = server.wait_for_messages("bob", 1)[0]
    assert b"with ESMTPSA" in stored


def test_implicit_tls_port(server: Server) -> None:
    context = ssl.create_default_context()
    server.ca.configure_trust(context)
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.ports["smtps"], context=context, timeout=30
    ) as client:
        client.ehlo("client.test")
        assert not client.has_extn("starttls")
        client.login("bob", PASSWORD)
        client.sendmail("bob@example.test", ["carol@example.test"], b"Subject: tls\r\n\r\nx\r\n")
    assert b"Subject: tls" in server.wait_for_messages("carol", 1)[0]


def test_relay_refused_unauthenticated_accepted_authenticated(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("x@remote.test")
        code, reply = client.rcpt("victim@elsewhere.test")
        assert code == 554 and b"5.7.1" in reply and b"Relay access denied" in reply
        # AUTH is allowed in clear from loopback; once authenticated, relaying is allowed.
        client.rset()
        client.login("alice", PASSWORD)
        client.mail("alice@example.test")
        assert client.rcpt("friend@elsewhere.test")[0] == 250


def test_unknown_local_user_refused_at_rcpt(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.ehlo()
        client.mail("x@remote.test")
        code, reply = client.rcpt("nobody-here@example.test")
        assert code == 550 and reply.startswith(b"5.1.1")
        assert client.rcpt("ALICE@EXAMPLE.TEST")[0] == 250
        assert client.rcpt("bob@mx.example.test")[0] == 250  # a host alias is this host


def test_wrong_password_is_delayed_then_535(server: Server) -> None:
    import time

    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.ehlo()
        started = time.monotonic()
        with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
            client.login("alice", "wrong")
        assert failure.value.smtp_code == 535
        assert time.monotonic() - started >= 0.2  # auth_failure_delay_seconds in the test config
        client.login("alice", PASSWORD)
