"""POP3 end to end: mail arrives by SMTP into the spool and real clients download it."""

from __future__ import annotations

import hashlib
import os
import poplib
import pwd
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, Server


def send(server: Server, user: str, count: int, tag: str = "m") -> list[str]:
    ids = []
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        for number in range(count):
            message_id = f"<{tag}{number}@remote.test>"
            body = (
                f"Message-ID: {message_id}\r\nSubject: {tag} {number}\r\n\r\n"
                f"line one\r\n.starts with a dot\r\nFrom the start\r\nend {number}\r\n"
            )
            client.sendmail("sender@remote.test", [f"{user}@example.test"], body)
            ids.append(message_id)
    server.wait_for_messages(user, count)
    return ids


def pop(server: Server) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)


def test_poplib_every_command(server: Server) -> None:
    ids = send(server, "alice", 3)
    client = pop(server)
    assert client.getwelcome().startswith(b"+OK")
    capabilities = client.capa()
    for name in ("TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING"):
        assert name in capabilities
    client.user("alice")
    client.pass_(PASSWORD)
    count, octets = client.stat()
    assert count == 3
    _, listing, _ = client.list()
    sizes = [int(line.split()[1]) for line in listing]
    assert sum(sizes) == octets
    _, uidls, _ = client.uidl()
    uids = [line.split()[1] for line in uidls]
    assert len(set(uids)) == 3
    _, lines, size = client.retr(2)
    assert size == sizes[1]  # RFC 1939 §11: the exact size
    text = b"\r\n".join(lines)
    assert ids[1].encode() in text
    assert b".starts with a dot" in lines  # dot-stuffing undone by the client
    assert b"From the start" in lines  # mboxrd quoting undone by the server
    _, top, _ = client.top(1, 1)
    assert top[-1] == b"line one" and b"" in top
    client.dele(1)
    with pytest.raises(poplib.error_proto, match="deleted"):
        client.retr(1)
    assert client.stat()[0] == 2
    client.rset()
    assert client.stat()[0] == 3
    client.dele(3)
    client.noop()
    with pytest.raises(poplib.error_proto):
        client.retr(9)
    client.quit()
    # The deletion happened at QUIT; the other messages keep their UIDs.
    client = pop(server)
    client.user("alice")
    client.pass_(PASSWORD)
    assert client.stat()[0] == 2
    _, uidls, _ = client.uidl()
    assert [line.split()[1] for line in uidls] == uids[:2]
    client.quit()
    assert len(server.messages("alice")) == 2


def test_uidls_survive_restart(server_factory: Callable[..., Server]) -> None:
    factory = server_factory
    server = factory()
    send(server, "bob", 2)
    client = pop(server)
    client.user("bob")
    client.pass_(PASSWORD)
    before = client.uidl()[1]
    client.quit()
    server.stop()
    again = factory(home=server.home)
    client = pop(again)
    client.user("bob")
    client.pass_(PASSWORD)
    assert client.uidl()[1] == before
    client.quit()


def test_second_session_is_refused_in_use(server: Server) -> None:
    send(server, "bob", 1)
    first = pop(server)
    first.user("bob")
    first.pass_(PASSWORD)
    second = pop(server)
    second.user("bob")
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(PASSWORD)
    second.close()
    first.quit()
    third = pop(server)
    third.user("bob")
    third.pass_(PASSWORD)
    third.quit()


def test_delivery_during_session_appears_next_time(server: Server) -> None:
    send(server, "carol", 2, tag="before")
    client = pop(server)
    client.user("carol")
    client.pass_(PASSWORD)
    assert client.stat()[0] == 2
    send(server, "carol", 1, tag="during")  # waits until it is in the mbox
    assert client.stat()[0] == 2  # the session keeps its snapshot
    client.dele(1)
    client.quit()
    client = pop(server)
    client.user("carol")
    client.pass_(PASSWORD)
    assert client.stat()[0] == 2
    texts = [b"\r\n".join(client.retr(n)[1]) for n in (1, 2)]
    assert b"before1" in texts[0] and b"during0" in texts[1]
    assert texts[1].endswith(b"end 0")
    client.quit()


def test_dropped_connection_deletes_nothing(server: Server) -> None:
    send(server, "alice", 2)
    client = pop(server)
    client.user("alice")
    client.pass_(PASSWORD)
    client.dele(1)
    client.dele(2)
    client.sock.close()  # no QUIT: RFC 1939 §6, no UPDATE state
    client = pop(server)
    client.user("alice")
    deadline = time.monotonic() + 30
    while True:  # the server may need a moment to notice the drop and unlock
        try:
            client.pass_(PASSWORD)
            break
        except poplib.error_proto as error:
            assert b"IN-USE" in error.args[0] and time.monotonic() < deadline
            client.close()
            client = pop(server)
            client.user("alice")
    assert client.stat()[0] == 2
    client.quit()


