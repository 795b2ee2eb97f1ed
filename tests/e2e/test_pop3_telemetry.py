"""The telemetry log (chapter 12.5.5) for POP3 over a real server: a folder under the IMAP
configuration directory's log/ named after a user records that user's POP3 sessions too, as
Cyrus's pop3d does, with PASS, the APOP digest and AUTH's SASL exchange masked; other users
are not recorded."""

from __future__ import annotations

import base64
import poplib
import re
import stat

from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.test_pop3 import send, set_type


def test_pop3_sessions_of_a_user_with_a_log_folder_are_recorded(server: Server) -> None:
    logs = server.home / "data" / "imap" / "log"
    (logs / "bob").mkdir(parents=True)
    send(server, "bob", 1, tag="telemetry")

    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    client.user("bob")
    client.pass_(PASSWORD)
    assert b"telemetry 0" in b"\r\n".join(client.retr(1)[1])
    client.quit()

    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    plain = base64.b64encode(b"\0bob\0" + PASSWORD.encode()).decode()
    assert client._shortcmd(f"AUTH PLAIN {plain}").startswith(b"+OK")
    client.stat()
    client.quit()

    set_type(server, "bob", "apop-mailpass", "bob-apop-secret")
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    client.apop("bob", "bob-apop-secret")
    client.quit()

    other = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    other.user("alice")
    other.pass_(PASSWORD)
    other.quit()

    assert sorted(p.name for p in logs.iterdir()) == ["bob"]  # nothing made for alice
    # One worker: its sessions are numbered in the order they began (the last field).
    files = sorted((logs / "bob").iterdir(), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    assert len(files) == 3
    for path in files:
        assert re.fullmatch(r"pop3-\d+-\d+-\d+", path.name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_bytes()
        assert text.startswith(b"---------- bob ")
        assert re.search(rb"\n\n>\d+>\+OK POP3 server ready", text)  # from the greeting
        for secret in (PASSWORD, "bob-apop-secret", plain):
            assert secret.encode() not in text
        assert re.search(rb"<\d+<QUIT\r\n", text)
    with_pass, with_auth, with_apop = (path.read_bytes() for path in files)
    assert re.search(rb"<\d+<USER bob\r\n", with_pass)
    assert re.search(rb"<\d+<PASS \*\*\*\r\n", with_pass)
    assert b"telemetry 0" in with_pass  # the message RETR sent
    assert re.search(rb"<\d+<AUTH PLAIN \*\*\*\r\n", with_auth)
    assert re.search(rb"<\d+<STAT\r\n", with_auth)
    assert re.search(rb"<\d+<APOP bob \*\*\*\r\n", with_apop)
