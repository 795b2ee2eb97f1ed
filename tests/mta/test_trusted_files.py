"""sendmail's safety rules for .forward and :include: files (issue 8, item 2).

Tests marked ``needs_root`` create files really owned by another account (``nobody``,
uid 65534) with ``os.chown``; CI runs as root.  The others simulate owners and modes
through the ``fstat`` seam, so the rules are also checked without root.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from posthouse.mta.identity import Identity
from posthouse.mta.trusted_files import Refusal, TrustedFile, read_forward, read_include

NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to chown files to another uid (CI runs as root)"
)


def user_at(home: Path, uid: int = NOBODY, name: str = "nobody") -> Identity:
    return Identity(uid=uid, gid=uid, user=name, home=str(home), shell="/bin/sh")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home directory below ``tmp_path`` (the chain is checked from ``tmp_path``)."""
    directory = tmp_path / "home" / "alice"
    directory.mkdir(parents=True)
    for d in (tmp_path, tmp_path / "home", directory):
        d.chmod(0o755)
    return directory


def write(path: Path, text: str = "|/usr/bin/vacation alice\n", mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def refused(result: object, words: str) -> Refusal:
    assert isinstance(result, Refusal), result
    assert words in result.reason
    return result


def as_owner(
    owners: dict[int, int], modes: dict[int, int] | None = None
) -> Callable[[int], os.stat_result]:
    """An fstat seam: inode -> simulated owner (and mode)."""

    def fstat(fd: int) -> os.stat_result:
        st = os.fstat(fd)
        fields = list(st[:10])
        if st.st_ino in owners:
            fields[stat.ST_UID] = owners[st.st_ino]
        if modes and st.st_ino in modes:
            fields[stat.ST_MODE] = stat.S_IFMT(st.st_mode) | modes[st.st_ino]
        return os.stat_result(fields)

    return fstat


# --- simulated owners (any user) -----------------------------------------------------------


def test_forward_owned_by_its_user_is_honoured(home: Path, tmp_path: Path) -> None:
    forward = write(home / ".forward")
    fake = as_owner({forward.stat().st_ino: NOBODY, home.stat().st_ino: NOBODY})
    user = user_at(home)
    result = read_forward(forward, user, top=tmp_path, fstat=fake)
    assert isinstance(result, TrustedFile)
    assert result.text == "|/usr/bin/vacation alice\n"
    assert result.identity == user and result.owner == NOBODY


def test_forward_of_someone_else_is_refused_with_a_log_line(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    forward = write(home / ".forward")
    fake = as_owner({forward.stat().st_ino: 4242, home.stat().st_ino: NOBODY})
    with caplog.at_level(logging.WARNING, logger="posthouse.mta.trusted_files"):
        result = read_forward(forward, user_at(home), top=tmp_path, fstat=fake)
    refused(result, "owned by uid 4242, not by nobody (uid 65534)")
    assert f"forward file {forward} refused: owned by uid 4242" in caplog.text


def test_directory_owned_by_someone_else_is_refused(home: Path, tmp_path: Path) -> None:
    forward = write(home / ".forward")
    fake = as_owner({forward.stat().st_ino: NOBODY, home.stat().st_ino: 4242})
    result = read_forward(forward, user_at(home), top=tmp_path, fstat=fake)
    refused(result, f"directory {home} owned by uid 4242")


@pytest.mark.parametrize(
    ("mode", "words"), [(0o664, "group writable file"), (0o646, "world writable file")]
)
def test_writable_forward_is_refused(
    home: Path, tmp_path: Path, mode: int, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    forward = write(home / ".forward", mode=mode)
    with caplog.at_level(logging.WARNING, logger="posthouse.mta.trusted_files"):
        result = read_forward(forward, Identity.current(), top=tmp_path)
    refused(result, words)
    assert words in caplog.text


@pytest.mark.parametrize(
    ("mode", "words"),
    [(0o775, "group writable directory"), (0o1777, "world writable directory")],
)
def test_writable_directory_is_refused_even_sticky(
    home: Path, tmp_path: Path, mode: int, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    forward = write(home / ".forward")
    home.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="posthouse.mta.trusted_files"):
        result = read_forward(forward, Identity.current(), top=tmp_path)
    refused(result, f"{words} {home}")
    assert words in caplog.text


def test_writable_ancestor_is_refused(home: Path, tmp_path: Path) -> None:
    forward = write(home / ".forward")
    (tmp_path / "home").chmod(0o777)
    result = read_forward(forward, Identity.current(), top=tmp_path)
    refused(result, f"world writable directory {tmp_path / 'home'}")


def test_the_default_chain_starts_at_the_root(tmp_path: Path) -> None:
    """``tmp_path`` is below ``/tmp`` (world writable, sticky): refused from ``/``."""
    if not os.stat("/tmp").st_mode & stat.S_IWOTH:
        pytest.skip("/tmp is not world writable here")
    forward = write(tmp_path / ".forward")
    result = read_forward(forward, Identity.current())
    refused(result, "world writable directory /tmp")


def test_symlinked_forward_is_refused(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = write(home / "elsewhere")
    (home / ".forward").symlink_to(target)
    with caplog.at_level(logging.WARNING, logger="posthouse.mta.trusted_files"):
        result = read_forward(home / ".forward", Identity.current(), top=tmp_path)
    refused(result, "is a symbolic link")
    assert "is a symbolic link" in caplog.text


def test_symlinked_home_path_is_followed_then_checked(home: Path, tmp_path: Path) -> None:
    """``/home -> /srv/home`` style links in the home path from passwd are resolved."""
    write(home / ".forward")
    (tmp_path / "link").symlink_to(home)
    result = read_forward(tmp_path / "link" / ".forward", Identity.current(), top=tmp_path)
    assert isinstance(result, TrustedFile)


def test_hard_linked_forward_is_refused(home: Path, tmp_path: Path) -> None:
    forward = write(home / ".forward")
    os.link(forward, home / "another-name")
    refused(read_forward(forward, Identity.current(), top=tmp_path), "has 2 hard links")


def test_fifo_is_refused_without_blocking(home: Path, tmp_path: Path) -> None:
    os.mkfifo(home / ".forward", 0o600)
    refused(read_forward(home / ".forward", Identity.current(), top=tmp_path), "not a regular")


def test_directory_instead_of_file_is_refused(home: Path, tmp_path: Path) -> None:
    (home / ".forward").mkdir()
    result = read_forward(home / ".forward", Identity.current(), top=tmp_path)
    refused(result, "not a regular file")


def test_missing_forward_is_not_a_refusal(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="posthouse.mta.trusted_files"):
        assert read_forward(home / ".forward", Identity.current(), top=tmp_path) is None
    assert caplog.text == ""


def test_too_large_and_relative_paths_are_refused(home: Path, tmp_path: Path) -> None:
    forward = write(home / ".forward", "x" * 100)
    refused(read_forward(forward, Identity.current(), top=tmp_path, max_bytes=99), "larger")
    refused(read_forward(Path(".forward"), Identity.current()), "not an absolute path")
    refused(read_forward(forward, Identity.current(), top=home / "sub"), "not below")


def test_include_runs_as_its_owner_or_the_parent_when_root_owns_it(
    home: Path, tmp_path: Path
) -> None:
    listing = write(home / "list", "alice\n|/bin/cat\n")
    parent = user_at(home, 777, "default")
    owned = as_owner({listing.stat().st_ino: NOBODY, home.stat().st_ino: NOBODY})
    result = read_include(listing, parent=parent, top=tmp_path, fstat=owned)
    assert isinstance(result, TrustedFile) and result.owner == NOBODY
    assert result.identity.uid == NOBODY and result.identity.user == "nobody"
    root_owned = as_owner({listing.stat().st_ino: 0, home.stat().st_ino: 0})
    result = read_include(listing, parent=parent, top=tmp_path, fstat=root_owned)
    assert isinstance(result, TrustedFile) and result.identity == parent


def test_include_owner_without_passwd_entry_gets_no_valid_shell(home: Path, tmp_path: Path) -> None:
    listing = write(home / "list", "|/bin/cat\n")
    fake = as_owner({listing.stat().st_ino: 4_000_123, home.stat().st_ino: 4_000_123})
    result = read_include(listing, parent=Identity.current(), top=tmp_path, fstat=fake)
    assert isinstance(result, TrustedFile)
    assert result.identity.uid == 4_000_123 and result.identity.shell == "(no passwd entry)"


def test_include_in_a_directory_of_another_owner_is_refused(home: Path, tmp_path: Path) -> None:
    listing = write(home / "list")
    fake = as_owner({listing.stat().st_ino: NOBODY, home.stat().st_ino: 4242})
    result = read_include(listing, parent=Identity.current(), top=tmp_path, fstat=fake)
    refusal = refused(result, f"directory {home} owned by uid 4242")
    assert not refusal.temporary
    assert refusal.error().status == "5.3.0"


def test_missing_include_is_a_temporary_refusal(home: Path, tmp_path: Path) -> None:
    result = refused(
        read_include(home / "nothing", parent=Identity.current(), top=tmp_path), "no such file"
    )
    assert result.temporary and result.error().status == "4.3.0"


def test_world_writable_include_is_refused(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listing = write(home / "list", mode=0o666)
    with caplog.at_level(logging.WARNING, logger="posthouse.mta.trusted_files"):
        result = read_include(listing, parent=Identity.current(), top=tmp_path)
    refused(result, "world writable file")
    assert f"include file {listing} refused: world writable file" in caplog.text


# --- real owners (root) ----------------------------------------------------------------------


@needs_root
def test_real_forward_owned_by_nobody_is_honoured(home: Path, tmp_path: Path) -> None:
    forward = write(home / ".forward")
    os.chown(forward, NOBODY, NOBODY)
    os.chown(home, NOBODY, NOBODY)
    result = read_forward(forward, user_at(home), top=tmp_path)
    assert isinstance(result, TrustedFile) and result.owner == NOBODY


@needs_root
def test_real_forward_owned_by_root_is_honoured_as_the_user(home: Path, tmp_path: Path) -> None:
    forward = write(home / ".forward")
    os.chown(home, NOBODY, NOBODY)
    result = read_forward(forward, user_at(home), top=tmp_path)
    assert isinstance(result, TrustedFile) and result.identity.uid == NOBODY


@needs_root
def test_real_forward_owned_by_another_account_is_refused(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    forward = write(home / ".forward")
    os.chown(forward, NOBODY, NOBODY)
    with caplog.at_level(logging.WARNING, logger="posthouse.mta.trusted_files"):
        result = read_forward(forward, user_at(home, 4242, "alice"), top=tmp_path)
    refused(result, "owned by uid 65534, not by alice (uid 4242)")
    assert "refused" in caplog.text


@needs_root
def test_real_home_owned_by_another_account_is_refused(home: Path, tmp_path: Path) -> None:
    forward = write(home / ".forward")
    os.chown(forward, NOBODY, NOBODY)
    os.chown(home, 4242, 4242)
    refused(read_forward(forward, user_at(home), top=tmp_path), "owned by uid 4242")


@needs_root
def test_real_include_owned_by_nobody_runs_as_nobody(home: Path, tmp_path: Path) -> None:
    listing = write(home / "list", "|/bin/cat\n")
    os.chown(listing, NOBODY, NOBODY)
    result = read_include(listing, parent=Identity.current(), top=tmp_path)
    assert isinstance(result, TrustedFile)
    assert result.identity == Identity.for_uid(NOBODY, NOBODY)
