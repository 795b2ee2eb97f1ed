"""fetchmail over IMAP against a real posthouse, handing each message to an MDA that writes
a file: ``keep`` leaves the mail (seen) on the server, ``no keep`` deletes what it fetched."""

from __future__ import annotations

import email
import os
from pathlib import Path

import pytest
import trustme

from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.imap.mailbox import append, message, run, server_view

#: How fetchmail reaches the server: plain text, STARTTLS or implicit TLS, the last two with
#: the server's certificate checked against the test CA (ca.pem) and the name localhost.
TRANSPORTS = {
    "plain": ("imap", ["--sslproto", ""]),
    "starttls": ("imap", ["--sslproto", "auto", "--sslcertck"]),
    "tls": ("imaps", ["--ssl", "--sslcertck"]),
}


def fetchmail(
    server: Server, home: Path, out: Path, transport: str, *options: str, ca: Path | None = None
) -> str:
    listener, tls_options = TRANSPORTS[transport]
    if transport != "plain":
        tls_options = [*tls_options, "--sslcertfile", str(ca or server.home / "ca.pem")]
    rc = home / "fetchmailrc"
    rc.write_text(f'poll localhost user bob password "{PASSWORD}"\n')
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home)}
    done = run(
        [
            # A lock of its own: root's default is /var/run/fetchmail.pid, shared by all.
            "fetchmail", "--fetchmailrc", str(rc), "--pidfile", str(home / "fetchmail.pid"),
            "--nodetach", "--protocol", "IMAP",
            "--port", str(server.ports[listener]), *tls_options, "--timeout", "60",
            "--mda", f"sh -c 'cat > \"$(mktemp {out}/msg.XXXXXX)\"'", "--verbose", *options,
        ],
        env=env,
    )  # fmt: skip
    return done.stdout + done.stderr


def subjects(out: Path) -> list[str]:
    return sorted(str(email.message_from_bytes(f.read_bytes())["Subject"]) for f in out.iterdir())


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_fetchmail_keep_then_no_keep(imap_server: Server, tmp_path: Path, transport: str) -> None:
    append(imap_server, "INBOX", message("fm one", "body one"), message("fm two", "body two"))
    home = tmp_path / "home"
    home.mkdir()
    kept, fetched, rest = tmp_path / "kept", tmp_path / "fetched", tmp_path / "rest"
    for directory in (kept, fetched, rest):
        directory.mkdir()

    log = fetchmail(imap_server, home, kept, transport, "--keep")
    assert ("SSL/TLS: using protocol" in log) == (transport != "plain"), log  # TLS when asked
    assert subjects(kept) == ["fm one", "fm two"], log
    assert (
        b"body one" in min(kept.iterdir(), key=lambda f: b"fm two" in f.read_bytes()).read_bytes()
    )
    assert server_view(imap_server) == {"fm one": {"\\Seen"}, "fm two": {"\\Seen"}}

    append(imap_server, "INBOX", message("fm three", "body three"))
    log = fetchmail(imap_server, home, fetched, transport, "--nokeep")  # only the unseen one
    assert subjects(fetched) == ["fm three"], log
    assert set(server_view(imap_server)) == {"fm one", "fm two"}

    log = fetchmail(imap_server, home, rest, transport, "--nokeep", "--all")
    assert subjects(rest) == ["fm one", "fm two"], log
    assert server_view(imap_server) == {}


def test_fetchmail_refuses_a_server_its_ca_did_not_certify(
    imap_server: Server, tmp_path: Path
) -> None:
    """The check above is real: with another CA the same server is refused."""
    append(imap_server, "INBOX", message("fm stays", "body"))
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    out.mkdir()
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(AssertionError, match="Server certificate verification error"):
        fetchmail(imap_server, home, out, "tls", "--keep", ca=other)
    assert list(out.iterdir()) == []
