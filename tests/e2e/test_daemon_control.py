"""Running the daemon as the chapter's administrator does: start, stop, restart, status and
reload (12.3.1 step 8, 12.8), configuration changes that take effect, and what ordinary users
ask the daemon over its control socket (their own mail password, 12.4.4; the queue, 12.7).

Real ``posthouse`` processes on loopback; the ordinary user is a real account made with
``useradd``, and its commands run with that uid (the kernel's SO_PEERCRED tells the daemon).
"""

from __future__ import annotations

import io
import os
import poplib
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.e2e.conftest import PASSWORD, Server, wait_until, write_config

# -- status, stop ------------------------------------------------------------------------------


def test_status_exit_codes(server: Server) -> None:
    running = server.cli("status")
    assert running.returncode == 0, running.stderr
    assert f"pid {server.process.pid}" in running.stdout.decode()
    stopped = server.cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert server.process.wait(timeout=60) == 0
    assert server.cli("status").returncode == 3  # LSB: not running
    assert server.cli("stop").returncode == 0  # LSB: stopping a stopped service succeeds
    assert server.cli("reload").returncode == 7  # LSB: not running
    # A pid file naming a dead process: "dead and /var/run pid file exists".
    (server.home / "data" / "posthouse.pid").write_text(f"{server.process.pid}\n")
    dead = server.cli("status")
    assert dead.returncode == 1
    assert "posthouse.pid" in dead.stderr.decode()


