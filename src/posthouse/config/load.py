"""Loading and validating the TOML configuration file.

``load_settings(path)`` reads the file (or uses the built-in defaults when
``path`` is None), checks every key against the schema in
``posthouse.config.schema`` and resolves the data-directory paths.  Any
problem raises ``ConfigError`` whose text names the file, the line and what is
wrong, so ``posthouse serve`` can stop with a message the administrator can act
on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from posthouse.config.schema import Config, Paths, Settings
from posthouse.mta.pseudodomains import RELAY_PROTOCOLS
from posthouse.mta.rewrite import masquerade_domain

DEFAULTS_SOURCE = "(built-in defaults)"


class ConfigError(Exception):
    """A configuration problem, located at ``path:line``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


def default_data_dir() -> Path:
    """$POSTHOUSE_HOME, else ``posthouse-data`` under the working directory."""
    home = os.environ.get("POSTHOUSE_HOME")
    return Path(home) if home else Path.cwd() / "posthouse-data"


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate a configuration file; ``None`` means built-in defaults."""
    if path is None:
        env_path = os.environ.get("POSTHOUSE_CONFIG")
        path = env_path if env_path else None
    if path is None:
        config = Config()
        source = DEFAULTS_SOURCE
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(source, None, f"cannot read: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(source, None, f"not UTF-8 text: {exc.reason}") from exc
        config = parse_config(text, source)
    return Settings(config=config, paths=resolve_paths(config, source), source=source)


def parse_config(text: str, source: str) -> Config:
    """Parse TOML text into a validated ``Config``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(match.group(1)) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(source, line, f"TOML syntax error: {message}") from exc
    locator = _Locator(text)
    config: Config = _build(Config, raw, "", source, locator)
    _check_semantics(config, source, locator)
    return config


class _Locator:
    """Finds the line of a key, for error messages (tomllib keeps no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def find(self, dotted: str) -> int | None:
        parts = [p for p in re.split(r"\.|\[\d+\]", dotted) if p]
        indexes = [int(i) for i in re.findall(r"\[(\d+)\]", dotted)]
        if not parts:
            return None
        key = parts[-1]
        table = parts[:-1]
        table_name = ".".join(table)
        current = ""
        array_seen = -1
        target_index = indexes[0] if indexes else 0
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            header = re.match(r"^\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?", stripped)
            if header:
                current = header.group(1)
                if stripped.startswith("[[") and current == table_name:
                    array_seen += 1
                if current == ".".join(parts) and not table:
                    return number
                continue
            in_table = current == table_name and (not indexes or array_seen == target_index)
            if in_table and re.match(rf"^{re.escape(key)}\s*=", stripped):
                return number
        return None


def _fail(source: str, locator: _Locator, dotted: str, message: str) -> ConfigError:
    return ConfigError(source, locator.find(dotted), message)


def _build(cls: type[Any], raw: Any, prefix: str, source: str, locator: _Locator) -> Any:
    name = prefix or "top level"
    if not isinstance(raw, dict):
        raise _fail(source, locator, prefix, f"[{name}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {_key(f) for f in dataclasses.fields(cls) if "prefix" not in f.metadata}
    prefixes = {f.metadata["prefix"]: f for f in dataclasses.fields(cls) if "prefix" in f.metadata}
    collected: dict[str, list[tuple[str, str]]] = {f.name: [] for f in prefixes.values()}
    for key in raw:
        prefixed = next((f for p, f in prefixes.items() if key.startswith(p)), None)
        if key not in known and prefixed is not None:
            dotted = f"{prefix}.{key}" if prefix else key
            suffix = key[len(prefixed.metadata["prefix"]) :]
            value = _convert(str, raw[key], dotted, source, locator)
            if not _SUFFIX.match(suffix):
                raise _fail(
                    source,
                    locator,
                    dotted,
                    f"'{dotted}': the name after the dash must be"
                    " letters, digits, '_' or '-' (at most 64)",
                )
            collected[prefixed.name].append((suffix, value))
        elif key not in known:
            dotted = f"{prefix}.{key}" if prefix else key
            choices = ", ".join(sorted(known))
            raise _fail(source, locator, dotted, f"unknown option '{dotted}' (known: {choices})")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = _key(f)
        if key not in raw or key not in known:
            continue
        dotted = f"{prefix}.{key}" if prefix else key
        values[f.name] = _convert(hints[f.name], raw[key], dotted, source, locator)
    for name, pairs in collected.items():
        if pairs:
            values[name] = tuple(pairs)
    return cls(**values)


#: What may follow a prefix option's dash (``partition-NAME``).
_SUFFIX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z")


def _key(f: dataclasses.Field[Any]) -> str:
    """An option's name in the file: the field's, or its ``key`` (imapd.conf's dashes)."""
    return str(f.metadata.get("key", f.name))


def _convert(hint: Any, value: Any, dotted: str, source: str, locator: _Locator) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, dotted, source, locator)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise _fail(
                source, locator, dotted, f"'{dotted}' must be one of {allowed}, not {value!r}"
            )
        return value
    if origin is tuple:
        (item_hint, _ellipsis) = get_args(hint)
        if not isinstance(value, list):
            raise _fail(source, locator, dotted, f"'{dotted}' must be a list")
        return tuple(
            _convert(item_hint, item, f"{dotted}[{index}]", source, locator)
            for index, item in enumerate(value)
        )
    if origin in (types.UnionType, typing.Union):
        # e.g. ``int | Literal["auto"]``: the first alternative that fits; else its error.
        failures: list[ConfigError] = []
        for alternative in get_args(hint):
            try:
                return _convert(alternative, value, dotted, source, locator)
            except ConfigError as exc:
                failures.append(exc)
        raise failures[0]
    expected: dict[Any, tuple[type, ...]] = {
        str: (str,),
        bool: (bool,),
        int: (int,),
        float: (int, float),
    }
    kinds = expected.get(hint)
    if kinds is None:
        raise TypeError(f"unsupported schema type {hint!r}")
    if (isinstance(value, bool) and hint is not bool) or not isinstance(value, kinds):
        raise _fail(
            source,
            locator,
            dotted,
            f"'{dotted}' must be {_describe(hint)}, not {type(value).__name__} {value!r}",
        )
    if isinstance(value, int | float) and value < 0:
        raise _fail(source, locator, dotted, f"'{dotted}' must not be negative")
    if hint is float and isinstance(value, int | float):
        return float(value)
    return value


