"""owner- aliases as sendmail defines them (12.9), through the running daemon.

Mail expanded from alias LIST goes out with envelope sender ``owner-LIST`` when that alias
exists: the members' copies carry ``Return-Path: <owner-LIST@...>``, and a member's failure
is reported to the owner, never to the author of the message.
"""

from __future__ import annotations

import email
import smtplib

from tests.e2e.conftest import Server, wait_until


def test_a_list_members_bounce_goes_to_the_owner_not_the_sender(server: Server) -> None:
    (server.home / "data" / "etc" / "aliases").write_text(
        "proj: alice, ghost\nowner-proj: carol\n", encoding="utf-8"
    )
    assert server.cli("newaliases").returncode == 0
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        refused = client.sendmail(
            "bob@example.test", ["proj@example.test"], b"Subject: to the project\r\n\r\nhi\r\n"
        )
    assert refused == {}

    (copy,) = server.wait_for_messages("alice", 1)
    assert copy.startswith(b"Return-Path: <owner-proj@example.test>\n")
    assert b"Subject: to the project" in copy

    (dsn,) = server.wait_for_messages("carol", 1)
    report = email.message_from_bytes(dsn)
    assert report.get_content_type() == "multipart/report"
    assert report["To"] == "<owner-proj@example.test>"
    assert b"Final-Recipient: rfc822; proj@example.test" in dsn
    assert b"Status: 5.1.1" in dsn and b"User unknown" in dsn
    assert b"Subject: to the project" in dsn  # the returned headers

    wait_until(lambda: not list(server.queue_dir.glob("*")), what="an empty queue")
    assert server.messages("bob") == []  # the author hears nothing
