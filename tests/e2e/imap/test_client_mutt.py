"""mutt reading a real posthouse over IMAP, driven in tmux as a person would: the index
shows the subjects, a message opens with its body, a deletion synced with ``$`` is
expunged on the server, and a message saved to another folder moves there."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, Server, wait_until
from tests.e2e.imap.mailbox import CLIENT_TIMEOUT, append, connect, message, server_view


class Terminal:
    """A tmux session on its own server socket, running one program."""

    def __init__(self, socket: Path, command: list[str], env: dict[str, str]) -> None:
        self.socket = socket
        self.tmux(
            "new-session", "-d", "-x", "160", "-y", "40", "-s", "client",
            "-e", f"HOME={env['HOME']}", "-e", "TERM=xterm", *command,
        )  # fmt: skip

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "client")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "client", *keys)

    def wait_for(self, text: str, *, gone: bool = False, timeout: float = 60.0) -> str:
        """Wait until *text* is on the screen (or, with *gone*, no longer is)."""
        seen = [""]

        def shown() -> bool:
            seen[0] = self.screen()
            return (text in seen[0]) != gone

        try:
            wait_until(shown, timeout=timeout, what=f"{text!r} {'gone' if gone else 'shown'}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{seen[0]}") from None
        return seen[0]

    def kill(self) -> None:
        subprocess.run(
            ["tmux", "-S", str(self.socket), "kill-server"],
            capture_output=True, timeout=CLIENT_TIMEOUT, check=False,
        )  # fmt: skip


def write_muttrc(home: Path, folder: str, extra: str = "") -> Path:
    muttrc = home / "muttrc"
    muttrc.write_text(
        f'set folder = "{folder}"\n'
        'set spoolfile = "+INBOX"\n'
        f'set imap_pass = "{PASSWORD}"\n'
        "set delete = yes\nset confirmappend = no\nset move = no\n"
        "set quit = yes\nset mark_old = no\n"
        'set index_format = "%4C [%Z] %s"\nset sort = date-sent\n'
        "set pager_index_lines = 0\nset mail_check = 5\nset imap_keepalive = 60\n" + extra
    )
    return muttrc


@pytest.fixture
def start_mutt(tmp_path: Path) -> Iterator[Callable[[Path], Terminal]]:
    """Start mutt with a muttrc in a tmux terminal of its own (HOME: the muttrc's folder)."""
    started: list[Terminal] = []

    def start(muttrc: Path) -> Terminal:
        env = {**os.environ, "HOME": str(muttrc.parent)}
        socket = tmp_path / f"tmux{len(started)}.sock"
        # The shell keeps the terminal (and what mutt said) open if mutt exits.
        command = f'mutt -n -F "{muttrc}"; echo "mutt exited: $?"; read _'
        started.append(Terminal(socket, ["sh", "-c", command], env))
        return started[-1]

    yield start
    for terminal in started:
        terminal.kill()


@pytest.fixture
def mutt(imap_server: Server, tmp_path: Path, start_mutt: Callable[[Path], Terminal]) -> Terminal:
    home = tmp_path / "home"
    home.mkdir()
    folder = f"imap://bob@127.0.0.1:{imap_server.ports['imap']}/"
    # BODY[] rather than BODY.PEEK[]: the server sets \Seen as the message is read
    extra = "set ssl_starttls = no\nset ssl_force_tls = no\nset imap_peek = no\n"
    return start_mutt(write_muttrc(home, folder, extra))


def test_mutt_reads_and_deletes_over_imap(imap_server: Server, mutt: Terminal) -> None:
    append(imap_server, "INBOX.Archive")
    append(
        imap_server,
        "INBOX",
        message("breakfast menu", "eggs and toast"),
        message("garden party", "bring a hat"),
    )
    mutt.wait_for("Mutt: =INBOX")  # mutt is up (its INBOX may predate the appends)
    mutt.keys("c", "=INBOX", "Enter")  # reopen, so the index has the mail appended just now
    index = mutt.wait_for("garden party")
    assert "breakfast menu" in index

    mutt.keys("Enter")  # the first message in the pager
    pager = mutt.wait_for("eggs and toast")
    assert "Subject: breakfast menu" in pager and "bring a hat" not in pager
    wait_until(
        lambda: "\\Seen" in server_view(imap_server).get("breakfast menu", set()),
        what="\\Seen set on the server by reading",
    )

    mutt.keys("q")  # back to the index
    mutt.wait_for("garden party")
    mutt.keys("d")  # delete the message just read ...
    assert "[ D ] breakfast menu" in mutt.wait_for("Del:1")
    mutt.keys("$")  # ... and sync: mutt stores \Deleted and expunges
    mutt.wait_for("breakfast menu", gone=True)
    wait_until(
        lambda: set(server_view(imap_server)) == {"garden party"},
        what="the deleted message expunged on the server",
    )

    mutt.keys("s", "C-u", "=INBOX.Archive", "Enter")  # save (copy, then delete) the other one
    mutt.wait_for("Del:1")
    mutt.keys("$")
    mutt.wait_for("garden party", gone=True)
    wait_until(lambda: server_view(imap_server) == {}, what="INBOX emptied on the server")
    assert set(server_view(imap_server, "INBOX.Archive")) == {"garden party"}
    mutt.keys("q")


def test_mutt_over_tls_with_a_header_cache_resyncs_with_qresync(
    imap_server: Server, tmp_path: Path, start_mutt: Callable[[Path], Terminal]
) -> None:
    """Implicit TLS checked against the test CA; the second start finds the changes made on
    the server while mutt was away (a flag, an expunge, new mail) through its header cache and
    CONDSTORE/QRESYNC."""
    append(imap_server, "INBOX", message("one fish"), message("two fish"), message("red fish"))
    home = tmp_path / "home"
    home.mkdir()
    imap_server.ca.cert_pem.write_to_path(str(home / "ca.pem"))
    muttrc = write_muttrc(
        home,
        f"imaps://bob@localhost:{imap_server.ports['imaps']}/",
        f'set ssl_ca_certificates_file = "{home / "ca.pem"}"\n'
        f'set header_cache = "{home / "hcache"}"\n'
        "set imap_condstore = yes\nset imap_qresync = yes\n",
    )
    first = start_mutt(muttrc)
    screen = first.wait_for("red fish")
    assert "one fish" in screen and "two fish" in screen
    first.keys("q")
    first.wait_for("mutt exited: 0")
    assert (home / "hcache").stat().st_size > 0  # the header cache the second start uses

    client = connect(imap_server)
    client.select("INBOX")
    assert client.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    assert client.store("2", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert client.expunge()[0] == "OK"
    client.logout()
    append(imap_server, "INBOX", message("blue fish"))

    second = start_mutt(muttrc)
    screen = second.wait_for("blue fish")
    assert "two fish" not in screen, screen
    assert re.search(r"\[[^]]*![^]]*\] one fish", screen), screen  # %Z shows ! for flagged
    assert "red fish" in screen
    second.keys("q")
