"""Login password hashing and verification."""

from __future__ import annotations

import pytest

from posthouse.auth.passwords import hash_password, needs_rehash, verify_password


def test_hash_is_argon2id_and_verifies() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct hors")
    assert not verify_password(stored, "")


def test_same_password_gets_different_salts() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second
    assert verify_password(first, "pw")
    assert verify_password(second, "pw")


def test_unicode_password() -> None:
    stored = hash_password("pässwörd-ключ")
    assert verify_password(stored, "pässwörd-ключ")
    assert not verify_password(stored, "passwort-ключ")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=65536,t=3,p=4$bad",
        "$2b$12$abcdefghijklmnopqrstuuS1aJ3y2aE8n2Vn6hFf0mA2cH6hJ7b2e",  # bcrypt
        "$argon2id$v=19$m=65536,t=3,p=4$\udc80$\udc80",
        "\x00\x00",
    ],
)
def test_garbage_hash_is_false_not_an_exception(garbage: str) -> None:
    assert verify_password(garbage, "anything") is False


def test_unencodable_password_is_false() -> None:
    stored = hash_password("pw")
    assert verify_password(stored, "\udc80") is False


def test_needs_rehash() -> None:
    assert not needs_rehash(hash_password("pw"))
    assert needs_rehash("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
    assert needs_rehash("garbage")
