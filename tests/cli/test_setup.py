"""Tests for ``posthouse setup`` (posthouse.cli.setup) and ``render_config``."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthouse.cli import setup
from posthouse.config.load import load_settings, parse_config
from posthouse.config.render import render_config
from posthouse.config.schema import (
    Config,
    Forwarding,
    ListenerSection,
    Locking,
    MailboxDirectory,
    MailSection,
    PseudodomainSection,
    Role,
    RouteSection,
    ServerSection,
    SMTPSection,
    TLSSection,
)

# -- helpers ---------------------------------------------------------------------------------


class Script:
    """An ``ask`` that answers by prompt prefix, in order, and "" (the default) otherwise."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = {prefix: list(replies) for prefix, replies in answers.items()}
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        assert len(self.prompts) < 200, "the dialogue does not end"
        for prefix, replies in self.answers.items():
            if prompt.strip().startswith(prefix) and replies:
                return replies.pop(0)
        return ""

    def asked(self, prefix: str) -> list[str]:
        return [p for p in self.prompts if p.strip().startswith(prefix)]


def run(path: Path, *argv: str, ask: Script | None = None, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = setup.main(
        ["--config", str(path), *argv], stdin=io.StringIO(stdin), stdout=out, stderr=err, ask=ask
    )
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "posthouse.toml"


# -- scripted mode ---------------------------------------------------------------------------


def test_scripted_standalone(path: Path) -> None:
    code, out, err = run(
        path,
        "--role=standalone",
        "--local-domain=big.com",
        "--mailbox-directory=nfs-client",
        "--mailbox-server=nfs.big.com",
        "--host-alias=mail.big.com",
        "--host-alias=big.com",
        "--yes",
    )
    assert (code, err) == (0, "")
    mail = load_settings(path).config.mail
    assert mail.role == "standalone"
    assert mail.local_domains == ("big.com",)
    assert mail.mailbox_directory == "nfs-client"
    assert mail.mailbox_server == "nfs.big.com"
    assert mail.locking == "lockfile"  # the worksheet's rule for an NFS client
    assert mail.host_aliases == ("mail.big.com", "big.com")
    assert "No running daemon" in out
    assert not path.with_name("posthouse.toml.bak").exists()


def test_scripted_client(path: Path) -> None:
    code, _, err = run(path, "--role", "client", "--mail-server", "nyc.big.com", "--yes")
    assert (code, err) == (0, "")
    mail = load_settings(path).config.mail
    assert (mail.role, mail.mail_server, mail.mailbox_directory, mail.locking) == (
        "client",
        "nyc.big.com",
        "local",
        "lockf",
    )


def test_scripted_server_with_gateways(path: Path) -> None:
    code, _, err = run(
        path,
        "--role=server",
        "--top-domain=big.com",
        "--local-domain=nyc.big.com",
        "--mailbox-directory=server",
        "--forwarding=internet",
        "--relay-host=relay.big.com:2525",
        "--pseudodomain=decnet:DNET:relay:gw.big.com",
        "--relay-protocol=decnet:esmtp",
        "--pseudodomain-alias=decnet:DECNET",
        "--node-address=32.958",
        "--pseudodomain=decnet-osi:DNA:direct",
        "--transport=decnet-osi:/usr/lib/mail11 -v",
        "--namespace=ACME:.nyc.hub",
        "--pseudodomain=uucp:",
        "--yes",
        "--no-restart",
    )
    assert (code, err) == (0, "")
    config = load_settings(path).config
    mail = config.mail
    assert (mail.role, mail.top_domain, mail.mailbox_directory, mail.locking) == (
        "server",
        "big.com",
        "server",
        "both",
    )
    assert (mail.forwarding, mail.relay_host) == ("internet", "relay.big.com:2525")
    decnet, osi, uucp = config.pseudodomain
    assert decnet == PseudodomainSection(
        protocol="decnet",
        name="DNET",
        aliases=("DECNET",),
        routing="relay",
        relay_host="gw.big.com",
        relay_protocol="esmtp",
        node_address="32.958",
    )
    assert (osi.name, osi.routing, osi.transport, osi.namespace) == (
        "DNA",
        "direct",
        "/usr/lib/mail11 -v",
        "ACME:.nyc.hub",
    )
    assert (uucp.protocol, uucp.name, uucp.routing) == ("uucp", "", "internet")
    # Updating one protocol keeps the others; removing drops one.
    code, _, err = run(
        path, "--pseudodomain=decnet:DNET:internet", "--remove-pseudodomain=uucp", "--yes"
    )
    assert (code, err) == (0, "")
    config = load_settings(path).config
    assert [p.protocol for p in config.pseudodomain] == ["decnet", "decnet-osi"]
    assert config.pseudodomain[0].relay_host == ""  # only meaningful with routing relay
    assert config.pseudodomain[0].node_address == "32.958"


def test_role_change_clears_and_maps_answers(path: Path) -> None:
    assert run(path, "--role=client", "--mail-server=big.com", "--yes")[0] == 0
    code, _, _ = run(path, "--role=server", "--top-domain=big.com", "--yes")
    assert code == 0
    mail = load_settings(path).config.mail
    assert (mail.role, mail.mail_server) == ("server", "")
    assert run(path, "--mailbox-directory=server", "--yes")[0] == 0
    assert load_settings(path).config.mail.locking == "both"
    # Back to standalone: the server's "server" mailbox directory is "nfs-server" there.
    assert run(path, "--role=standalone", "--yes")[0] == 0
    mail = load_settings(path).config.mail
    assert (mail.mailbox_directory, mail.locking) == ("nfs-server", "both")


def test_list_flags_replace_and_clear(path: Path) -> None:
    assert run(path, "--host-alias=a.big.com,b.big.com", "--yes")[0] == 0
    assert load_settings(path).config.mail.host_aliases == ("a.big.com", "b.big.com")
    assert run(path, "--host-alias=", "--yes")[0] == 0
    assert load_settings(path).config.mail.host_aliases == ()


def test_other_sections_are_kept(path: Path) -> None:
    path.write_text(
        '# hand-written\n[server]\nhostname = "mx.big.com"\nworkers = 3\n\n'
        '[[listener]]\nprotocol = "smtp"\nport = 25\n',
        encoding="utf-8",
    )
    assert run(path, "--role=standalone", "--local-domain=big.com", "--yes")[0] == 0
    config = load_settings(path).config
    assert (config.server.hostname, config.server.workers) == ("mx.big.com", 3)
    assert config.listener == (ListenerSection(protocol="smtp", port=25),)


def test_default_path_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTHOUSE_CONFIG", raising=False)
    args = argparse.Namespace(config=None)
    assert setup.config_path(args.config) == Path("posthouse.toml")
    monkeypatch.setenv("POSTHOUSE_CONFIG", str(tmp_path / "env.toml"))
    assert setup.main(["--yes", "--local-domain=big.com"], stdin=io.StringIO()) == 0
    assert load_settings(tmp_path / "env.toml").config.mail.local_domains == ("big.com",)
    capsys.readouterr()


def test_add_parser_registers_setup(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="posthouse")
    parser.add_argument("--config")
    setup.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["--config", str(path), "setup", "--role=standalone", "--yes"])
    assert args.func(args) == 0
    assert load_settings(path).config.mail.role == "standalone"
    assert "Wrote" in capsys.readouterr().out


