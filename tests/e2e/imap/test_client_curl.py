"""curl's IMAP client against a real posthouse: LIST, EXAMINE, FETCH by UID, UID SEARCH,
CREATE as a custom request and APPEND as an upload, each result checked on the server."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.imap.mailbox import append, mailboxes, message, run, server_view


def curl(server: Server, path: str, *args: str) -> str:
    url = f"imap://127.0.0.1:{server.ports['imap']}/{path}"
    return run(["curl", "-sS", "--max-time", "60", "--user", f"bob:{PASSWORD}", *args, url]).stdout


def test_curl_lists_examines_fetches_searches_creates_and_uploads(
    imap_server: Server, tmp_path: Path
) -> None:
    append(imap_server, "INBOX", message("first note", "one"), message("second note", "two"))

    listing = curl(imap_server, "")  # LIST "" *
    assert '"." "INBOX"' in listing and '(\\HasNoChildren \\Sent) "." "INBOX.Sent"' in listing

    examined = curl(imap_server, "", "-X", "EXAMINE INBOX")
    assert "* 2 EXISTS" in examined and "UIDVALIDITY" in examined

    fetched = curl(imap_server, "INBOX;UID=2")  # SELECT, then UID FETCH 2 BODY[]
    assert "Subject: second note" in fetched and "two" in fetched and "first" not in fetched
    section = curl(imap_server, "INBOX;UID=1;SECTION=HEADER.FIELDS%20(SUBJECT)")
    assert section.strip() == "Subject: first note"

    found = curl(imap_server, "INBOX?SUBJECT%20second")  # UID SEARCH from the URL query
    assert found.split() == ["*", "SEARCH", "2"]
    found = curl(imap_server, "INBOX", "-X", "UID SEARCH BODY one")
    assert found.split() == ["*", "SEARCH", "1"]

    curl(imap_server, "", "-X", "CREATE INBOX.from-curl")
    assert "INBOX.from-curl" in mailboxes(imap_server)

    upload = tmp_path / "upload.eml"
    upload.write_bytes(message("uploaded by curl", "curl body"))
    curl(imap_server, "INBOX.from-curl", "-T", str(upload))  # APPEND (\Seen) {n}
    assert server_view(imap_server, "INBOX.from-curl") == {"uploaded by curl": {"\\Seen"}}
    body = curl(imap_server, "INBOX.from-curl;UID=1")
    assert body.replace("\r\n", "\n") == message("uploaded by curl", "curl body").decode().replace(
        "\r\n", "\n"
    )


def test_curl_over_starttls_and_implicit_tls(imap_server: Server, tmp_path: Path) -> None:
    append(imap_server, "INBOX", message("sealed", "over tls"))
    ca = tmp_path / "ca.pem"
    imap_server.ca.cert_pem.write_to_path(str(ca))
    user = ["--user", f"bob:{PASSWORD}", "--cacert", str(ca)]
    plain = f"imap://127.0.0.1:{imap_server.ports['imap']}/INBOX;UID=1"
    implicit = f"imaps://127.0.0.1:{imap_server.ports['imaps']}/INBOX;UID=1"
    for url, extra in ((plain, ["--ssl-reqd"]), (implicit, [])):  # STARTTLS, then IMAPS
        fetched = run(["curl", "-sS", "--max-time", "60", *user, *extra, url]).stdout
        assert "Subject: sealed" in fetched and "over tls" in fetched
