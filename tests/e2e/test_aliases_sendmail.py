"""Aliases through the running daemon, newaliases without restart, and the sendmail command."""

from __future__ import annotations

import smtplib
import stat
from pathlib import Path

from tests.e2e.conftest import PYTHON, Server, mbox_messages, wait_until


def write_aliases(server: Server, text: str) -> None:
    (server.home / "data" / "etc" / "aliases").write_text(text, encoding="utf-8")


def test_alias_kinds_end_to_end(server: Server, safe_dir: Path) -> None:
    include = safe_dir / "staff.list"
    include.write_text("# staff\nbob\ncarol\n")
    archive = safe_dir / "out" / "archive.mbox"
    recorder = safe_dir / "recorder.py"
    recorded = safe_dir / "out" / "recorded.txt"
    recorder.write_text(
        "import os, sys\n"
        f"open({str(recorded)!r}, 'ab').write(os.environ['SENDER'].encode() + b'\\n' + "
        "sys.stdin.buffer.read())\n"
    )
    write_aliases(
        server,
        f"""\
postmaster: alice
team: alice,
  :include:{include}
archive: "{archive}"
robot: "|{PYTHON} {recorder}"
list: bob
owner-list: carol
""",
    )
    result = server.cli("newaliases")
    assert result.returncode == 0, result.stderr
    assert b"6 aliases" in result.stdout
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.sendmail(
            "x@remote.test",
            ["team@example.test", "archive@example.test", "robot@example.test"],
            b"Subject: to the team\r\n\r\nhello\r\n",
        )
    for user in ("alice", "bob", "carol"):
        assert b"Subject: to the team" in server.wait_for_messages(user, 1)[0]
    wait_until(lambda: len(mbox_messages(archive)) == 1, what="file delivery")
    wait_until(lambda: recorded.exists() and b"hello" in recorded.read_bytes(), what="program")
    assert recorded.read_bytes().startswith(b"x@remote.test\n")


def test_newaliases_takes_effect_without_restart(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.ehlo()
        client.mail("x@remote.test")
        assert client.rcpt("helpdesk@example.test")[0] == 550
    write_aliases(server, "helpdesk: carol\n")
    assert server.cli("newaliases").returncode == 0
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.sendmail("x@remote.test", ["helpdesk@example.test"], b"Subject: help\r\n\r\n.\r\n")
    assert b"Subject: help" in server.wait_for_messages("carol", 1)[0]


def test_alias_loop_is_reported_not_looped(server: Server) -> None:
    write_aliases(server, "ping: pong, alice\npong: ping\n")
    assert server.cli("newaliases").returncode == 0
    result = server.cli("sendmail", "-bv", "ping@example.test")
    assert b"alice" in result.stdout
    assert b"loop" in result.stdout.lower()


def test_newaliases_syntax_error_keeps_old_database(server: Server) -> None:
    write_aliases(server, "good: alice\n")
    assert server.cli("newaliases").returncode == 0
    write_aliases(server, "good: alice\nbroken line without colon\n")
    result = server.cli("newaliases")
    assert result.returncode == 78
    assert b"aliases:2:" in result.stderr
    assert b"alice" in server.cli("sendmail", "-bv", "good@example.test").stdout


def test_sendmail_t_i_f_delivers(server: Server) -> None:
    message = (
        "To: Alice <alice@example.test>\nCc: bob@example.test\nBcc: carol@example.test\n"
        "Subject: from cron\n\nline one\n.\nline after a lone dot\n"
    )
    result = server.cli("sendmail", "-t", "-i", "-f", "cron@example.test", "-F", "Cron Daemon",
                        input=message)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for user in ("alice", "bob", "carol"):
        (stored,) = server.wait_for_messages(user, 1)
        assert b"line after a lone dot" in stored
        assert b"Bcc:" not in stored
        assert b"From: Cron Daemon <cron@example.test>" in stored
        assert b"Message-ID: <" in stored and b"Date: " in stored


def test_sendmail_without_i_stops_at_dot(server: Server) -> None:
    result = server.cli("sendmail", "bob@example.test", input="Subject: dot\n\nbefore\n.\nafter\n")
    assert result.returncode == 0, result.stderr
    (stored,) = server.wait_for_messages("bob", 1)
    assert b"before" in stored and b"after" not in stored


def test_sendmail_exit_codes(server: Server) -> None:
    assert server.cli("sendmail", "nobody-at-all@example.test", input="x\n").returncode == 67
    assert server.cli("sendmail", input="Subject: none\n\n").returncode == 64
    assert server.cli("sendmail", "-Q", input="x\n").returncode == 64


def test_sendmail_bs_speaks_smtp(server: Server) -> None:
    conversation = (
        "HELO local\r\nMAIL FROM:<me@example.test>\r\nRCPT TO:<carol@example.test>\r\n"
        "DATA\r\nSubject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n"
    )
    result = server.cli("sendmail", "-bs", input=conversation)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"220 ")
    assert b"250 2.0.0 Ok: queued as" in result.stdout and b"221" in result.stdout
    assert b"via -bs" in server.wait_for_messages("carol", 1)[0]


def test_sendmail_bi_builds_aliases(server: Server) -> None:
    write_aliases(server, "sales: bob\n")
    result = server.cli("sendmail", "-bi")
    assert result.returncode == 0 and b"1 aliases" in result.stdout
    assert b"user bob" in server.cli("sendmail", "-bv", "sales@example.test").stdout


def test_spool_file_is_private(server: Server) -> None:
    server.cli("sendmail", "alice@example.test", input="Subject: perms\n\nx\n")
    server.wait_for_messages("alice", 1)
    assert stat.S_IMODE(server.mbox("alice").stat().st_mode) == 0o600
