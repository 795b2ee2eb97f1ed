"""Applying a new configuration: check it, write it, and reload a running daemon.

``posthouse setup`` builds the text from the worksheet answers
(:mod:`posthouse.admin.setup_answers`); these operations check the result as the daemon
would, replace the file atomically (keeping ``FILE.bak``), find the running daemon by its
pid file and send it SIGHUP, and say which changes only a restart applies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import stat
import tempfile
from pathlib import Path

from posthouse.admin.errors import CannotWrite, NotConfigured, StorageFailure
from posthouse.admin.setup_answers import check_config
from posthouse.config.load import ConfigError, parse_config, resolve_paths
from posthouse.config.schema import Config, MailSection

__all__ = [
    "RELOADED_MAIL_KEYS",
    "InvalidConfiguration",
    "check_configuration",
    "daemon_of",
    "reload_daemon",
    "restart_needed",
    "running_daemon",
    "write_atomically",
]

#: What ``posthouse serve`` applies on SIGHUP (see ``posthouse.app.reload``); the rest of
#: [mail] and the pseudodomains take effect when the daemon is restarted.
RELOADED_MAIL_KEYS: frozenset[str] = frozenset(
    {"local_domains", "host_aliases", "trusted_networks"}
)


class InvalidConfiguration(NotConfigured):
    """The new configuration fails the daemon's start-up checks (one line per problem)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check_configuration(text: str, path: Path) -> Config:
    """Parse *text* as the file *path* and make the checks the daemon makes when it starts.

    Raises :class:`NotConfigured` when it does not parse, :class:`InvalidConfiguration`
    when it parses but the checks fail."""
    try:
        config = parse_config(text, str(path))
    except ConfigError as exc:
        raise NotConfigured(str(exc)) from exc
    problems = check_config(config)
    if problems:
        raise InvalidConfiguration(problems)
    return config


def write_atomically(path: Path, text: str) -> Path | None:
    """Replace ``path`` by ``text`` through a temporary file and a rename.

    The previous file, if any, is kept as ``path.bak`` (returned).  A symbolic link is
    followed, so its target is what is replaced.  :class:`CannotWrite` when it fails.
    """
    try:
        return _replace(path, text)
    except OSError as exc:
        raise CannotWrite(f"{path}: cannot write: {exc.strerror or exc}") from exc


def _replace(path: Path, text: str) -> Path | None:
    target = Path(os.path.realpath(path))
    directory = target.parent
    backup: Path | None = None
    mode = 0o644
    if target.exists():
        mode = stat.S_IMODE(target.stat().st_mode)
        backup = target.with_name(target.name + ".bak")
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, mode)
        if backup is not None:
            shutil.copy2(target, backup)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return backup


def running_daemon(pid_file: Path) -> int | None:
    """The process id in ``pid_file`` if that process is alive, else None."""
    try:
        pid = int(pid_file.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by someone else: signalling will say so
    return pid


def daemon_of(config: Config, path: Path) -> int | None:
    """The running daemon serving the data directory of *config* (read from *path*)."""
    return running_daemon(resolve_paths(config, str(path)).pid_file)


def reload_daemon(pid: int) -> None:
    """Send SIGHUP to the daemon *pid*: it re-reads its configuration and the aliases."""
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise StorageFailure(
            f"cannot signal the daemon (pid {pid}): {exc.strerror or exc}"
        ) from exc


def restart_needed(old: Config, new: Config) -> list[str]:
    """Changed options that a SIGHUP does not apply (the daemon must be restarted)."""
    changed = [
        f"mail.{f.name}"
        for f in dataclasses.fields(MailSection)
        if f.name not in RELOADED_MAIL_KEYS
        and getattr(old.mail, f.name) != getattr(new.mail, f.name)
    ]
    if old.pseudodomain != new.pseudodomain:
        changed.append("pseudodomain")
    return changed
