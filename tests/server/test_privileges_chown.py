"""Handing the data directory to the daemon's account never follows a symbolic link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from posthouse.server.privileges import _chown_tree

NOBODY = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")


@needs_root
def test_chown_tree_changes_the_tree_and_never_what_a_link_points_to(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("root's\n")
    data = tmp_path / "data"
    (data / "spool" / "mail").mkdir(parents=True)
    (data / "spool" / "mail" / "alice").write_text("mail\n")
    (data / "link-to-file").symlink_to(secret)
    (data / "link-to-dir").symlink_to(outside)
    _chown_tree(data, NOBODY, NOBODY)
    for path in (data, data / "spool", data / "spool" / "mail", data / "spool" / "mail" / "alice"):
        assert path.stat().st_uid == NOBODY, path
    assert os.lstat(data / "link-to-file").st_uid == NOBODY  # the link itself
    assert secret.stat().st_uid == 0 and outside.stat().st_uid == 0


@needs_root
def test_chown_tree_refuses_a_root_that_is_a_link(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OSError):
        _chown_tree(link, NOBODY, NOBODY)
    assert target.stat().st_uid == 0
