"""``posthouse setup`` for each role of the chapter (12.3.1 standalone, 12.3.2 client, 12.3.3
server with its DECnet gateway), answered as an administrator does at a real terminal (tmux),
ending with the chapter's last question answered "Restart" (12.3.1 step 8); then mail sent
through the restarted daemon takes the new route.  On a new system the same question starts
the daemon; a Restart into a configuration that cannot start (an NFS client's mailbox
directory not mounted) leaves the running daemon serving.

Each daemon is started with ``posthouse start`` as the chapter's init script would; the other
instances (a mail server, a relay) are ``posthouse serve`` processes of the e2e fixtures.
"""

from __future__ import annotations

import os
import re
import shlex
import smtplib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.e2e.conftest import (
    PYTHON,
    Server,
    add_users,
    mbox_messages,
    wait_until,
    write_config,
)

Factory = Callable[..., Server]


# -- a terminal driven with tmux ---------------------------------------------------------------


EXITED = re.compile(r"\[exited (\d+)\]")


class Terminal:
    """One program in a tmux pane of 200x50: questions read from the screen, answers typed."""

    def __init__(self, socket: Path, command: list[str]) -> None:
        self.socket = str(socket)
        self.name = "setup-" + uuid.uuid4().hex[:8]
        self.answered = 0  # screen lines up to the last question answered
        shell = shlex.join(command) + '; echo "[exited $?]"; read done'
        self._tmux("new-session", "-d", "-s", self.name, "-x", "200", "-y", "50", shell)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, f"tmux {args[0]}: {done.stderr}"
        return done.stdout

    def lines(self) -> list[str]:
        """The whole transcript (history and screen), wrapped lines joined."""
        text = self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", self.name)
        lines = text.split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        return lines

    def _wait(self, found: Callable[[list[str]], bool], what: str) -> list[str]:
        def done() -> bool:
            lines = self.lines()
            if found(lines):
                return True
            if any(EXITED.match(line) for line in lines):
                raise AssertionError(f"the program ended before {what}")
            return False

        try:
            wait_until(done, timeout=60, what=what)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; the terminal shows:\n" + "\n".join(self.lines())
            ) from None
        return self.lines()

    def answer(self, question: str, reply: str) -> str:
        """Wait for ``question`` as a new prompt waiting for input, type ``reply`` and Enter;
        returns the question's line as shown (with its default in brackets)."""

        def asked(lines: list[str]) -> bool:
            last = lines[-1].rstrip() if lines else ""
            return (
                len(lines) > self.answered
                and last.lstrip().startswith(question)
                and last.endswith((":", "]"))
            )

        lines = self._wait(asked, f"the question {question!r}")
        self.answered = len(lines)
        if reply:
            self._tmux("send-keys", "-t", self.name, "-l", reply)
        self._tmux("send-keys", "-t", self.name, "Enter")
        return lines[-1]

    def exit_status(self) -> int:
        statuses: list[int] = []

        def ended() -> bool:
            statuses[:] = [int(m.group(1)) for ln in self.lines() if (m := EXITED.match(ln))]
            return bool(statuses)

        wait_until(ended, timeout=60, what="the program to end")
        return statuses[0]

    def transcript(self) -> str:
        return "\n".join(self.lines())

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-session", "-t", self.name],
                       capture_output=True, timeout=30, check=False)  # fmt: skip


@pytest.fixture
def terminals(tmp_path: Path) -> Iterator[Callable[[list[str]], Terminal]]:
    """Terminals on a tmux server of this test's own (its socket in the test's directory)."""
    socket = tmp_path / "tmux.sock"
    opened: list[Terminal] = []

    def open_terminal(command: list[str]) -> Terminal:
        terminal = Terminal(socket, command)
        opened.append(terminal)
        return terminal

    yield open_terminal
    for terminal in opened:
        terminal.close()
    subprocess.run(["tmux", "-S", str(socket), "kill-server"],
                   capture_output=True, timeout=30, check=False)  # fmt: skip


# -- a daemon started with `posthouse start` ---------------------------------------------------