def test_stls_and_pop3s(server: Server) -> None:
    send(server, "bob", 1)
    context = ssl.create_default_context()
    server.ca.configure_trust(context)
    client = pop(server)
    assert "STLS" in client.capa()
    client.stls(context)
    assert "STLS" not in client.capa()
    client.user("bob")
    client.pass_(PASSWORD)
    assert client.stat()[0] == 1
    client.quit()
    secure = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=context, timeout=30)
    secure.user("bob")
    secure.pass_(PASSWORD)
    assert secure.stat()[0] == 1
    secure.quit()


def set_type(server: Server, user: str, kind: str, mail_password: str | None = None) -> None:
    assert server.cli("mailauth", "-init").returncode == 0
    stdin = f"{mail_password}\n{mail_password}\n" if mail_password else None
    args = ["mailusradm", "set", user, kind]
    if mail_password:
        args.append("--password-stdin")
    result = server.cli(*args, input=stdin)
    assert result.returncode == 0, result.stderr


def login(server: Server, user: str, password: str) -> bool:
    client = pop(server)
    try:
        client.user(user)
        client.pass_(password)
    except poplib.error_proto:
        client.close()
        return False
    client.quit()
    return True


def apop_login(server: Server, user: str, secret: str) -> bool:
    client = pop(server)
    try:
        client.apop(user, secret)
    except poplib.error_proto:
        client.close()
        return False
    client.quit()
    return True


def test_service_types_pick_the_password(server: Server) -> None:
    mail_password = "mail-only-secret"
    set_type(server, "alice", "pop-mailpass", mail_password)
    assert login(server, "alice", mail_password)
    assert not login(server, "alice", PASSWORD)
    assert not apop_login(server, "alice", mail_password)
    set_type(server, "bob", "apop-mailpass", mail_password)
    assert apop_login(server, "bob", mail_password)
    assert not apop_login(server, "bob", "wrong")
    assert not login(server, "bob", mail_password)  # APOP users never send the secret
    set_type(server, "carol", "unix")
    assert login(server, "carol", PASSWORD)
    assert not apop_login(server, "carol", PASSWORD)


def test_fetchmail_keep_and_uidl(server: Server, tmp_path: Path) -> None:
    send(server, "alice", 3)
    out = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 service {server.ports['pop3']} protocol pop3 uidl\n"
        f'  user "alice" password "{PASSWORD}" keep sslproto "" no sslcertck\n'
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
    )
    rc.chmod(0o600)

    def run_fetchmail() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["fetchmail", "--nodetach", "--nosyslog", "-f", str(rc),
             "--idfile", str(tmp_path / "ids"), "--pidfile", str(tmp_path / "pid")],
            capture_output=True, text=True, timeout=120, check=False,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip

    first = run_fetchmail()
    assert first.returncode == 0, first.stdout + first.stderr
    assert out.read_text().count("Message-ID: <m") == 3
    second = run_fetchmail()
    assert second.returncode == 1, second.stdout + second.stderr  # 1: no new mail
    assert out.read_text().count("Message-ID: <m") == 3
    send(server, "alice", 1, tag="new")
    third = run_fetchmail()
    assert third.returncode == 0, third.stdout + third.stderr
    assert out.read_text().count("Message-ID: <new0@") == 1
    assert len(server.messages("alice")) == 4  # keep: nothing deleted


