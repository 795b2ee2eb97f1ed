"""Where a configuration puts the IMAP store (chapter 12.5): ``[imap] configdirectory`` and
the partitions, ``partition-default`` and every ``partition-NAME`` (12.5.9).

Apart from :mod:`posthouse.app` so that the store's offline tools (``reconstruct``,
``mailboxes backup``) find the store without loading the servers."""

from __future__ import annotations

from pathlib import Path

from posthouse.config.schema import Settings
from posthouse.store.fs.layout import FsLayout

__all__ = ["store_layout"]


def store_layout(settings: Settings) -> FsLayout:
    """The store's layout under ``settings`` (relative paths from the data directory)."""
    imap = settings.config.imap
    data_dir = settings.paths.data_dir

    def pick(value: str, default: Path) -> Path:
        path = Path(value) if value else default
        return path if path.is_absolute() else data_dir / path

    partitions = {"default": pick(imap.partition_default, data_dir / "imap" / "spool")}
    partitions.update((name, pick(path, data_dir)) for name, path in imap.partitions)
    return FsLayout(
        pick(imap.configdirectory, data_dir / "imap"),
        partitions,
        default_partition=imap.defaultpartition,
    )