@dataclass
class Daemon:
    """A posthouse daemon under ``posthouse start``/``stop``, its configuration in ``home``."""

    home: Path
    config: Path

    def posthouse(self, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, POSTHOUSE_CONFIG=str(self.config))
        return subprocess.run([sys.executable, "-m", "posthouse", *args], input=input,
                              capture_output=True, text=True, env=env, timeout=180,
                              check=False)  # fmt: skip

    @property
    def log(self) -> Path:
        return self.home / "data" / "posthouse.log"

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def smtp_port(self, after: int) -> int:
        """The SMTP port of the daemon started since byte ``after`` of its log."""
        ports: list[int] = []

        def listening() -> bool:
            text = self.log.read_text()[after:]
            ports[:] = [int(p) for p in re.findall(r"listening smtp on 127\.0\.0\.1:(\d+)", text)]
            return bool(ports)

        wait_until(listening, timeout=60, what="the daemon's SMTP listener in its log")
        return ports[-1]

    def pid(self) -> int:
        status = self.posthouse("status")
        assert status.returncode == 0, status.stdout + status.stderr
        return int(re.findall(r"pid (\d+)", status.stdout)[0])

    def start(self) -> int:
        """Start the daemon; returns its SMTP port."""
        size = self.log_size()
        started = self.posthouse("start")
        assert started.returncode == 0, started.stdout + started.stderr
        return self.smtp_port(size)

    def setup(self, open_terminal: Callable[[list[str]], Terminal]) -> Terminal:
        """``posthouse setup`` at a terminal: interactive because its input is one."""
        command = [sys.executable, "-m", "posthouse", "setup", "--config", str(self.config)]
        path = os.environ.get("PYTHONPATH")
        return open_terminal(["env", f"PYTHONPATH={path}", *command] if path else command)


@pytest.fixture
def daemons(tmp_path: Path, ca: trustme.CA) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(name: str, hostname: str, mail: dict[str, object]) -> Daemon:
        home = tmp_path / name
        (home / "data" / "etc").mkdir(parents=True)
        add_users(home)
        daemon = Daemon(home, write_config(home, ca, hostname=hostname, mail=mail))
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        stopped = daemon.posthouse("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def send(port: int, sender: str, recipients: list[str], subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        refused = client.sendmail(
            sender, recipients, f"Subject: {subject}\r\n\r\n{subject}\r\n".encode()
        )
    assert refused == {}


def restarted(terminal: Terminal, daemon: Daemon, old_pid: int) -> None:
    """The chapter's last question answered Restart; the daemon is a new process."""
    line = terminal.answer("Restart the mail daemon now", "y")
    assert "next boot" in line  # 12.3.1 step 8: Restart, or No for the next boot
    assert terminal.exit_status() == 0, terminal.transcript()
    assert "has been restarted" in terminal.transcript()
    assert daemon.pid() != old_pid


def host_messages(daemon: Daemon, user: str, count: int) -> list[bytes]:
    """The messages in ``user``'s mailbox on ``daemon``, once there are ``count``."""
    path = daemon.home / "data" / "spool" / "mail" / user
    wait_until(lambda: len(mbox_messages(path)) >= count, what=f"{count} messages for {user}")
    return mbox_messages(path)


# -- 12.3.2: standalone -> client ------------------------------------------------------------


def test_standalone_becomes_a_client_and_mail_goes_to_its_mail_server(
    server_factory: Factory, daemons: Callable[..., Daemon], terminals: Callable[..., Terminal]
) -> None:
    hub = server_factory(
        hostname="hub.example.test",
        mail={"role": "server", "top_domain": "example.test", "local_domains": ["example.test"]},
    )
    # A standalone host, example.test its local domain.
    host = daemons("host1", "host1.example.test", {"trusted_networks": ["127.0.0.0/8"]})
    port = host.start()
    send(port, "joe@host1.example.test", ["alice@example.test"], "while standalone")
    assert b"while standalone" in host_messages(host, "alice", 1)[0]
    old_pid = host.pid()

    size = host.log_size()
    setup = host.setup(terminals)
    assert "[standalone]" in setup.answer("Role of this system", "hub")
    # A wrong answer is explained and the question asked again, the default unchanged.
    assert "[standalone]" in setup.answer("Role of this system", "client")
    assert "'hub' is not one of standalone, client, server" in setup.transcript()
    setup.answer("Mail server", f"127.0.0.1:{hub.smtp_port}")
    assert "[local]" in setup.answer("Mailbox directory", "")
    assert "[lockf]" in setup.answer("Locking", "")
    setup.answer("Host aliases", "")
    setup.answer("Use domain-based addresses", "n")
    setup.answer("Write this configuration?", "y")
    restarted(setup, host, old_pid)
    assert 'role = "client"' in host.config.read_text()

    # 12.3.2: a client's mail, even for its local domain, goes to the mail server.
    send(host.smtp_port(size), "joe@host1.example.test", ["alice@example.test"], "as a client")
    assert b"as a client" in hub.wait_for_messages("alice", 1)[0]
    assert len(host_messages(host, "alice", 1)) == 1  # nothing more delivered on the client


