"""Where a configuration puts the IMAP store (chapter 12.5): ``[imap] configdirectory`` and
the partitions, ``partition-default`` and every ``partition-NAME`` (12.5.9).

Apart from :mod:`posthouse.app` so that the store's offline tools (``reconstruct``,
``mailboxes backup``) find the store without loading the servers."""

from __future__ import annotations

from pathlib import Path

from posthouse.config.load import located_error
from posthouse.config.schema import Settings
from posthouse.store.fs.layout import FsLayout

__all__ = [
    "imap_config_dir",
    "prepare_store_directories",
    "store_directories",
    "store_layout",
]


def _from_data_dir(settings: Settings, value: str, default: Path) -> Path:
    path = Path(value) if value else default
    return path if path.is_absolute() else settings.paths.data_dir / path


def imap_config_dir(settings: Settings) -> Path:
    """The IMAP configuration directory (12.5.5): ``[imap] configdirectory``, DATA/imap."""
    data_dir = settings.paths.data_dir
    return _from_data_dir(settings, settings.config.imap.configdirectory, data_dir / "imap")


def store_layout(settings: Settings) -> FsLayout:
    """The store's layout under ``settings`` (relative paths from the data directory)."""
    imap = settings.config.imap
    data_dir = settings.paths.data_dir

    def pick(value: str, default: Path) -> Path:
        return _from_data_dir(settings, value, default)

    partitions = {"default": pick(imap.partition_default, data_dir / "imap" / "spool")}
    partitions.update((name, pick(path, data_dir)) for name, path in imap.partitions)
    return FsLayout(
        imap_config_dir(settings),
        partitions,
        default_partition=imap.defaultpartition,
    )


def store_directories(settings: Settings) -> list[tuple[str, Path]]:
    """Each directory of the store with the option that places it (``imap.configdirectory``,
    ``imap.partition-default``, ``imap.partition-NAME``)."""
    layout = store_layout(settings)
    named = [("imap.configdirectory", layout.config_dir)]
    named += [(f"imap.partition-{name}", path) for name, path in layout.partitions.items()]
    return named


def prepare_store_directories(settings: Settings) -> dict[Path, str]:
    """Make each store directory the configuration puts outside the data directory (a
    partition on another disk, 12.5.9), as the data directory is made at start-up, and
    return them (directory -> option) so that a root start hands them to ``server.run_as``
    with the data directory.

    Raises :class:`ConfigError` naming the option's file and line when one cannot be made."""
    data_dir = settings.paths.data_dir.resolve()
    outside: dict[Path, str] = {}
    for option, directory in store_directories(settings):
        if directory.resolve().is_relative_to(data_dir):
            continue  # made by the store, as the daemon's account, inside its own tree
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            problem = exc.strerror or str(exc)
            raise located_error(
                settings.source, option, f"cannot make the directory {directory}: {problem}"
            ) from exc
        outside.setdefault(directory, option)
    return outside
