"""``posthouse cyradm``'s interactive shell on a terminal (a pty): the prompt, ``help``, a
failed command that does not end the shell, and the readline history kept in the home."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.imap.test_cyradm import ADMIN, ADMIN_CONFIG, add_admin

PROMPT = b"127.0.0.1> "


class Terminal:
    """``posthouse cyradm`` with a pty as its terminal."""

    def __init__(self, server: Server, home: Path, password_file: Path | None) -> None:
        self.master, slave = pty.openpty()
        env = dict(
            os.environ, HOME=str(home), TERM="xterm", POSTHOUSE_CONFIG=str(server.config_path)
        )
        password = [] if password_file is None else ["--password-file", str(password_file)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "posthouse", "cyradm", "--user", ADMIN, *password,
             "--port", str(server.ports["imap"])],
            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.seen = b""

    def expect(self, wanted: bytes, timeout: float = 60.0) -> bytes:
        """Everything the shell wrote up to and including *wanted*."""
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {wanted!r} in {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO: the shell ended
                    chunk = b""
                assert chunk, f"the shell ended before {wanted!r}: {self.seen!r}"
                self.seen += chunk
        at = self.seen.index(wanted) + len(wanted)
        before, self.seen = self.seen[:at], self.seen[at:]
        return before

    def send(self, text: bytes) -> None:
        os.write(self.master, text)

    def close(self) -> int:
        status = self.process.wait(timeout=60)
        os.close(self.master)
        return status


def test_interactive_help_errors_and_history(
    imap_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = imap_factory(extra=ADMIN_CONFIG)
    add_admin(server)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    home = tmp_path / "home"
    home.mkdir()

    shell = Terminal(server, home, password_file)
    shell.expect(PROMPT)
    shell.send(b"help\r")
    assert b"renamemailbox, renm, rename" in shell.expect(PROMPT)
    shell.send(b"help lqr\r")
    assert b"lqr, alias for listquotaroot mailbox" in shell.expect(PROMPT)
    shell.send(b"cm user.alice\r")  # fails; the shell goes on
    assert b"createmailbox: " in shell.expect(PROMPT)
    shell.send(b"cm user.bob.from-shell\r")
    shell.expect(PROMPT)
    shell.send(b"lm user.bob.*\r")
    assert b"user.bob.from-shell" in shell.expect(PROMPT)
    shell.send(b"quit\r")
    assert shell.close() == 0

    history = (home / ".posthouse_cyradm_history").read_text()
    assert history.splitlines()[-3:] == ["cm user.bob.from-shell", "lm user.bob.*", "quit"]
    assert (home / ".posthouse_cyradm_history").stat().st_mode & 0o077 == 0

    # A new shell recalls the history: up arrow three times gives "cm user.bob.from-shell";
    # edited to another name it runs as a new command.
    shell = Terminal(server, home, password_file)
    shell.expect(PROMPT)
    shell.send(b"\x1b[A\x1b[A\x1b[A-2\r")
    shell.expect(PROMPT)
    shell.send(b"lm user.bob.*\r")
    assert b"user.bob.from-shell-2" in shell.expect(PROMPT)
    shell.send(b"\x04")  # end of input leaves the shell
    assert shell.close() == 0

    # Without --password-file the password is asked on the terminal, not echoed.
    shell = Terminal(server, home, None)
    shell.expect(b"IMAP Password for cyrus: ")
    shell.send(PASSWORD.encode() + b"\r")
    assert PASSWORD.encode() not in shell.expect(PROMPT)
    shell.send(b"exit 4\r")
    assert shell.close() == 4
