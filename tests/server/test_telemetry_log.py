"""TelemetryLog's rules (chapter 12.5.5): a file only in a real folder named after the user,
what came before the login held within a limit, nothing once the user has no folder; the
same log for IMAP and POP3 sessions, each protocol's secrets masked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from posthouse.protocols.imap.redact import SecretMask
from posthouse.protocols.pop3.redact import SecretMask as POP3Mask
from posthouse.server import telemetry
from posthouse.server.telemetry import TelemetryDirectory, TelemetryLog


def session(logs: Path, user: str) -> TelemetryLog:
    log = TelemetryLog(logs, "imap", SecretMask())
    log.sent(b"* OK ready\r\n")
    log.received(b"a LOGIN " + user.encode() + b" hunter2\r\n")
    log.login_attempted()
    log.logged_in(user)
    log.received(b"b NOOP\r\n")
    log.close()
    return log


def test_only_a_real_folder_named_after_the_user_gets_a_file(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    (logs / "alice").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", logs / "bob")
    for user in ("alice", "bob", "carol", "..", "a/b"):
        session(logs, user)
    [path] = (logs / "alice").iterdir()
    text = path.read_bytes()
    assert b"a LOGIN ***\r\n" in text and b"hunter2" not in text
    assert text.endswith(b"<b NOOP\r\n")
    assert list((tmp_path / "elsewhere").iterdir()) == []  # a symbolic link is not followed
    assert sorted(p.name for p in logs.iterdir()) == ["alice", "bob"]


def test_what_came_before_the_login_is_held_within_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry, "PRELOGIN_LIMIT", 40)
    logs = tmp_path / "log"
    (logs / "alice").mkdir(parents=True)
    log = TelemetryLog(logs, "imap", SecretMask())
    log.sent(b"* OK ready\r\n")
    log.received(b"x CAPABILITY " + b"y" * 100 + b"\r\n")  # over the limit: not held
    log.received(b"a LOGIN alice pw\r\n")
    log.logged_in("alice")
    assert log.recording
    log.close()
    [path] = (logs / "alice").iterdir()
    text = path.read_bytes()
    assert b"* OK ready" in text and b"a LOGIN ***" in text and b"yyy" not in text


def test_no_user_folder_means_no_log_for_new_sessions(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    directory = TelemetryDirectory(logs, recheck=0.0)
    assert directory.session_log("imap", SecretMask) is None  # no log/ at all
    logs.mkdir()
    assert directory.session_log("imap", SecretMask) is None  # log/ without user folders
    (logs / "alice").mkdir()
    log = directory.session_log("imap", SecretMask)
    assert log is not None
    log.logged_in("bob")  # a user without a folder: the session stops recording
    assert not log.recording


def test_a_pop3_session_is_logged_in_the_same_folder_with_its_secrets_masked(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "log"
    (logs / "alice").mkdir(parents=True)
    directory = TelemetryDirectory(logs, recheck=0.0)
    for login in (b"USER alice\r\nPASS hunter2 x\r\n", b"APOP alice 0123abcd\r\n"):
        log = directory.session_log("pop3", POP3Mask)
        assert log is not None
        log.sent(b"+OK POP3 server ready <1.2@h>\r\n")
        log.received(login)
        log.login_attempted()
        log.logged_in("alice")
        log.received(b"STAT\r\n")
        log.close()
    files = sorted((logs / "alice").iterdir())
    assert len(files) == 2 and all(p.name.startswith("pop3-") for p in files)
    texts = b"".join(p.read_bytes() for p in files)
    assert b"\r\nPASS ***\r\n" in texts and b"<APOP alice ***\r\n" in texts
    assert b"hunter2" not in texts and b"0123abcd" not in texts
    assert b"<STAT\r\n" in texts and b">+OK POP3 server ready" in texts
