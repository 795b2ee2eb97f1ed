"""Shared fixtures for the auth tests."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from posthouse.auth import passwords


@pytest.fixture
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash with minimal argon2id costs so tests that hash a lot stay fast.

    Verification reads the parameters from each stored hash, so the code under
    test is the same; only the work factor differs.
    """
    monkeypatch.setattr(
        passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )
