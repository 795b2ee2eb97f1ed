"""System accounts: passwd lookups and PAM checks through ctypes."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

import pytest

from posthouse.auth import system
from posthouse.auth.system import pam_authenticate, system_user
from posthouse.auth.users import ServiceType


def _an_account() -> pwd.struct_passwd:
    """An existing account whose name is a valid posthouse name."""
    entry = pwd.getpwuid(os.getuid())
    if entry.pw_name != entry.pw_name.lower():
        pytest.skip("current account name has capitals")
    return entry


def test_system_user_found_within_uid_range() -> None:
    entry = _an_account()
    user = system_user(entry.pw_name, min_uid=entry.pw_uid, max_uid=entry.pw_uid)
    assert user is not None
    assert user.name == entry.pw_name
    assert (user.uid, user.gid, user.home) == (entry.pw_uid, entry.pw_gid, entry.pw_dir)
    assert user.source == "system"
    assert user.service_type is ServiceType.UNIX
    assert user.password_hash is None


def test_system_user_outside_uid_range_is_none() -> None:
    entry = _an_account()
    assert system_user(entry.pw_name, min_uid=entry.pw_uid + 1, max_uid=entry.pw_uid + 10) is None
    assert system_user(entry.pw_name, min_uid=0, max_uid=entry.pw_uid - 1) is None


def test_default_range_excludes_root() -> None:
    assert system_user("root") is None


def test_system_user_missing_or_invalid() -> None:
    assert system_user("no-such-account-posthouse") is None
    assert system_user("bad name") is None
    assert system_user("") is None


needs_pam = pytest.mark.skipif(not system.pam_available(), reason="libpam not available")


@pytest.fixture
def pam_confdir(tmp_path: Path) -> Path:
    """A private PAM configuration whose service "posthouse-test" accepts password "right".

    pam_exec hands the password, obtained through posthouse's conversation
    function, to a script; pam_faildelay asks for a 3-second delay on failure.
    """
    if not system.pam_available():
        pytest.skip("libpam not available")
    modules = [
        Path(d) / "pam_exec.so"
        for d in ("/usr/lib/x86_64-linux-gnu/security", "/usr/lib64/security", "/lib/security")
    ]
    if not any(module.exists() for module in modules):
        pytest.skip("pam_exec.so not found")
    script = tmp_path / "check.sh"
    script.write_text('#!/bin/sh\nIFS= read -r pw\n[ "$pw" = "right" ]\n')
    script.chmod(0o755)
    confdir = tmp_path / "pam.d"
    confdir.mkdir()
    (confdir / "posthouse-test").write_text(
        "auth optional pam_faildelay.so delay=3000000\n"
        f"auth required pam_exec.so expose_authtok quiet {script}\n"
        "account required pam_permit.so\n"
    )
    return confdir


def test_pam_conversation_passes_the_password(pam_confdir: Path) -> None:
    assert pam_authenticate("anyone", "right", "posthouse-test", confdir=pam_confdir) is True
    assert pam_authenticate("anyone", "wrong", "posthouse-test", confdir=pam_confdir) is False
    assert pam_authenticate("anyone", "righ", "posthouse-test", confdir=pam_confdir) is False
    assert pam_authenticate("anyone", "right!", "posthouse-test", confdir=pam_confdir) is False


def test_pam_blocking_fail_delay_is_switched_off(pam_confdir: Path) -> None:
    # pam_faildelay asks for 3 s; posthouse installs a no-op PAM_FAIL_DELAY callback
    # because the Authenticator applies its own delay without holding a thread.
    start = time.monotonic()
    assert pam_authenticate("anyone", "wrong", "posthouse-test", confdir=pam_confdir) is False
    assert time.monotonic() - start < 2.5


@needs_pam
def test_pam_rejects_wrong_password_for_real_services() -> None:
    assert pam_authenticate("root", "definitely-not-the-password") is False
    assert pam_authenticate("no-such-account-posthouse", "pw", "posthouse-test") is False


@pytest.mark.parametrize(
    ("name", "password"),
    [("anyone", "ri\0ght"), ("any\0one", "right"), ("", "right"), ("anyone", "\udc80")],
)
def test_pam_refuses_unusable_input(pam_confdir: Path, name: str, password: str) -> None:
    assert pam_authenticate(name, password, "posthouse-test", confdir=pam_confdir) is False


def test_pam_unavailable_answers_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "_load_pam", lambda: None)
    assert system.pam_available() is False
    assert pam_authenticate("root", "anything") is False
