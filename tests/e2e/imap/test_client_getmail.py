"""getmail6's IMAP retrievers against a real posthouse: SimpleIMAPRetriever into a Maildir
leaving the mail on the server, then SimpleIMAPSSLRetriever (implicit TLS, the test CA) into
an mbox deleting it."""

from __future__ import annotations

import mailbox
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, Server, wait_until
from tests.e2e.imap.mailbox import CLIENT_TIMEOUT, append, message, run, server_view


@pytest.fixture
def local() -> Iterator[tuple[Path, str]]:
    """A directory for getmail's destinations, and the ``user =`` line it needs: getmail
    refuses to deliver as root, so as root it delivers as nobody into a directory of its
    own (outside the test's private tmp_path)."""
    base = Path(tempfile.mkdtemp(prefix="getmail-"))
    maildir = base / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (base / "mbox").touch()
    as_user = ""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in (base, base / "mbox", maildir, *maildir.iterdir()):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        as_user = "\nuser = nobody"
    yield base, as_user
    shutil.rmtree(base)


def getmail(home: Path, name: str, retriever: str, destination: str, options: str) -> str:
    rc = home / name
    rc.write_text(
        f"[retriever]\n{retriever}\nusername = bob\npassword = {PASSWORD}\n"
        'mailboxes = ("INBOX",)\n\n'
        f"[destination]\n{destination}\n\n[options]\nread_all = true\nverbose = 2\n{options}\n"
    )
    return run(["getmail", f"--getmaildir={home}", f"--rcfile={rc}"]).stdout


def test_getmail_keeps_then_deletes(
    imap_server: Server, tmp_path: Path, local: tuple[Path, str]
) -> None:
    base, as_user = local
    append(imap_server, "INBOX", message("for getmail", "first body"), message("again", "second"))
    home = tmp_path / "getmail"
    home.mkdir()
    maildir = base / "Maildir"

    out = getmail(
        home,
        "plain.rc",
        f"type = SimpleIMAPRetriever\nserver = 127.0.0.1\nport = {imap_server.ports['imap']}",
        f"type = Maildir\npath = {maildir}/{as_user}",
        "delete = false",
    )
    assert "2 messages" in out, out
    delivered = sorted(
        (m["Subject"], m.get_payload().strip()) for m in mailbox.Maildir(maildir, create=False)
    )
    assert delivered == [("again", "second"), ("for getmail", "first body")]
    assert set(server_view(imap_server)) == {"for getmail", "again"}  # left on the server

    ca = tmp_path / "ca.pem"
    imap_server.ca.cert_pem.write_to_path(str(ca))
    mbox = base / "mbox"
    out = getmail(
        home,
        "tls.rc",
        f"type = SimpleIMAPSSLRetriever\nserver = 127.0.0.1\nport = {imap_server.ports['imaps']}\n"
        f"ca_certs = {ca}",
        f"type = Mboxrd\npath = {mbox}{as_user}",
        "delete = true",
    )
    assert "2 messages" in out and "deleted" in out, out
    box = mailbox.mbox(mbox, create=False)
    fetched = sorted(m["Subject"] for m in box)
    box.close()
    assert fetched == ["again", "for getmail"]
    assert server_view(imap_server) == {}  # deleted and expunged


def test_getmail_idle_delivers_mail_as_it_arrives(
    imap_server: Server, tmp_path: Path, local: tuple[Path, str]
) -> None:
    base, as_user = local
    append(imap_server, "INBOX", message("waiting already", "one"))
    home = tmp_path / "getmail"
    home.mkdir()
    maildir = base / "Maildir"
    rc = home / "idle.rc"
    rc.write_text(
        "[retriever]\ntype = SimpleIMAPRetriever\nserver = 127.0.0.1\n"
        f"port = {imap_server.ports['imap']}\nusername = bob\npassword = {PASSWORD}\n"
        'mailboxes = ("INBOX",)\n\n'
        f"[destination]\ntype = Maildir\npath = {maildir}/{as_user}\n\n"
        "[options]\nread_all = false\ndelete = false\nverbose = 2\n"
    )

    def subjects() -> list[str]:
        return sorted(m["Subject"] for m in mailbox.Maildir(maildir, create=False))

    log = home / "idle.log"
    with log.open("wb") as output:
        idle = subprocess.Popen(
            ["getmail", f"--getmaildir={home}", f"--rcfile={rc}", "--idle=INBOX"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: subjects() == ["waiting already"], timeout=60, what="the first pass")
        append(imap_server, "INBOX", message("new while idle", "two"))
        wait_until(
            lambda: subjects() == ["new while idle", "waiting already"],
            timeout=60,
            what="getmail woken from IDLE to fetch the new message",
        )
    finally:
        idle.kill()  # it idles until killed
        idle.wait(timeout=CLIENT_TIMEOUT)
    assert "IDLE message received" in log.read_text(), log.read_text()  # woken, not polling
