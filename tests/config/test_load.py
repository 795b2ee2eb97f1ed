"""The configuration loader: defaults, validation and file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from posthouse.config.load import ConfigError, load_settings, parse_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "posthouse.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("POSTHOUSE_CONFIG", raising=False)
    monkeypatch.setenv("POSTHOUSE_HOME", str(tmp_path / "home"))
    settings = load_settings(None)
    assert settings.source == "(built-in defaults)"
    assert settings.paths.data_dir == (tmp_path / "home").resolve()
    assert settings.paths.spool_dir == settings.paths.data_dir / "spool" / "mail"
    assert settings.config.listener[0].port == 2525
    assert settings.config.mail.locking == "lockf"


def test_full_file_round_trip(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
hostname = "mx.big.com"
data_dir = "state"
workers = 3

[mail]
role = "server"
top_domain = "big.com"
host_aliases = ["mail.big.com", "big.com"]
locking = "both"
forwarding = "internet"
relay_host = "relay.big.com"

[[listener]]
protocol = "smtp"
port = 25

[[listener]]
protocol = "lmtp"
path = "/run/posthouse/lmtp"
""",
    )
    settings = load_settings(path)
    config = settings.config
    assert config.server.workers == 3
    assert config.mail.host_aliases == ("mail.big.com", "big.com")
    assert [listener.protocol for listener in config.listener] == ["smtp", "lmtp"]
    # A relative data_dir is relative to the configuration file.
    assert settings.paths.data_dir == (tmp_path / "state").resolve()


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[server]\nhostname = "x"\nworkers = "two"\n', 3, "'server.workers' must be an integer"),
        ('[mail]\n\nlocking = "flock"\n', 3, "'mail.locking' must be one of"),
        ('[mail]\nlocal_domains = "one"\n', 2, "must be a list"),
        ("[smtp]\nmax_recipients = -1\n", 2, "must not be negative"),
        ('[server]\nhostnme = "x"\n', 2, "unknown option 'server.hostnme'"),
        ("[bogus]\nx = 1\n", 1, "unknown option 'bogus'"),
        ("[[listener]]\nport = 25\n\n[[listener]]\nport = 99999\n", 5, "not a port number"),
        ('[[listener]]\nprotocol = "smtps"\n', 2, "needs [tls] cert_file"),
        ('[mail]\ntrusted_networks = ["10.0.0.0/33"]\n', 2, "10.0.0.0/33"),
        ('[mail]\nrole = "client"\n', 2, "needs mail.mail_server"),
        ('[server\nhostname = "x"\n', 1, "TOML syntax error"),
        ("[server]\nworkers = 0\n", 2, "at least 1"),
        ('[mail]\nmailbox_directory = "nfs-client"\n', 2, "needs the mailbox server"),
        ('[mail]\nmailbox_server = "hub"\n', 2, "only used with mailbox_directory = 'nfs-client'"),
        (
            '[server]\nhostname = "localhost"\n[mail]\nlocal_domains = []\nmasquerade = true\n',
            5,
            "masquerade = true needs a domain to masquerade as",
        ),
        (
            '[[pseudodomain]]\nprotocol = "decnet"\nrouting = "relay"\nrelay_host = "gw"\n'
            'relay_protocol = "decnet"\n',
            5,
            "pseudodomain[0].relay_protocol 'decnet': posthouse reaches a relay host over SMTP",
        ),
    ],
)
def test_errors_name_file_line_and_problem(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as failure:
        load_settings(path)
    assert str(failure.value).startswith(f"{path}:{line}: "), str(failure.value)
    assert words in str(failure.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")


def test_booleans_are_not_integers() -> None:
    with pytest.raises(ConfigError, match="must be an integer"):
        parse_config("[smtp]\nmax_errors = true\n", "x.toml")


def test_masquerading_with_a_domain_loads(tmp_path: Path) -> None:
    text = (
        '[server]\nhostname = "localhost"\n[mail]\nmasquerade = true\nmasquerade_as = "big.com"\n'
    )
    assert load_settings(write(tmp_path, text)).config.mail.masquerade_as == "big.com"
