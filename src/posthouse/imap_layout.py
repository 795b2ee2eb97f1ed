"""Where a configuration puts the IMAP store (chapter 12.5): ``[imap] configdirectory`` and
the partitions, ``partition-default`` and every ``partition-NAME`` (12.5.9).

Apart from :mod:`posthouse.app` so that the store's offline tools (``reconstruct``,
``mailboxes backup``) find the store without loading the servers."""

from __future__ import annotations

from pathlib import Path

from posthouse.config.schema import Settings
from posthouse.store.fs.layout import FsLayout

__all__ = ["imap_config_dir", "store_layout"]


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
