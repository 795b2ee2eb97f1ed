"""GNU mailutils against a real posthouse over IMAP: ``movemail`` moves the INBOX into a
local mbox (emptying it on the server) and ``mail -f imap://...`` lists the headers."""

from __future__ import annotations

import mailbox
from pathlib import Path

from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.imap.mailbox import append, message, run, server_view


def url(server: Server, mailbox_name: str = "INBOX") -> str:
    return f"imap://bob:{PASSWORD}@127.0.0.1:{server.ports['imap']}/{mailbox_name}"


def test_mail_lists_the_headers(imap_server: Server, tmp_path: Path) -> None:
    append(imap_server, "INBOX", message("lunch on friday"), message("minutes of the meeting"))
    listing = run(["mail", "-N", "-H", "-f", url(imap_server)], env={"HOME": str(tmp_path)}).stdout
    lines = [line for line in listing.splitlines() if line.strip()]
    assert len(lines) == 2, listing
    assert "lunch on friday" in lines[0] and "minutes of the meeting" in lines[1], listing
    assert "Alice" in lines[0], listing
    assert set(server_view(imap_server)) == {"lunch on friday", "minutes of the meeting"}


def test_movemail_moves_the_inbox_to_a_local_mbox(imap_server: Server, tmp_path: Path) -> None:
    append(imap_server, "INBOX", message("moved one", "first"), message("moved two", "second"))
    local = tmp_path / "mbox"
    run(["movemail", url(imap_server), str(local)], env={"HOME": str(tmp_path)})
    box = mailbox.mbox(local, create=False)
    moved = [(m["Subject"], m.get_payload().strip()) for m in box]
    box.close()
    assert moved == [("moved one", "first"), ("moved two", "second")]
    assert server_view(imap_server) == {}


def test_mail_reads_and_deletes_with_commands_on_stdin(imap_server: Server, tmp_path: Path) -> None:
    append(imap_server, "INBOX", message("keep me", "still here"), message("drop me", "gone soon"))
    session = run(
        ["mail", "-N", "-f", url(imap_server)],
        env={"HOME": str(tmp_path)},
        stdin="print 1\ndelete 2\nquit\n",
    ).stdout
    assert "Subject: keep me" in session and "still here" in session, session
    assert "gone soon" not in session, session
    assert server_view(imap_server) == {"keep me": {"\\Seen"}}
