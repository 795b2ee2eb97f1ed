"""Live-connection records (chapter 12.5.5's proc directory) over a real server:
``posthouse status --connections`` shows each IMAP session's user and selected mailbox
(by its internal name, as Cyrus's proc files do), next to the other protocols' sessions."""

from __future__ import annotations

import imaplib
import smtplib

from tests.e2e.conftest import PASSWORD, Server, wait_until


def listing(server: Server) -> list[list[str]]:
    result = server.cli("status", "--connections")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith("posthouse status: posthouse is running")
    assert lines[1].split() == ["PID", "PROTOCOL", "CLIENT", "USER", "MAILBOX"]
    return [line.split() for line in lines[2:]]


def test_status_lists_the_imap_user_and_selected_mailbox(imap_server: Server) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server.ports["imap"], timeout=30)
    client.login("alice", PASSWORD)
    client.select("INBOX.Sent")
    idle = imaplib.IMAP4("127.0.0.1", imap_server.ports["imap"], timeout=30)
    smtp = smtplib.SMTP("127.0.0.1", imap_server.smtp_port, timeout=30)
    smtp.ehlo()
    pid = str(imap_server.process.pid)

    def shown() -> bool:
        rows = listing(imap_server)
        return (
            any(r[1] == "imap" and r[3:] == ["alice", "user.alice.Sent"] for r in rows)
            and any(r[1] == "imap" and r[3:] == ["-", "-"] for r in rows)
            and any(r[1] == "smtp" for r in rows)
        )

    wait_until(shown, 60, "the sessions in the listing")
    assert all(row[0] == pid and row[2].startswith("[127.0.0.1]:") for row in listing(imap_server))

    client.select("INBOX")
    wait_until(
        lambda: any(r[3:] == ["alice", "user.alice"] for r in listing(imap_server)),
        60,
        "the new selection in the listing",
    )
    client.logout()
    idle.logout()
    smtp.quit()
    wait_until(lambda: listing(imap_server) == [], 60, "no sessions in the listing")