def test_a_client_given_another_mail_server_uses_it_after_the_restart(
    server_factory: Factory, daemons: Callable[..., Daemon], terminals: Callable[..., Terminal]
) -> None:
    """Issue 11's report: after "yes", mail still went to the old mail server."""
    old_hub = server_factory(hostname="old.example.test", mail={"role": "server"})
    new_hub = server_factory(hostname="new.example.test", mail={"role": "server"})
    host = daemons("host4", "host4.example.test", {
        "role": "client", "mail_server": f"127.0.0.1:{old_hub.smtp_port}",
        "trusted_networks": ["127.0.0.0/8"],
    })  # fmt: skip
    port = host.start()
    send(port, "joe@host4.example.test", ["carol@example.test"], "to the old server")
    assert b"to the old server" in old_hub.wait_for_messages("carol", 1)[0]
    old_pid = host.pid()

    size = host.log_size()
    setup = host.setup(terminals)
    assert "[client]" in setup.answer("Role of this system", "")
    line = setup.answer("Mail server", f"127.0.0.1:{new_hub.smtp_port}")
    assert f"[127.0.0.1:{old_hub.smtp_port}]" in line
    setup.answer("Mailbox directory", "")
    setup.answer("Locking", "")
    setup.answer("Host aliases", "")
    setup.answer("Use domain-based addresses", "")
    setup.answer("Write this configuration?", "y")
    restarted(setup, host, old_pid)

    send(host.smtp_port(size), "joe@host4.example.test", ["carol@example.test"], "to the new")
    assert b"to the new" in new_hub.wait_for_messages("carol", 1)[0]
    assert len(old_hub.messages("carol")) == 1


# -- 12.3.1: client -> standalone with a relay -----------------------------------------------


def test_client_becomes_standalone_delivering_locally_and_relaying_the_rest(
    server_factory: Factory, daemons: Callable[..., Daemon], terminals: Callable[..., Terminal]
) -> None:
    # One instance is first the client's mail server, then the standalone host's relay.
    hub = server_factory(
        hostname="hub.example.test",
        mail={"role": "server", "local_domains": ["example.test", "other.test"]},
    )
    host = daemons("host2", "host2.example.test", {
        "role": "client", "mail_server": f"127.0.0.1:{hub.smtp_port}",
        "trusted_networks": ["127.0.0.0/8"],
    })  # fmt: skip
    port = host.start()
    send(port, "joe@host2.example.test", ["alice@example.test"], "while a client")
    assert b"while a client" in hub.wait_for_messages("alice", 1)[0]
    old_pid = host.pid()

    size = host.log_size()
    setup = host.setup(terminals)
    assert "[client]" in setup.answer("Role of this system", "standalone")
    setup.answer("Local mail domains", "example.test")
    setup.answer("Mailbox directory", "local")
    assert "[lockf]" in setup.answer("Locking", "")
    assert "[none]" in setup.answer("Forward SMTP mail to a relay", "nonlocal")
    setup.answer("Relay host", f"127.0.0.1:{hub.smtp_port}")
    setup.answer("Host aliases", "-")
    setup.answer("Use domain-based addresses", "n")
    setup.answer("Write this configuration?", "y")
    restarted(setup, host, old_pid)

    # 12.3.1: its own users' mail stays here; other domains go to the relay.
    send(host.smtp_port(size), "joe@host2.example.test",
         ["alice@example.test", "bob@other.test"], "as standalone")  # fmt: skip
    assert b"as standalone" in host_messages(host, "alice", 1)[0]
    assert b"as standalone" in hub.wait_for_messages("bob", 1)[0]
    assert len(hub.messages("alice")) == 1  # the hub did not get the local user's copy


def test_a_restart_into_an_unmounted_nfs_mailbox_keeps_the_running_daemon(
    daemons: Callable[..., Daemon], terminals: Callable[..., Terminal]
) -> None:
    """12.3.1 step 4 answered before the mailbox directory is mounted: the new daemon could
    not start, so Restart must not stop the working one; the answers stay written, to apply
    once the mount is there (at the next boot)."""
    host = daemons("host5", "host5.example.test", {"trusted_networks": ["127.0.0.0/8"]})
    port = host.start()
    old_pid = host.pid()

    setup = host.setup(terminals)
    setup.answer("Role of this system", "standalone")
    setup.answer("Local mail domains", "")
    setup.answer("Mailbox directory", "nfs-client")
    setup.answer("Mailbox server", "nfs.example.test")
    assert "[lockfile]" in setup.answer("Locking", "")  # the worksheet's rule for NFS
    setup.answer("Forward SMTP mail to a relay", "none")
    setup.answer("Host aliases", "")
    setup.answer("Use domain-based addresses", "n")
    setup.answer("Write this configuration?", "y")
    setup.answer("Restart the mail daemon now", "y")
    assert setup.exit_status() == 69, setup.transcript()  # written, not restarted
    assert host.pid() == old_pid, setup.transcript()
    send(port, "joe@host5.example.test", ["alice@example.test"], "still served")
    assert b"still served" in host_messages(host, "alice", 1)[0]
    shown = setup.transcript()
    assert "not mounted from the mailbox server nfs.example.test" in shown
    assert "keeps the old configuration" in shown
    assert 'mailbox_directory = "nfs-client"' in host.config.read_text()


