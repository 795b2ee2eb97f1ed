"""offlineimap3 against a real posthouse: a sync into a local Maildir, then local changes (a
flag set, a message written, one deleted, a folder made) pushed back to the server while a
folder made on the server arrives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trustme

from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.imap.mailbox import append, message, run, server_view
from tests.e2e.imap.test_client_mbsync import local_view, remove_local, set_local_flags


def offlineimap(rc: Path, home: Path) -> str:
    """One sync (``-o``), with the IMAP conversation in the debug output (``-d imap``)."""
    done = run(
        ["offlineimap", "-c", str(rc), "-o", "-u", "basic", "-d", "imap"],
        env={**os.environ, "HOME": str(home)},
    )
    return done.stdout + done.stderr


#: How offlineimap reaches the server: plain text, or implicit TLS with the server's certificate
#: checked against the test CA (ca.pem) and the name localhost, and COMPRESS=DEFLATE on top.
TRANSPORTS = {
    "plain": ("127.0.0.1", "imap", "ssl = no\nstarttls = no\n"),
    "tls-compressed": ("localhost", "imaps", "ssl = yes\nusecompression = yes\n"),
}


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_offlineimap_syncs_and_pushes_local_changes(
    imap_server: Server, tmp_path: Path, transport: str
) -> None:
    host, listener, options = TRANSPORTS[transport]
    append(imap_server, "INBOX", message("north", "n"), message("south", "s"), message("east", "e"))
    home, local = tmp_path / "home", tmp_path / "Mail"
    home.mkdir()
    if listener == "imaps":
        options += f"sslcacertfile = {imap_server.home / 'ca.pem'}\n"
    rc = home / "offlineimaprc"
    rc.write_text(
        f"[general]\naccounts = posthouse\nmetadata = {home}/.offlineimap\n\n"
        "[Account posthouse]\nlocalrepository = local\nremoterepository = remote\n\n"
        f"[Repository local]\ntype = Maildir\nlocalfolders = {local}\n\n"
        f"[Repository remote]\ntype = IMAP\nremotehost = {host}\n"
        f"remoteport = {imap_server.ports[listener]}\nremoteuser = bob\nremotepass = {PASSWORD}\n"
        + options
    )

    log = offlineimap(rc, home)
    if "usecompression" in options:  # the debug log of its imaplib2 says it took effect
        assert "Enabled COMPRESS=DEFLATE" in log
    inbox = local / "INBOX"
    assert local_view(inbox) == {"north": "", "south": "", "east": ""}, log
    assert (local / "INBOX.Sent" / "cur").is_dir(), log

    set_local_flags(inbox, "north", "FS")
    remove_local(inbox, "east")
    (inbox / "new" / "1.written-here").write_bytes(message("west", "w"))
    for sub in ("cur", "new", "tmp"):  # a folder made here, with a message in it
        (local / "INBOX.Travel" / sub).mkdir(parents=True)
    (local / "INBOX.Travel" / "cur" / "2.written-here:2,S").write_bytes(message("tickets"))
    append(imap_server, "INBOX.Recipes", message("soup", "leeks"))  # one made there

    log = offlineimap(rc, home)
    assert server_view(imap_server) == {
        "north": {"\\Flagged", "\\Seen"},
        "south": set(),
        "west": set(),
    }, log
    assert set(local_view(inbox)) == {"north", "south", "west"}, log
    assert server_view(imap_server, "INBOX.Travel") == {"tickets": {"\\Seen"}}, log
    assert local_view(local / "INBOX.Recipes") == {"soup": ""}, log


def test_offlineimap_refuses_a_server_its_ca_did_not_certify(
    imap_server: Server, tmp_path: Path
) -> None:
    """The TLS check above is real: with another CA the same server is refused."""
    home, local = tmp_path / "home", tmp_path / "Mail"
    home.mkdir()
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    rc = home / "offlineimaprc"
    rc.write_text(
        f"[general]\naccounts = posthouse\nmetadata = {home}/.offlineimap\n\n"
        "[Account posthouse]\nlocalrepository = local\nremoterepository = remote\n\n"
        f"[Repository local]\ntype = Maildir\nlocalfolders = {local}\n\n"
        f"[Repository remote]\ntype = IMAP\nremotehost = localhost\n"
        f"remoteport = {imap_server.ports['imaps']}\nremoteuser = bob\nremotepass = {PASSWORD}\n"
        f"ssl = yes\nsslcacertfile = {other}\n"
    )
    try:
        log = offlineimap(rc, home)
    except AssertionError as failed:  # it exits non-zero
        log = str(failed)
    assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log, log
    assert not (local / "INBOX").exists()
