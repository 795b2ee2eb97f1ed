"""Applying a new configuration: check it and write it.

``posthouse setup`` builds the text from the worksheet answers
(:mod:`posthouse.admin.setup_answers`); these operations check the result as the daemon
would and replace the file atomically (keeping ``FILE.bak``).  Restarting the daemon
afterwards is :mod:`posthouse.admin.daemon`'s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from posthouse.admin.errors import CannotWrite, NotConfigured
from posthouse.admin.setup_answers import check_config
from posthouse.config.load import ConfigError, parse_config, resolve_paths
from posthouse.config.schema import Config, Settings
from posthouse.durable import sync_directory

__all__ = [
    "InvalidConfiguration",
    "check_configuration",
    "settings_of",
    "write_atomically",
]


class InvalidConfiguration(NotConfigured):
    """The new configuration fails the daemon's start-up checks (one line per problem)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def settings_of(config: Config, path: Path) -> Settings:
    """The settings the daemon will load from *config* written as the file *path*."""
    source = os.path.abspath(path)
    return Settings(config=config, paths=resolve_paths(config, source), source=source)


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
    with contextlib.suppress(OSError):  # some file systems refuse to fsync a directory
        sync_directory(directory)
    return backup