# -- 12.3.3: a server with a DECnet gateway ---------------------------------------------------


def test_server_setup_delivers_its_domain_and_gateways_decnet(
    daemons: Callable[..., Daemon], terminals: Callable[..., Terminal], safe_dir: Path
) -> None:
    recorded = safe_dir / "out" / "mail11.log"
    recorder = safe_dir / "mail11.py"
    recorder.write_text(
        "import os, sys\n"
        f"with open({str(recorded)!r}, 'a') as f:\n"
        "    sys.stdin.read()\n"
        "    f.write(os.environ['NATIVE'] + ' ' + os.environ['NATIVE_SENDER'] + '\\n')\n"
    )
    # Started as a standalone host of another domain: big.com is not its mail yet.
    hub = daemons("hub", "mailhub.big.com", {"local_domains": ["example.test"]})
    port = hub.start()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        code, reply = client.docmd("MAIL FROM:<joe@outside.test>")
        assert code == 250, reply
        code, reply = client.docmd("RCPT TO:<alice@big.com>")
        assert (code, b"Relay access denied" in reply) == (554, True), reply  # not ours
    old_pid = hub.pid()

    size = hub.log_size()
    setup = hub.setup(terminals)
    setup.answer("Role of this system", "server")
    setup.answer("Top domain", "big.com")
    setup.answer("Local mail domains", "big.com")
    assert "[local]" in setup.answer("Mailbox directory", "server")
    assert "[both]" in setup.answer("Locking", "")  # the worksheet's rule for a server
    setup.answer("Forward SMTP mail to a relay", "none")
    setup.answer("Host aliases", "mailhub.big.com")
    setup.answer("Use domain-based addresses", "n")
    # Steps 3-14: the DECnet protocol, routed directly by its delivery program.
    setup.answer("Gateway protocols besides SMTP", "decnet")
    setup.answer("DECnet routing", "direct")
    setup.answer("DECnet delivery program", f"{PYTHON} {recorder}")
    assert "[DNET]" in setup.answer("DECnet pseudodomain", "")
    setup.answer("DECnet pseudodomain aliases", "-")
    setup.answer("DECnet node address", "32.958")
    setup.answer("Write this configuration?", "y")
    restarted(setup, hub, old_pid)

    port = hub.smtp_port(size)
    send(port, "joe@outside.test", ["alice@big.com"], "for the server")
    assert b"for the server" in host_messages(hub, "alice", 1)[0]
    # A local user of the gateway types a DECnet address (12.1.6).
    sent = hub.posthouse("sendmail", "-f", "alice@big.com", "VAXA::SMITH",
                         input="Subject: for decnet\n\nhi\n")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    wait_until(lambda: recorded.exists() and recorded.read_text().strip() != "",
               what="the DECnet delivery program to run")  # fmt: skip
    assert recorded.read_text().split() == ["vaxa::SMITH", "alice@big.com"]


# -- 12.3.1 on a new system: Restart starts the daemon ---------------------------------------


def test_first_setup_of_a_standalone_host_starts_the_daemon(
    server_factory: Factory, daemons: Callable[..., Daemon], terminals: Callable[..., Terminal]
) -> None:
    """No daemon runs yet: the last question is still the chapter's, and Restart starts it
    ("you are informed that the sendmail daemon has been started")."""
    relay = server_factory(hostname="relay.other.test", mail={"local_domains": ["other.test"]})
    host = daemons("host3", "host3.big.com", {"trusted_networks": ["127.0.0.0/8"]})
    assert host.posthouse("status").returncode == 3  # not running

    setup = host.setup(terminals)
    setup.answer("Role of this system", "standalone")
    setup.answer("Local mail domains", "big.com")
    setup.answer("Mailbox directory", "")
    setup.answer("Locking", "")
    setup.answer("Forward SMTP mail to a relay", "internet")
    setup.answer("Relay host", f"127.0.0.1:{relay.smtp_port}")
    setup.answer("Host aliases", "-")
    setup.answer("Use domain-based addresses", "n")
    setup.answer("Write this configuration?", "y")
    line = setup.answer("Start the mail daemon now", "y")
    assert "next boot" in line
    assert setup.exit_status() == 0, setup.transcript()
    assert "has been started" in setup.transcript()

    send(host.smtp_port(0), "joe@host3.big.com", ["alice@big.com", "bob@other.test"], "first")
    assert b"first" in host_messages(host, "alice", 1)[0]
    assert b"first" in relay.wait_for_messages("bob", 1)[0]