def test_stop_waits_for_a_session_in_flight(server: Server) -> None:
    client = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60)
    client.ehlo()
    client.mail("sender@remote.test")
    client.rcpt("alice@example.test")
    code, _ = client.docmd("DATA")
    assert code == 354
    client.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    env = dict(os.environ, POSTHOUSE_CONFIG=str(server.config_path))
    stop = subprocess.Popen(
        [sys.executable, "-m", "posthouse", "stop"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        log = server.home / "server.log"
        wait_until(lambda: "shutting down" in log.read_text(), what="the daemon to shut down")
        assert stop.poll() is None, "stop returned while a message was in flight"
        assert server.process.poll() is None
        client.send(b"second half\r\n.\r\n")
        code, _ = client.getreply()
        assert code == 250
        client.close()
        assert stop.wait(timeout=120) == 0
        assert server.process.wait(timeout=60) == 0
    finally:
        if stop.poll() is None:
            stop.kill()
        stop.communicate()
    assert b"second half" in server.wait_for_messages("alice", 1)[0]


# -- reload ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["posthouse reload", "SIGHUP"])
def test_hand_edited_route_survives_a_reload(
    server_factory: Callable[..., Server], how: str
) -> None:
    hub = server_factory(hostname="hub.other.test", mail={"local_domains": ["other.test"]})
    edge = server_factory(mail={"trusted_networks": ["127.0.0.0/8"]})
    with edge.config_path.open("a") as config:
        config.write(f'\n[[route]]\ndomain = "other.test"\nto = "127.0.0.1:{hub.smtp_port}"\n')
    if how == "SIGHUP":
        # A daemon that serves a session has its signal handlers installed.
        with smtplib.SMTP("127.0.0.1", edge.smtp_port, timeout=30) as client:
            assert client.noop()[0] == 250
        edge.process.send_signal(signal.SIGHUP)
        log = edge.home / "server.log"
        wait_until(lambda: "configuration reloaded" in log.read_text(), what="the reload")
    else:
        reloaded = edge.cli("reload")
        assert reloaded.returncode == 0, reloaded.stderr
        assert "configuration reloaded" in reloaded.stdout.decode()
    with smtplib.SMTP("127.0.0.1", edge.smtp_port, timeout=30) as client:
        client.sendmail(
            "joe@example.test", ["bob@other.test"], b"Subject: routed\r\n\r\nvia the hub\r\n"
        )
    assert b"via the hub" in hub.wait_for_messages("bob", 1)[0]


def test_reload_names_what_needs_a_restart(server: Server) -> None:
    text = server.config_path.read_text().replace("workers = 1", "workers = 2")
    server.config_path.write_text(text)
    reloaded = server.cli("reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert "not applied until a restart: server.workers" in reloaded.stdout.decode()
    log = server.home / "server.log"
    wait_until(lambda: "server.workers" in log.read_text(), what="the log to name it")


def new_submission_port(server: Server) -> int | None:
    """The submission port a reload moved to, once the log thread has written it."""
    log = (server.home / "server.log").read_text()
    ports = [int(p) for p in re.findall(r"listening submission on 127\.0\.0\.1:(\d+)", log)]
    return ports[-1] if ports and ports[-1] != server.ports["submission"] else None


def test_reload_opens_and_closes_listeners(server: Server) -> None:
    """A listener taken out stops accepting while its sessions go on; a new one serves."""
    pop3 = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    pop3.user("alice")
    pop3.pass_(PASSWORD)
    text = server.config_path.read_text()
    block = '[[listener]]\nprotocol = "pop3"\nport = 0\n'
    assert block in text
    server.config_path.write_text(text.replace(block, block.replace("pop3", "submission")))
    reloaded = server.cli("reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert "restart" not in reloaded.stdout.decode()
    assert pop3.stat()[0] == 0  # the session on the closed listener goes on
    pop3.quit()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=30)
    wait_until(lambda: new_submission_port(server) is not None, what="the log thread's line")
    port = new_submission_port(server)
    assert port is not None
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert client.ehlo()[0] == 250
        assert client.has_extn("auth") or client.has_extn("starttls")
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as client:
        assert client.noop()[0] == 250  # the listener kept is the same socket


def test_reload_replaces_workers_gracefully(server_factory: Callable[..., Server]) -> None:
    """With workers, new listeners or a new number of workers: new workers start with the
    new configuration, the old ones finish their sessions and end."""
    server = server_factory(workers=2)

    def workers() -> set[int]:
        text = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        return {int(pid) for pid in text.read_text().split()}

    wait_until(lambda: len(workers()) == 2, what="two workers")
    old = workers()
    busy = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60)  # a session in flight
    busy.ehlo()
    busy.mail("joe@remote.test")
    busy.rcpt("alice@example.test")
    text = server.config_path.read_text().replace("workers = 2", "workers = 3")
    block = '[[listener]]\nprotocol = "pop3"\nport = 0\n'
    server.config_path.write_text(text.replace(block, block.replace("pop3", "submission")))
    reloaded = server.cli("reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert "restart" not in reloaded.stdout.decode()
    wait_until(lambda: len(workers() - old) == 3, what="three new workers")
    code, _ = busy.data(b"Subject: during the change\r\n\r\nfinished\r\n")
    assert code == 250
    busy.quit()
    wait_until(lambda: not (workers() & old), what="the old workers to finish and end")
    assert b"finished" in server.wait_for_messages("alice", 1)[0]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=30)
    wait_until(lambda: new_submission_port(server) is not None, what="the log thread's line")
    port = new_submission_port(server)
    assert port is not None
    for each in (port, server.smtp_port):
        with smtplib.SMTP("127.0.0.1", each, timeout=30) as client:
            assert client.ehlo()[0] == 250


# -- setup, then restart -----------------------------------------------------------------------


def listening_port(log: Path, after: int = 0) -> int | None:
    """The SMTP port the last start written to ``log`` (from byte ``after``) listens on."""
    found = re.findall(r"listening smtp on 127\.0\.0\.1:(\d+)", log.read_text()[after:])
    return int(found[-1]) if found else None


def test_setup_then_restart_takes_the_new_route(
    server_factory: Callable[..., Server], tmp_path: Path, ca: trustme.CA
) -> None:
    hub = server_factory(hostname="hub.other.test", mail={"local_domains": ["other.test"]})
    home = tmp_path / "client"
    home.mkdir()
    config = write_config(home, ca, mail={"trusted_networks": ["127.0.0.0/8"]})
    env = dict(os.environ, POSTHOUSE_CONFIG=str(config))

    def posthouse(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "posthouse", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )

    started = posthouse("start")
    try:
        assert started.returncode == 0, started.stderr
        log = home / "data" / "posthouse.log"
        first_pid = int(re.findall(r"pid (\d+)", started.stdout)[0])
        size = log.stat().st_size
        # 12.3.2: a client sends everything to its mail server; setup restarts the daemon.
        setup = posthouse(
            "setup", "--role=client", f"--mail-server=127.0.0.1:{hub.smtp_port}", "--yes"
        )
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert "restarted" in setup.stdout
        status = posthouse("status")
        assert status.returncode == 0
        assert f"pid {first_pid}," not in status.stdout  # a new process
        port = listening_port(log, size)
        assert port is not None
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail(
                "joe@mail.example.test",
                ["bob@other.test"],
                b"Subject: after setup\r\n\r\nto the mail server\r\n",
            )
        assert b"to the mail server" in hub.wait_for_messages("bob", 1)[0]
    finally:
        stopped = posthouse("stop")
        assert stopped.returncode == 0, stopped.stderr
    assert posthouse("status").returncode == 3


def test_interactive_setup_restarts_now_or_at_the_next_boot(
    server_factory: Callable[..., Server], tmp_path: Path, ca: trustme.CA
) -> None:
    """12.3.2 steps 9-10 with the dialogue: "No" keeps the running daemon (the changes wait
    for the next boot), "Restart" applies them."""
    from posthouse.cli import setup
    from tests.cli.test_setup import Script

    hub = server_factory(hostname="hub.other.test", mail={"local_domains": ["other.test"]})
    home = tmp_path / "client"
    home.mkdir()
    config = write_config(home, ca, mail={"trusted_networks": ["127.0.0.0/8"]})
    env = dict(os.environ, POSTHOUSE_CONFIG=str(config))

    def posthouse(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "posthouse", *args],
            capture_output=True, text=True, env=env, timeout=180, check=False,
        )  # fmt: skip

    def interactive(answers: dict[str, list[str]]) -> str:
        out, err = io.StringIO(), io.StringIO()
        script = Script({**answers, "Write": ["y"]})
        argv = ["--config", str(config), "--interactive"]
        code = setup.main(argv, stdout=out, stderr=err, ask=script)
        assert code == 0, out.getvalue() + err.getvalue()
        assert script.asked("Restart the mail daemon now")
        return out.getvalue()

    started = posthouse("start")
    try:
        assert started.returncode == 0, started.stderr
        pid = re.findall(r"pid (\d+)", started.stdout)[0]
        answers = {"Role": ["client"], "Mail server": [f"127.0.0.1:{hub.smtp_port}"]}
        said = interactive({**answers, "Restart": ["n"]})
        assert "next boot" in said
        assert f"pid {pid}," in posthouse("status").stdout  # the same daemon, still running
        log = home / "data" / "posthouse.log"
        size = log.stat().st_size
        said = interactive({"Host aliases": ["relay.example.test"], "Restart": ["y"]})
        assert "restarted" in said
        assert f"pid {pid}," not in posthouse("status").stdout
        port = listening_port(log, size)
        assert port is not None
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail("joe@mail.example.test", ["bob@other.test"], b"Subject: x\r\n\r\ny\r\n")
        assert hub.wait_for_messages("bob", 1)
    finally:
        assert posthouse("stop").returncode == 0


# -- ordinary users ----------------------------------------------------------------------------

# An ordinary user cannot read this interpreter (it lives under /root), so the tools run in a
# process that imports them as root and then becomes the user for good, before it touches the
# daemon: the socket sees only the user's uid.
AS_USER = """
import os, sys
import posthouse.cli.main, posthouse.cli.mailauth, posthouse.cli.mailq, posthouse.cli.sendmail
import posthouse.cli.newaliases, posthouse.admin.daemon, posthouse.server.control
import getpass, json, encodings.idna, pwd
entry = pwd.getpwnam(sys.argv[1])
os.setgroups([])
os.setgid(entry.pw_gid)
os.setuid(entry.pw_uid)
os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
os.chdir(entry.pw_dir)
sys.argv = sys.argv[2:]
if os.path.basename(sys.argv[0]) == "posthouse":
    sys.exit(posthouse.cli.main.main(sys.argv[1:]))
sys.exit(posthouse.cli.sendmail.main())
"""


@dataclass
class OrdinaryUser:
    name: str
    uid: int

    def run(self, server: Server, *argv: str, input: str = "") -> subprocess.CompletedProcess[str]:
        """``argv`` (its first word is the command's name) as this user."""
        env = dict(os.environ, POSTHOUSE_CONFIG=str(server.config_path))
        return subprocess.run(
            [sys.executable, "-c", AS_USER, self.name, *argv],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )


@pytest.fixture
def ordinary_user() -> Iterator[OrdinaryUser]:
    if os.geteuid() != 0:
        pytest.fail("these tests make an account with useradd: run them as root (CI does)")
    if shutil.which("useradd") is None:
        pytest.fail("useradd (Debian's passwd package) is needed for this test")
    name = "phusr" + uuid.uuid4().hex[:6]
    subprocess.run(
        ["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True
    )
    try:
        yield OrdinaryUser(name, pwd.getpwnam(name).pw_uid)
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


@pytest.fixture
def public_server(server_factory: Callable[..., Server], safe_dir: Path) -> Server:
    """A server whose configuration and data directory every user can reach (the pytest
    temporary directories are root's alone)."""
    return server_factory(home=safe_dir / "srv")


def test_ordinary_user_changes_mail_password_and_logs_in_with_apop(
    public_server: Server, ordinary_user: OrdinaryUser
) -> None:
    server, name = public_server, ordinary_user.name
    for args, stdin in (
        (("user", "add", name, "--password-stdin"), "login-pass\n"),
        (("mailauth", "-init"), ""),
        (("mailusradm", "set", name, "apop-mailpass", "--password-stdin"), "first-mail\n"),
    ):
        done = server.cli(*args, input=stdin)
        assert done.returncode == 0, done.stderr
    database = server.home / "data" / "etc" / "mailauth.db"
    assert not os.access(database, os.R_OK) or os.stat(database).st_mode & 0o077 == 0
    mode_before = os.stat(database).st_mode

    wrong = ordinary_user.run(
        server, "posthouse", "mailauth", "--password-stdin", input="not-it\nsecond-mail\n"
    )
    assert wrong.returncode == 77, wrong.stdout + wrong.stderr
    changed = ordinary_user.run(
        server, "posthouse", "mailauth", "--password-stdin", input="first-mail\nsecond-mail\n"
    )
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert f"mail password changed for {name}" in changed.stdout
    assert os.stat(database).st_mode == mode_before  # never by loosening the permissions
    other = ordinary_user.run(
        server, "posthouse", "mailauth", "alice", "--password-stdin", input="x\ny-mail\n"
    )
    assert other.returncode == 77, other.stdout + other.stderr

    for command in ("stop", "reload"):  # the daemon's own control is root's
        refused = ordinary_user.run(server, "posthouse", command)
        assert refused.returncode == 4, refused.stdout + refused.stderr  # LSB: not permitted
        assert "permission denied" in refused.stderr
    assert server.process.poll() is None
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    try:
        assert b"<" in client.getwelcome()  # the APOP timestamp
        client.apop(name, "second-mail")
        assert client.stat()[0] == 0
    finally:
        client.quit()
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    try:
        with pytest.raises(poplib.error_proto):
            client.apop(name, "first-mail")
    finally:
        client.close()


def test_mailq_as_an_ordinary_user(
    server_factory: Callable[..., Server], safe_dir: Path, ordinary_user: OrdinaryUser
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: mail for nowhere.test waits in the queue
    server = server_factory(
        home=safe_dir / "srv",
        extra=f'\n[[route]]\ndomain = "nowhere.test"\nto = "127.0.0.1:{port}"\n',
        mail={"trusted_networks": ["127.0.0.0/8"]},
        queue={"retry_seconds": 3600},
    )
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.sendmail("alice@example.test", ["zed@nowhere.test"], b"Subject: q\r\n\r\nx\r\n")
    wait_until(
        lambda: "zed@nowhere.test" in server.cli("mailq").stdout.decode(),
        what="the message to wait in the queue",
    )
    control_files = list(server.queue_dir.glob("*.qf"))
    assert control_files and all(f.stat().st_mode & 0o004 == 0 for f in control_files)

    listed = ordinary_user.run(server, "mailq")  # the sendmail command by its link name
    assert listed.returncode == 0, listed.stderr
    assert "zed@nowhere.test" in listed.stdout
    assert "<alice@example.test>" in listed.stdout
    assert "unreadable" not in listed.stdout
    assert all(f.stat().st_mode & 0o004 == 0 for f in control_files)  # still private


def test_mailq_and_newaliases_as_link_names(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "posthouse-sendmail"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom posthouse.cli.sendmail import main\n"
        "sys.exit(main())\n"
    )
    script.chmod(0o755)
    for name in ("mailq", "newaliases"):
        (tmp_path / name).symlink_to(script)
    env = dict(os.environ, POSTHOUSE_CONFIG=str(server.config_path))
    aliases = server.home / "data" / "etc" / "aliases"
    aliases.write_text(aliases.read_text() + "team: alice, bob\n")
    rebuilt = subprocess.run(
        [str(tmp_path / "newaliases")], capture_output=True, text=True, env=env, timeout=120
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert re.search(r"aliases: \d+ aliases", rebuilt.stdout)
    listed = subprocess.run(
        [str(tmp_path / "mailq")], capture_output=True, text=True, env=env, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert "queue is empty" in listed.stdout.lower()


# -- command-line submissions in the log ---------------------------------------------------------


def test_sendmail_submissions_are_logged_like_smtp_ones(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory()
    log = server.home / "mail.log"
    text = server.config_path.read_text().replace(
        'log_level = "info"', f'log_level = "info"\nlog_file = "{log}"'
    )
    server.config_path.write_text(text)
    assert server.cli("reload").returncode == 0  # the daemon logs there too now
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.sendmail("joe@example.test", ["alice@example.test"], b"Subject: a\r\n\r\nsmtp\r\n")
    sent = server.cli(
        "sendmail", "-f", "joe@example.test", "bob@example.test", input="Subject: b\n\ncli\n"
    )
    assert sent.returncode == 0, sent.stderr
    server.wait_for_messages("alice", 1)
    server.wait_for_messages("bob", 1)
    line = r"\w+: from=<joe@example\.test>, size=\d+, nrcpts=1, proto={}, relay=\S+"
    wait_until(lambda: re.search(line.format("E?SMTP"), log.read_text()) is not None)
    logged = log.read_text()
    assert re.search(line.format("local"), logged), logged
    assert re.search(r"to=<bob@example\.test>, delay=\S+, mailer=local, .*stat=Sent", logged)


def test_demo_user_only_without_a_configuration_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from posthouse.admin.data import first_run
    from posthouse.config.load import load_settings

    configured = tmp_path / "posthouse.toml"
    configured.write_text(f'[server]\ndata_dir = "{tmp_path / "configured"}"\n')
    assert first_run(load_settings(configured)) is None
    aliases = (tmp_path / "configured" / "etc" / "aliases").read_text()
    assert "postmaster: root" in aliases and "demo" not in aliases

    monkeypatch.delenv("POSTHOUSE_CONFIG", raising=False)
    monkeypatch.setenv("POSTHOUSE_HOME", str(tmp_path / "quick"))
    password = first_run(load_settings(None))
    assert password
    assert "postmaster: demo" in (tmp_path / "quick" / "etc" / "aliases").read_text()
