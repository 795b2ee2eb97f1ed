"""The tools started as root write the IMAP store as the data directory's owner (the
daemon's account), so the daemon can still write every file they create."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.admin.deliver import DeliverRequest, deliver_message
from posthouse.admin.mailstore import ensure_inbox
from posthouse.config.load import load_settings
from posthouse.config.schema import Settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the switch is made only by root")


@pytest.fixture
def settings() -> Iterator[Settings]:
    # Not under pytest's tmp_path: its directories are private to root.
    base = Path(tempfile.mkdtemp(prefix="posthouse-owner-", dir="/var/tmp"))
    base.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    data = base / "data"
    data.mkdir()
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    config = base / "posthouse.toml"
    config.write_text(f'[server]\ndata_dir = "{data}"\nrun_as = ""\n', encoding="utf-8")
    try:
        yield load_settings(config)
    finally:
        shutil.rmtree(base)


def owners_under(directory: Path) -> set[int]:
    return {path.lstat().st_uid for path in [directory, *directory.rglob("*")]}


def test_a_new_inbox_and_a_delivered_message_belong_to_the_stores_owner(
    settings: Settings,
) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    assert ensure_inbox(settings, "jake") is True
    results = deliver_message(
        settings, DeliverRequest(("jake",), b"Subject: hi\r\n\r\nbody\r\n", "root@localhost")
    )
    assert [result.error for result in results] == [None]
    store = settings.paths.data_dir / "imap"
    assert owners_under(store) == {nobody}
    assert os.geteuid() == 0 and os.getegid() == 0  # root again after the tool's work