def test_getmail_into_maildir(server: Server, tmp_path: Path) -> None:
    send(server, "bob", 2)
    # getmail refuses to deliver as root: as root, deliver as nobody into a maildir of its own.
    base = Path(tempfile.mkdtemp(prefix="getmail-"))
    maildir = base / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    as_user = ""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in (base, maildir, *maildir.iterdir()):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        as_user = "user = nobody\n"
    rc = tmp_path / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\n"
        f"port = {server.ports['pop3']}\nusername = bob\npassword = {PASSWORD}\n\n"
        f"[destination]\ntype = Maildir\npath = {maildir}/\n{as_user}\n"
        "[options]\nread_all = false\ndelete = true\nverbose = 0\n"
    )
    result = subprocess.run(
        ["getmail", "--rcfile", str(rc), "--getmaildir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    files = list((maildir / "new").iterdir())
    assert len(files) == 2
    assert all(b"Subject: m " in f.read_bytes() for f in files)
    assert server.messages("bob") == []  # delete = true
    shutil.rmtree(base)


def test_curl_pop3_list_and_retr(server: Server) -> None:
    send(server, "carol", 2)
    base = f"pop3://127.0.0.1:{server.ports['pop3']}/"
    listing = subprocess.run(
        ["curl", "-sS", "--user", f"carol:{PASSWORD}", base],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert re.findall(r"^(\d+) \d+\r?$", listing.stdout, re.M) == ["1", "2"]
    message = subprocess.run(
        ["curl", "-sS", "--user", f"carol:{PASSWORD}", base + "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert message.returncode == 0 and "Subject: m 1" in message.stdout


def raw(server: Server, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=30) as sock:
        received = sock.recv(4096)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_retr_dot_stuffs_lines_on_the_wire(server: Server) -> None:
    """RFC 1939 §3: every line of the message starting with "." goes out with one more, and
    only the terminator is a lone "."; read on a raw socket, not through a client that
    undoes the stuffing."""
    body = b"first\r\n.one dot\r\n..two dots\r\n.\r\n. space\r\nlast\r\n"
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.sendmail("sender@remote.test", ["bob@example.test"], b"Subject: dots\r\n\r\n" + body)
    server.wait_for_messages("bob", 1)
    reply = raw(server, f"USER bob\r\nPASS {PASSWORD}\r\nRETR 1\r\nQUIT\r\n".encode())
    _, ok, after = reply.partition(b"+OK")  # the greeting
    retr = after.split(b"\r\n+OK", 2)[2]  # after the USER and PASS replies
    _status, _, rest = retr.partition(b"\r\n")
    content, terminator, tail = rest.partition(b"\r\n.\r\n")
    assert ok and terminator, reply
    assert content.endswith(
        b"\r\n\r\nfirst\r\n..one dot\r\n...two dots\r\n..\r\n.. space\r\nlast"
    ), content
    # No other line of the message is a lone "." (the first "\r\n.\r\n" ended it).
    assert tail.startswith(b"+OK"), tail  # the QUIT reply follows the terminator


def test_bad_input_gets_err_and_server_stays_up(server: Server) -> None:
    reply = raw(server, b"FOO\r\nSTAT\r\nPASS x\r\n" + b"USER " + b"a" * 5000 + b"\r\nQUIT\r\n")
    lines = reply.split(b"\r\n")
    assert lines[0].startswith(b"+OK")
    assert lines[1].startswith(b"-ERR")  # unknown command
    assert lines[2].startswith(b"-ERR")  # STAT before login
    assert lines[3].startswith(b"-ERR")  # PASS without USER
    assert lines[4].startswith(b"-ERR")  # line too long
    assert lines[5].startswith(b"+OK")  # QUIT
    assert login(server, "alice", PASSWORD)


def test_many_wrong_passwords_are_slowed_not_blocking_others(
    server_factory: Callable[..., Server],
) -> None:
    """A guesser's failures are delayed (3 s, then 6 s); while one of its sessions is held in
    that delay, another user logs in.  The check is an order of events seconds apart (the
    other login ends before the held attempt), not a bound on how fast argon2 runs."""
    base = 3.0
    server = server_factory(smtp={"auth_failure_delay_seconds": base})
    attempts: list[float] = []
    first_done = threading.Event()

    def guesser() -> None:
        client = pop(server)
        try:
            for _ in range(2):
                started = time.monotonic()
                client.user("alice")
                with pytest.raises(poplib.error_proto):
                    client.pass_("wrong")
                attempts.append(time.monotonic() - started)
                first_done.set()
        finally:
            client.close()

    thread = threading.Thread(target=guesser)
    thread.start()
    assert first_done.wait(120)
    # The guesser is now in its second attempt, held for 2 * base seconds.
    assert login(server, "bob", PASSWORD)  # another user, another session: not slowed
    assert len(attempts) == 1, "bob's login waited for the guesser's delay"
    thread.join(timeout=120)
    assert not thread.is_alive() and len(attempts) == 2
    assert attempts[0] >= base and attempts[1] >= 2 * base  # the delay grows
    log = (server.home / "server.log").read_text()
    assert "alice" in log and "failed" in log


def test_corrupt_spool_serves_intact_messages(server: Server) -> None:
    send(server, "carol", 2)
    spool = server.mbox("carol")
    spool.write_bytes(
        spool.read_bytes() + b"From broken@x Thu Nov 26 00:00:00 2026\nSubject: trunc"
    )
    client = pop(server)
    client.user("carol")
    client.pass_(PASSWORD)
    count, _ = client.stat()
    assert count >= 2
    texts = [b"\r\n".join(client.retr(n)[1]) for n in (1, 2)]
    assert b"Subject: m 0" in texts[0] and b"Subject: m 1" in texts[1]
    client.quit()


def test_apop_digest_matches_rfc(server: Server) -> None:
    set_type(server, "alice", "apop-mailpass", "tanstaaf")
    client = pop(server)
    timestamp = re.search(rb"<[^>]+>", client.getwelcome())
    assert timestamp is not None
    digest = hashlib.md5(timestamp.group(0) + b"tanstaaf").hexdigest()
    assert client._shortcmd(f"APOP alice {digest}").startswith(b"+OK")
    client.quit()
