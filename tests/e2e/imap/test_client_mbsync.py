"""mbsync (isync) two-way sync between a real posthouse and a local Maildir: mail, flags,
deletions and new folders travel both ways (Create Both, Expunge Both, SyncState *)."""

from __future__ import annotations

import email
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.imap.mailbox import append, connect, mailboxes, message, run, server_view


def mbsyncrc(server: Server, home: Path, local: Path, tls: str) -> Path:
    ca = home / "ca.pem"
    server.ca.cert_pem.write_to_path(str(ca))
    port = server.ports["imaps" if tls == "IMAPS" else "imap"]
    # mbsync matches the certificate's DNS names only (not its 127.0.0.1 address)
    host = "127.0.0.1" if tls == "None" else "localhost"
    rc = home / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount posthouse\nHost {host}\nPort {port}\nUser bob\n"
        f"Pass {PASSWORD}\nSSLType {tls}\nCertificateFile {ca}\nAuthMechs LOGIN\n\n"
        "IMAPStore remote\nAccount posthouse\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel sync\nFar :remote:\nNear :local:\nPatterns *\n"
        "Create Both\nExpunge Both\nSyncState *\n"
    )
    return rc


def sync(rc: Path, home: Path) -> str:
    done = run(
        ["mbsync", "--verbose", "-c", str(rc), "sync"], env={**os.environ, "HOME": str(home)}
    )
    return done.stdout + done.stderr


def local_view(folder: Path) -> dict[str, str]:
    """Subject -> Maildir flags (the letters after ``:2,``) of every message in *folder*."""
    view: dict[str, str] = {}
    for sub in ("new", "cur"):
        for path in (folder / sub).iterdir():
            subject = str(email.message_from_bytes(path.read_bytes())["Subject"])
            assert subject not in view, f"two messages {subject!r} in {folder}"
            view[subject] = path.name.partition(":2,")[2]
    return view


def set_local_flags(folder: Path, subject: str, flags: str) -> None:
    for sub in ("new", "cur"):
        for path in (folder / sub).iterdir():
            if email.message_from_bytes(path.read_bytes())["Subject"] == subject:
                base = path.name.partition(":2,")[0]
                path.rename(folder / "cur" / f"{base}:2,{flags}")
                return
    raise AssertionError(f"no local message {subject!r}")


def remove_local(folder: Path, subject: str) -> None:
    for sub in ("new", "cur"):
        for path in (folder / sub).iterdir():
            if email.message_from_bytes(path.read_bytes())["Subject"] == subject:
                path.unlink()
                return
    raise AssertionError(f"no local message {subject!r}")


def server_store(server: Server, subject: str, flags: str, *, expunge: bool = False) -> None:
    client = connect(server)
    try:
        client.select("INBOX")
        status, data = client.uid("SEARCH", "SUBJECT", f'"{subject}"')
        assert status == "OK" and data[0], data
        status, data = client.uid("STORE", data[0].decode(), "+FLAGS", flags)
        assert status == "OK", data
        if expunge:
            assert client.expunge()[0] == "OK"
    finally:
        client.logout()


@pytest.mark.parametrize("tls", ["None", "STARTTLS", "IMAPS"])
def test_mbsync_two_way(imap_server: Server, tmp_path: Path, tls: str) -> None:
    append(imap_server, "INBOX", message("alpha", "a"), message("beta", "b"))
    append(imap_server, "INBOX", message("gamma", "c"), message("delta", "d"))
    home, local = tmp_path / "home", tmp_path / "Mail"
    home.mkdir()
    local.mkdir()
    rc = mbsyncrc(imap_server, home, local, tls)
    inbox = local / "INBOX"

    log = sync(rc, home)  # server mail arrives locally
    assert local_view(inbox) == {"alpha": "", "beta": "", "gamma": "", "delta": ""}, log

    set_local_flags(inbox, "alpha", "FS")  # flagged and seen here ...
    server_store(imap_server, "beta", "(\\Answered)")  # ... answered there
    remove_local(inbox, "gamma")  # deleted here ...
    server_store(imap_server, "delta", "(\\Deleted)", expunge=True)  # ... expunged there
    (local / "Projects").mkdir()  # a folder made here ...
    for sub in ("cur", "new", "tmp"):
        (local / "Projects" / sub).mkdir()
    (local / "Projects" / "cur" / "1.local:2,S").write_bytes(message("plan", "p"))
    append(imap_server, "INBOX.Archive", message("old news", "n"))  # ... and one made there
    client = connect(imap_server)
    client.select("INBOX.Archive")
    assert client.store("1", "+FLAGS", "(\\Seen)")[0] == "OK"
    client.logout()

    log = sync(rc, home)
    assert server_view(imap_server) == {"alpha": {"\\Flagged", "\\Seen"}, "beta": {"\\Answered"}}
    assert local_view(inbox) == {"alpha": "FS", "beta": "R"}, log
    # mbsync takes the personal namespace's prefix (INBOX.) from NAMESPACE.
    assert "INBOX.Projects" in mailboxes(imap_server), log
    assert server_view(imap_server, "INBOX.Projects") == {"plan": {"\\Seen"}}
    assert local_view(local / "Archive") == {"old news": "S"}, log

    log = sync(rc, home)  # nothing changed since: nothing moves, nothing doubles
    assert server_view(imap_server) == {"alpha": {"\\Flagged", "\\Seen"}, "beta": {"\\Answered"}}
    assert local_view(inbox) == {"alpha": "FS", "beta": "R"}, log
