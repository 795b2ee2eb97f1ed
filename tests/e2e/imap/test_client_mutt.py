"""mutt reading a real posthouse over IMAP, driven in tmux as a person would: the index
shows the subjects, a message opens with its body, a deletion synced with ``$`` is
expunged on the server, and a message saved to another folder moves there."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, Server, wait_until
from tests.e2e.imap.mailbox import CLIENT_TIMEOUT, append, message, server_view


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


@pytest.fixture
def mutt(imap_server: Server, tmp_path: Path) -> Iterator[Terminal]:
    home = tmp_path / "home"
    home.mkdir()
    muttrc = home / "muttrc"
    muttrc.write_text(
        f'set folder = "imap://bob@127.0.0.1:{imap_server.ports["imap"]}/"\n'
        'set spoolfile = "+INBOX"\n'
        f'set imap_pass = "{PASSWORD}"\n'
        "set ssl_starttls = no\nset ssl_force_tls = no\n"
        "set delete = yes\nset confirmappend = no\nset move = no\n"
        "set quit = yes\nset mark_old = no\n"
        'set index_format = "%4C [%Z] %s"\nset sort = date-sent\n'
        "set pager_index_lines = 0\nset mail_check = 5\nset imap_keepalive = 60\n"
        # BODY[] rather than BODY.PEEK[]: the server sets \Seen as the message is read
        "set imap_peek = no\n"
    )
    terminal = Terminal(
        tmp_path / "tmux.sock", ["mutt", "-n", "-F", str(muttrc)], {**os.environ, "HOME": str(home)}
    )
    yield terminal
    terminal.kill()


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