def _describe(hint: Any) -> str:
    return {str: "a string", bool: "true or false", int: "an integer", float: "a number"}[hint]


def _check_semantics(config: Config, source: str, locator: _Locator) -> None:
    """Checks that span several options."""
    for index, listener in enumerate(config.listener):
        where = f"listener[{index}]"
        if not listener.path and not 0 <= listener.port <= 65535:
            raise _fail(source, locator, f"{where}.port", f"'{where}.port' is not a port number")
        if listener.path and listener.protocol != "lmtp":
            raise _fail(
                source, locator, f"{where}.path", "unix socket paths are for LMTP listeners only"
            )
        needs_tls = listener.protocol in ("smtps", "pop3s", "imaps")
        if needs_tls and not (config.tls.cert_file and config.tls.key_file):
            raise _fail(
                source,
                locator,
                f"{where}.protocol",
                f"a {listener.protocol} listener needs [tls] cert_file and key_file",
            )
    if bool(config.tls.cert_file) != bool(config.tls.key_file):
        raise _fail(source, locator, "tls.cert_file", "set both tls.cert_file and tls.key_file")
    for index, network in enumerate(config.mail.trusted_networks):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            dotted = f"mail.trusted_networks[{index}]"
            raise _fail(source, locator, "mail.trusted_networks", f"{dotted}: {exc}") from exc
    if config.mail.role == "client" and not config.mail.mail_server:
        raise _fail(source, locator, "mail.role", "role 'client' needs mail.mail_server")
    if config.mail.forwarding != "none" and not config.mail.relay_host:
        raise _fail(
            source,
            locator,
            "mail.forwarding",
            "a forwarding mode other than 'none' needs relay_host",
        )
    _check_addressing(config, source, locator)
    _check_mailbox_server(config, source, locator)
    _check_partitions(config, source, locator)
    _check_abuse_limits(config, source, locator)
    if isinstance(config.server.workers, int) and config.server.workers < 1:
        raise _fail(source, locator, "server.workers", "server.workers must be at least 1")
    if config.aliases.default_user in ("", "root"):
        raise _fail(
            source,
            locator,
            "aliases.default_user",
            "aliases.default_user must name an unprivileged account (e.g. nobody)",
        )


def _check_addressing(config: Config, source: str, locator: _Locator) -> None:
    """Masquerading needs a domain to masquerade as; a gateway relay is reached by SMTP."""
    mail = config.mail
    if mail.masquerade and not masquerade_domain(
        config.server.hostname, mail.top_domain, mail.local_domains, mail.masquerade_as
    ):
        raise _fail(
            source,
            locator,
            "mail.masquerade",
            "masquerade = true needs a domain to masquerade as: set mail.masquerade_as or "
            f"mail.top_domain (server.hostname {config.server.hostname!r} has no domain)",
        )
    for index, gateway in enumerate(config.pseudodomain):
        if gateway.routing == "relay" and gateway.relay_protocol.lower() not in RELAY_PROTOCOLS:
            raise _fail(
                source,
                locator,
                f"pseudodomain[{index}].relay_protocol",
                f"pseudodomain[{index}].relay_protocol {gateway.relay_protocol!r}: posthouse "
                'reaches a relay host over SMTP only (use "smtp", or routing = "direct" '
                "with a transport program for the protocol)",
            )


