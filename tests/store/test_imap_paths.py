"""No mailbox or user name reaches the file system outside the store (property tests).

Whatever a client sends as a mailbox name or a login name, the store either refuses it or
keeps everything under the configuration directory and the partitions, in folders named by
mailbox ids and files named by escaped user names."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthouse.store.errors import StoreError
from posthouse.store.fs.layout import FsLayout, user_file_stem
from posthouse.store.names import InvalidName
from tests.store.imap_helpers import open_store, run

PIECES = [".", "/", "\\", "\x00", "%", "*", "~", " ", "a", "Z", "0", "-", "_", "&", "\n"]
PIECES += ["..", "../", "é", "日", "INBOX", "user", "etc"]
HOSTILE = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
NAMES = st.one_of(
    HOSTILE,
    st.text(max_size=30),
    st.sampled_from(["..", "../../etc/passwd", "INBOX/../..", "INBOX.../x", "/", "\x00", "."]),
)
MAILBOX_FILE = re.compile(r"[0-9a-f]{2}(/[0-9a-f]{32}(/([1-9][0-9]*\.|index\.db(-wal|-shm)?))?)?\Z")
CONFIG_FILE = re.compile(
    r"(mailboxes\.db(-wal|-shm)?|notify\.counters|quota(/quota\.db(-wal|-shm)?)?"
    r"|user(/[A-Za-z0-9_%-]+\.(sub|sub\.lock))?)\Z"
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(NAMES, min_size=1, max_size=5))
def test_no_mailbox_name_escapes_the_store(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "root"
        store = open_store(root)

        async def main() -> None:
            await store.create_user("hansen")
            hansen, admin = store.session("hansen"), store.session("cyrus")
            for name in names:
                for session, visible in ((hansen, f"INBOX.{name}"), (admin, name)):
                    try:
                        await session.create(visible)
                        await session.subscribe(visible)
                    except (InvalidName, StoreError):
                        pass
            await store.backend.close()

        run(main())
        assert sorted(p.name for p in Path(scratch).iterdir()) == ["root"]
        assert sorted(p.name for p in root.iterdir()) == ["imap", "partition-default"]
        for path in (root / "partition-default").rglob("*"):
            relative = path.relative_to(root / "partition-default").as_posix()
            assert MAILBOX_FILE.match(relative), relative
        for path in (root / "imap").rglob("*"):
            relative = path.relative_to(root / "imap").as_posix()
            assert CONFIG_FILE.match(relative), relative


@given(st.text(min_size=1, max_size=200))
def test_a_user_name_becomes_one_safe_file_name(user: str) -> None:
    stem = user_file_stem(user)
    assert stem not in ("", ".", "..") and "/" not in stem and "\x00" not in stem
    assert len(stem) <= 200 and re.fullmatch(r"[A-Za-z0-9_%-]+", stem)
    layout = FsLayout(Path("/store/imap"), {"default": Path("/store/p")})
    assert layout.subscriptions_file(user).parent == Path("/store/imap/user")


@given(st.text(min_size=1, max_size=50), st.text(min_size=1, max_size=50))
def test_different_users_get_different_files(a: str, b: str) -> None:
    if a != b:
        assert user_file_stem(a) != user_file_stem(b)