# -- validation, usage and declining ---------------------------------------------------------


def test_client_without_mail_server_writes_nothing(path: Path) -> None:
    code, out, err = run(path, "--role=client", "--yes")
    assert code == setup.EX_CONFIG
    assert "role 'client' needs mail.mail_server" in err
    assert "nothing written" in err
    assert not path.exists()
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--role=mainframe"], "'mainframe' is not one of standalone, client, server"),
        (["--role=client", "--mail-server=bad host"], "--mail-server"),
        (["--role=server", "--mailbox-directory=nfs-server"], "not one of local, server"),
        (["--locking=flock"], "--locking"),
        (["--forwarding=internet"], "needs relay_host"),
        (["--mailbox-directory=nfs-client"], "needs the mailbox server"),
        (["--pseudodomain=decnet:DNET:relay"], "needs a relay_host"),
        (["--pseudodomain=decnet:DNET", "--node-address=99.1"], "not a DECnet node address"),
        (["--pseudodomain=decnet:DNET", "--pseudodomain=mts:DNET"], "used by both"),
        (["--host-alias=bad_name_.com"], "not a domain name"),
        (
            ["--pseudodomain=decnet:DNET:relay:gw.big.com", "--relay-protocol=decnet:decnet"],
            "relay protocol 'decnet': posthouse reaches a relay over SMTP only",
        ),
        (["--masquerade", "--masquerade-as=bad_name_.com"], "not a domain name"),
    ],
)
def test_invalid_answers(path: Path, argv: list[str], words: str) -> None:
    code, _, err = run(path, *argv, "--yes")
    assert code == setup.EX_CONFIG, err
    assert words in err
    assert not path.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--pseudodomain=bogus"],
        ["--pseudodomain=smtp:X"],
        ["--node-address=1.2"],  # DECnet is not configured
        ["--remove-pseudodomain=nosuch"],
        ["--interactive", "--batch"],
        ["--no-such-option"],
    ],
)
def test_usage_errors(path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(path, *argv, "--yes")[0] == setup.EX_USAGE
    assert not path.exists()
    capsys.readouterr()


def test_invalid_existing_file_is_left_alone(path: Path) -> None:
    path.write_text('[mail]\nlocking = "flock"\n', encoding="utf-8")
    code, _, err = run(path, "--role=standalone", "--yes")
    assert code == setup.EX_CONFIG
    assert "mail.locking" in err
    assert path.read_text(encoding="utf-8") == '[mail]\nlocking = "flock"\n'


def test_update_shows_diff_keeps_backup(path: Path) -> None:
    assert run(path, "--role=standalone", "--local-domain=big.com", "--yes")[0] == 0
    first = path.read_text(encoding="utf-8")
    code, out, _ = run(path, "--host-alias=mail.big.com", stdin="y\n")
    assert code == 0
    assert f"--- {path} (current)" in out
    assert f"+++ {path} (new)" in out
    assert '-host_aliases = []\n+host_aliases = ["mail.big.com"]\n' in out
    assert "Write this configuration? [y/N]" in out
    assert path.with_name("posthouse.toml.bak").read_text(encoding="utf-8") == first
    assert load_settings(path).config.mail.host_aliases == ("mail.big.com",)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("reply", ["n\n", "\n", ""])
def test_declined_writes_nothing(path: Path, reply: str) -> None:
    assert run(path, "--role=standalone", "--yes")[0] == 0
    before = path.read_text(encoding="utf-8")
    code, out, _ = run(path, "--host-alias=mail.big.com", stdin=reply)
    assert code == setup.EX_DECLINED
    assert "Nothing written." in out
    assert path.read_text(encoding="utf-8") == before
    assert not path.with_name("posthouse.toml.bak").exists()


def test_unchanged_configuration_is_not_rewritten(path: Path) -> None:
    assert run(path, "--role=standalone", "--yes")[0] == 0
    code, out, _ = run(path, "--role=standalone", "--yes")
    assert code == 0
    assert "up to date" in out
    assert not path.with_name("posthouse.toml.bak").exists()


# -- interactive mode ------------------------------------------------------------------------


def test_interactive_server_reasks_invalid_answers(path: Path) -> None:
    script = Script(
        {
            "Role": ["mainframe", "s", "server"],
            "Top domain": ["big.com"],
            "Local mail domains": ["nyc.big.com, big.com"],
            "Mailbox directory": ["server"],
            "Forward SMTP mail": ["nonlocal"],
            "Relay host": ["", "relay.big.com"],
            "Host aliases": ["mail.big.com"],
            "Gateway protocols": ["decnet, smtp", "decnet uucp"],
            "DECnet routing": ["relay"],
            "DECnet relay's host name": ["gw.big.com"],
            "DECnet node address": ["99.1", "32.958"],
            "Write this configuration?": ["y"],
        }
    )
    code, out, err = run(path, ask=script)
    assert (code, err) == (0, "")
    assert "'mainframe' is not one of standalone, client, server; please answer again." in out
    assert "'s' could be standalone or server" in out
    assert "an answer is required; please answer again." in out
    assert "'smtp' is not one of decnet" in out
    assert "not a DECnet node address" in out
    assert len(script.asked("Role")) == 3
    # The locking default follows the mailbox directory (server -> both).
    assert script.asked("Locking") == ["Locking (lockf, lockfile, both) [both]: "]
    # The order of the chapter's worksheets.
    order = [
        "Role",
        "Top domain",
        "Local mail domains",
        "Mailbox directory",
        "Locking",
        "Forward SMTP mail",
        "Relay host",
        "Host aliases",
        "Gateway protocols",
    ]
    firsts = [next(i for i, p in enumerate(script.prompts) if p.startswith(q)) for q in order]
    assert firsts == sorted(firsts)
    assert "  DECnet pseudodomain [DNET]: " in script.prompts
    config = load_settings(path).config
    mail = config.mail
    assert (mail.role, mail.top_domain, mail.local_domains) == (
        "server",
        "big.com",
        ("nyc.big.com", "big.com"),
    )
    assert (mail.mailbox_directory, mail.locking) == ("server", "both")
    assert (mail.forwarding, mail.relay_host, mail.host_aliases) == (
        "nonlocal",
        "relay.big.com",
        ("mail.big.com",),
    )
    assert config.pseudodomain == (
        PseudodomainSection(
            protocol="decnet",
            name="DNET",
            routing="relay",
            relay_host="gw.big.com",
            node_address="32.958",
        ),
        PseudodomainSection(protocol="uucp", routing="internet"),
    )


def test_masquerading_is_offered_to_clients_and_servers(path: Path) -> None:
    # 12.1.2: a client answers yes and keeps the domain derived from its name.
    script = Script(
        {
            "Role": ["client"],
            "Mail server": ["nyc.big.com"],
            "Use domain-based addresses": ["y"],
            "Masquerade as": [""],
            "Write this configuration?": ["y"],
        }
    )
    assert run(path, "--interactive", ask=script)[0] == 0
    mail = load_settings(path).config.mail
    assert (mail.masquerade, mail.masquerade_as) == (True, "")
    # A server names its masquerade domain with flags.
    code, _, err = run(
        path, "--role=server", "--top-domain=big.com", "--masquerade-as=nyc.big.com", "--yes"
    )
    assert (code, err) == (0, "")
    mail = load_settings(path).config.mail
    assert (mail.role, mail.masquerade, mail.masquerade_as) == ("server", True, "nyc.big.com")
    assert run(path, "--no-masquerade", "--yes")[0] == 0
    assert load_settings(path).config.mail.masquerade is False


def test_interactive_shows_current_values_as_defaults(path: Path) -> None:
    assert run(path, "--role=client", "--mail-server=big.com", "--yes")[0] == 0
    script = Script({"Mailbox directory": ["nfs-client"], "Mailbox server": ["hub.big.com"]})
    script.answers["Write"] = ["yes"]
    code, _, _ = run(path, "--interactive", ask=script)
    assert code == 0
    assert script.asked("Role") == ["Role of this system (standalone, client, server) [client]: "]
    assert script.asked("Mail server") == ["Mail server [big.com]: "]
    # A client is not asked about forwarding, local domains or gateway protocols.
    assert not script.asked("Forward") and not script.asked("Gateway")
    assert not script.asked("Local mail domains")
    # The mailbox directory changed to an NFS client: the locking default is lockfile.
    assert script.asked("Locking") == ["Locking (lockf, lockfile, both) [lockfile]: "]
    mail = load_settings(path).config.mail
    assert (mail.mailbox_server, mail.locking) == ("hub.big.com", "lockfile")


def test_interactive_end_of_input_aborts(path: Path) -> None:
    code, _, err = run(path, "--interactive", stdin="standalone\n")
    assert code == setup.EX_DECLINED
    assert "aborted" in err
    assert not path.exists()


def test_interactive_through_stdin(path: Path) -> None:
    answers = "client\nbig.com\nlocal\n\n\n\ny\n"
    code, out, _ = run(path, "--interactive", stdin=answers)
    assert code == 0, out
    assert "Mail server: " in out
    assert load_settings(path).config.mail.mail_server == "big.com"


# -- restarting the daemon (tests/e2e/test_daemon_control.py restarts a real one) -------


def _with_data_dir(path: Path) -> None:
    path.write_text(f'[server]\ndata_dir = "{path.parent / "data"}"\n', encoding="utf-8")


def test_stale_pid_file_is_not_a_running_daemon(path: Path) -> None:
    _with_data_dir(path)
    (path.parent / "data").mkdir()
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (path.parent / "data" / "posthouse.pid").write_text(finished.stdout, encoding="utf-8")
    code, out, _ = run(path, "--role=standalone", "--locking=both", "--yes")  # a change
    assert code == 0
    assert "No running daemon found" in out


def test_interactive_without_a_daemon_asks_to_start_it_and_enter_does_not(path: Path) -> None:
    """12.3.1 step 8 on a new system: the last question is still asked; No is the default."""
    _with_data_dir(path)
    script = Script({"Role": ["client"], "Mail server": ["big.com"], "Write": ["y"]})
    code, out, err = run(path, "--interactive", ask=script)
    assert (code, err) == (0, "")
    [asked] = script.asked("Start the mail daemon now")
    assert asked.rstrip().endswith("[y/N]")
    assert "Not started" in out and "posthouse start" in out
    assert not (path.parent / "data" / "posthouse.pid").exists()


# -- render_config ---------------------------------------------------------------------------

HAND_MADE = [
    Config(),
    Config(mail=MailSection(role="client", mail_server="big.com", local_domains=())),
    Config(
        server=ServerSection(hostname="mx.big.com", data_dir="/var/lib/posthouse", workers=4),
        mail=MailSection(
            role="server",
            top_domain="big.com",
            mailbox_directory="server",
            locking="both",
            forwarding="local",
            relay_host="[192.0.2.1]:25",
            stale_lock_seconds=12.5,
            masquerade=True,
        ),
        smtp=SMTPSection(max_recipients=5, idle_timeout_seconds=60),
        tls=TLSSection(cert_file="cert.pem", key_file="key.pem"),
        listener=(
            ListenerSection(protocol="smtps", port=465, address="0.0.0.0"),
            ListenerSection(protocol="lmtp", path="/run/lmtp"),
        ),
        route=(RouteSection(domain="*", to="smarthost:587"),),
        pseudodomain=(
            PseudodomainSection(protocol="decnet", name="DNET", node_address="1.2"),
            PseudodomainSection(protocol="x25"),
        ),
    ),
    Config(listener=(), mail=MailSection(host_aliases=('q"uo\\te', "tab\there", "nl\n\x7f"))),
]


@pytest.mark.parametrize("config", HAND_MADE)
def test_render_round_trip(config: Config) -> None:
    text = render_config(config)
    assert parse_config(text, "x") == config
    assert "[mail]" in text and 'role = "' in text


def test_render_leaves_out_defaults() -> None:
    text = render_config(Config(server=ServerSection(workers=2)))
    assert "[server]\nworkers = 2\n" in text
    assert "hostname" not in text and "[smtp]" not in text and "[[listener]]" not in text
    assert all(f"\n{key} = " in text for key in ("top_domain", "locking", "host_aliases"))


_text = st.text(max_size=12)
_names = st.lists(_text, max_size=3).map(tuple)
_pseudodomain = st.builds(
    PseudodomainSection,
    protocol=st.sampled_from(setup.PROTOCOLS),
    name=_text,
    aliases=_names,
    routing=st.sampled_from(setup.ROUTINGS),
    relay_host=_text,
    node_address=_text,
    namespace=_text,
)


@st.composite
def worksheet_configs(draw: st.DrawFn) -> Config:
    role = draw(st.sampled_from(get_args(Role)))
    forwarding = draw(st.sampled_from(get_args(Forwarding)))
    directory = draw(st.sampled_from(get_args(MailboxDirectory)))
    mail = MailSection(
        role=role,
        mail_server=draw(_text.filter(bool)) if role == "client" else draw(_text),
        top_domain=draw(_text),
        local_domains=draw(_names),
        host_aliases=draw(_names),
        mailbox_directory=directory,
        # Only an NFS client has (and needs) a mailbox server.
        mailbox_server=draw(_text.filter(bool)) if directory == "nfs-client" else "",
        locking=draw(st.sampled_from(get_args(Locking))),
        forwarding=forwarding,
        relay_host=draw(_text.filter(bool)) if forwarding != "none" else draw(_text),
        stale_lock_seconds=draw(st.floats(min_value=0, allow_nan=False)),
        masquerade=draw(st.booleans()),
        masquerade_as=draw(_text),
    )
    return Config(
        mail=mail,
        pseudodomain=tuple(draw(st.lists(_pseudodomain, max_size=3))),
        listener=draw(st.sampled_from([(), Config().listener, (ListenerSection(port=25),)])),
    )


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(worksheet_configs())
def test_render_round_trip_property(config: Config) -> None:
    assert parse_config(render_config(config), "x") == config


def test_render_is_what_setup_writes(path: Path) -> None:
    assert run(path, "--role=standalone", "--yes")[0] == 0
    text = path.read_text(encoding="utf-8")
    assert text == render_config(parse_config(text, str(path)))
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_setup_keeps_the_administrators_comments_and_order(path: Path) -> None:
    text = (
        "# Written by hand -- keep this\n"
        "[server]\n"
        'hostname = "mail.big.com"  # the public name\n'
        "\n"
        "# Mail settings\n"
        "[mail]\n"
        'role = "standalone"  # since 2025\n'
        'local_domains = ["big.com"]\n'
        "\n"
        "# [queue] last, as I like it\n"
        "[queue]\n"
        "retry_seconds = 120.0\n"
    )
    path.write_text(text, encoding="utf-8")
    code, out, err = run(path, "--host-alias=mx.big.com", "--forwarding=internet",
                         "--relay-host=relay.big.com", "--yes", "--no-restart")  # fmt: skip
    assert (code, err) == (0, ""), out
    written = path.read_text(encoding="utf-8")
    assert written == text.replace(
        'local_domains = ["big.com"]\n',
        'local_domains = ["big.com"]\n'
        "# other names of this host that mail may be addressed to\n"
        'host_aliases = ["mx.big.com"]\n'
        "# SMTP forwarding to the relay: none, internet, nonlocal or local\n"
        'forwarding = "internet"\n'
        "# the relay for forwarded mail (forwarding other than none)\n"
        'relay_host = "relay.big.com"\n',
    )
    assert "cannot edit in place" not in out
    code, out, err = run(path, "--role=standalone", "--yes", "--no-restart")
    assert code == 0 and "up to date" in out and path.read_text(encoding="utf-8") == written


def test_setup_writes_anew_a_file_it_cannot_edit_and_says_so(path: Path) -> None:
    path.write_text('# dotted\nmail.role = "standalone"\n', encoding="utf-8")
    code, out, err = run(path, "--locking=both", "--yes", "--no-restart")
    assert (code, err) == (0, "")
    assert "cannot edit in place" in out
    assert load_settings(path).config.mail.locking == "both"