def _check_mailbox_server(config: Config, source: str, locator: _Locator) -> None:
    """The Mailbox Setup dialog (12.3.1 step 4): an NFS client names its mailbox server,
    and only an NFS client has one."""
    mail = config.mail
    if mail.mailbox_directory == "nfs-client" and not mail.mailbox_server:
        raise _fail(
            source,
            locator,
            "mail.mailbox_directory",
            "mailbox_directory = 'nfs-client' needs the mailbox server: set "
            "mail.mailbox_server (the system exporting the mailbox directory)",
        )
    if mail.mailbox_server and mail.mailbox_directory != "nfs-client":
        raise _fail(
            source,
            locator,
            "mail.mailbox_server",
            "mail.mailbox_server is only used with mailbox_directory = 'nfs-client'",
        )


def _check_partitions(config: Config, source: str, locator: _Locator) -> None:
    """Chapter 12.5.9: every ``partition-NAME`` has a path; ``defaultpartition`` names one."""
    imap = config.imap
    for name, path in imap.partitions:
        if not path:
            raise _fail(source, locator, f"imap.partition-{name}", f"partition-{name} needs a path")
    names = ["default"] + [name for name, _ in imap.partitions]
    if imap.defaultpartition not in names:
        raise _fail(
            source,
            locator,
            "imap.defaultpartition",
            f"defaultpartition {imap.defaultpartition!r} is no partition"
            f" (configured: {', '.join(names)})",
        )


def located_error(source: str, dotted: str, message: str) -> ConfigError:
    """A problem with option ``dotted`` found after loading (e.g. against the running
    system), located in the file ``source`` as the loader locates its own."""
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    return _fail(source, _Locator(text), dotted, message)


MAX_AUTH_FAILURES = 100  # per window: the shared tables keep one time per failure


def _check_abuse_limits(config: Config, source: str, locator: _Locator) -> None:
    """The limits against abusive clients must be positive (a rate floor may be 0)."""
    positive = {
        "smtp.tls_handshake_timeout_seconds": config.smtp.tls_handshake_timeout_seconds,
        "smtp.command_timeout_seconds": config.smtp.command_timeout_seconds,
        "smtp.data_timeout_seconds": config.smtp.data_timeout_seconds,
        "smtp.auth_failure_window_seconds": config.smtp.auth_failure_window_seconds,
        "smtp.auth_hash_threads": config.smtp.auth_hash_threads,
        "pop3.command_timeout_seconds": config.pop3.command_timeout_seconds,
        "imap.command_timeout_seconds": config.imap.command_timeout_seconds,
        "imap.timeout": config.imap.timeout,
        "imap.maxmessagesize": config.imap.maxmessagesize,
        "imap.max_errors": config.imap.max_errors,
        "imap.max_commands": config.imap.max_commands,
    }
    for dotted, value in positive.items():
        if not value > 0:
            raise _fail(source, locator, dotted, f"'{dotted}' must be greater than 0")
    for dotted, rate in (
        ("smtp.min_data_rate", config.smtp.min_data_rate),
        ("imap.min_data_rate", config.imap.min_data_rate),
    ):
        if rate < 0:
            raise _fail(source, locator, dotted, f"'{dotted}' must be >= 0")
    for key in ("auth_failures_per_client", "auth_failures_per_user"):
        value = getattr(config.smtp, key)
        if not 1 <= value <= MAX_AUTH_FAILURES:
            raise _fail(
                source, locator, f"smtp.{key}", f"'smtp.{key}' must be 1 to {MAX_AUTH_FAILURES}"
            )


def resolve_paths(config: Config, source: str) -> Paths:
    """Absolute paths of everything under the data directory."""
    base = Path(config.server.data_dir) if config.server.data_dir else default_data_dir()
    if not base.is_absolute():
        anchor = Path(source).resolve().parent if source != DEFAULTS_SOURCE else Path.cwd()
        base = anchor / base
    data_dir = base.resolve()

    def pick(value: str, default: Path) -> Path:
        if not value:
            return default
        path = Path(value)
        return path if path.is_absolute() else data_dir / path

    return Paths(
        data_dir=data_dir,
        queue_dir=pick(config.queue.directory, data_dir / "queue"),
        spool_dir=pick(config.mail.spool_directory, data_dir / "spool" / "mail"),
        users_db=pick(config.users.database, data_dir / "etc" / "users.db"),
        mailauth_db=data_dir / "etc" / "mailauth.db",
        mailauth_key=data_dir / "etc" / "mailauth.key",
        aliases_file=pick(config.aliases.file, data_dir / "etc" / "aliases"),
        aliases_db=pick(config.aliases.database, data_dir / "etc" / "aliases.db"),
        stats_file=data_dir / "etc" / "statistics",
        proc_dir=data_dir / "proc",
    )
