"""The mailauth database: key handling, file modes, passwords, APOP, imports."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.auth.mailauth import (
    KEY_SIZE,
    MailAuthDatabase,
    MailAuthError,
    MailAuthNotInitialized,
    apop_digest,
    crypt_available,
    crypt_hash,
    parse_popauth_line,
)

pytestmark = pytest.mark.usefixtures("cheap_hashes")

TIMESTAMP = "<1896.697170952@dbc.mtview.ca.us>"


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "etc" / "mailauth.db", tmp_path / "etc" / "mailauth.key"


@pytest.fixture
def db(paths: tuple[Path, Path]) -> Iterator[MailAuthDatabase]:
    database = MailAuthDatabase(*paths)
    database.init()
    yield database
    database.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_private_database_and_key(paths: tuple[Path, Path]) -> None:
    db_path, key_path = paths
    with MailAuthDatabase(db_path, key_path) as db:
        assert db.init() is True
        db.set_password("alice", "s3cret")
    assert mode(db_path) == 0o600
    assert mode(key_path) == 0o600
    assert len(key_path.read_bytes()) == KEY_SIZE
    wal = db_path.with_name(db_path.name + "-wal")
    if wal.exists():
        assert mode(wal) == 0o600


def test_init_is_idempotent_and_keeps_the_key(paths: tuple[Path, Path]) -> None:
    db_path, key_path = paths
    with MailAuthDatabase(db_path, key_path) as db:
        db.init()
        db.set_password("alice", "s3cret")
    key = key_path.read_bytes()
    with MailAuthDatabase(db_path, key_path) as again:
        assert again.init() is False
        assert again.verify("alice", "s3cret")
        assert again.apop_secret("alice") == "s3cret"
    assert key_path.read_bytes() == key


def test_init_refuses_a_new_key_when_secrets_exist(paths: tuple[Path, Path]) -> None:
    db_path, key_path = paths
    with MailAuthDatabase(db_path, key_path) as db:
        db.init()
        db.set_password("alice", "s3cret")
    key_path.unlink()
    with MailAuthDatabase(db_path, key_path) as db, pytest.raises(MailAuthError, match="missing"):
        db.init()
    assert not key_path.exists()


def test_bad_key_file_is_an_error(paths: tuple[Path, Path]) -> None:
    db_path, key_path = paths
    key_path.parent.mkdir(parents=True)
    key_path.write_bytes(b"short")
    with MailAuthDatabase(db_path, key_path) as db, pytest.raises(MailAuthError, match="32"):
        db.init()


def test_use_before_init_is_reported(paths: tuple[Path, Path]) -> None:
    with MailAuthDatabase(*paths) as db:
        with pytest.raises(MailAuthNotInitialized):
            db.has("alice")
        with pytest.raises(MailAuthNotInitialized):
            db.check()
    assert not paths[0].exists()


def test_verify(db: MailAuthDatabase) -> None:
    db.set_password("Alice", "correct horse")
    assert db.has("alice") and db.has("ALICE")
    assert db.verify("alice", "correct horse")
    assert not db.verify("alice", "correct horsE")
    assert not db.verify("alice", "")
    assert not db.verify("bob", "correct horse")
    assert not db.verify("../bad name", "x")
    db.set_password("alice", "new one")
    assert not db.verify("alice", "correct horse")
    assert db.verify("alice", "new one")
    assert db.users() == ["alice"]


def test_empty_password_refused(db: MailAuthDatabase) -> None:
    with pytest.raises(ValueError):
        db.set_password("alice", "")


def test_delete(db: MailAuthDatabase) -> None:
    db.set_password("alice", "pw")
    assert db.delete("alice") is True
    assert db.delete("alice") is False
    assert not db.has("alice")
    assert db.apop_secret("alice") is None


def test_apop_digest_matches_rfc1939_example() -> None:
    # RFC 1939 §7: secret "tanstaaf" with this timestamp.
    assert apop_digest(TIMESTAMP, "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb"


def test_verify_apop(db: MailAuthDatabase) -> None:
    db.set_password("mrose", "tanstaaf")
    digest = hashlib.md5((TIMESTAMP + "tanstaaf").encode()).hexdigest()
    assert db.apop_secret("mrose") == "tanstaaf"
    assert db.verify_apop("mrose", TIMESTAMP, digest)
    assert db.verify_apop("mrose", TIMESTAMP, digest.upper())
    assert not db.verify_apop("mrose", "<other@host>", digest)
    assert not db.verify_apop("mrose", TIMESTAMP, "0" * 32)
    assert not db.verify_apop("mrose", TIMESTAMP, "not hex ü")
    assert not db.verify_apop("nobody", TIMESTAMP, digest)


def test_secret_is_not_stored_in_clear(db: MailAuthDatabase, paths: tuple[Path, Path]) -> None:
    password = "Very-Distinctive-Password-42"
    db.set_password("alice", password)
    db.close()
    data = b"".join(
        p.read_bytes() for p in paths[0].parent.iterdir() if p.name.startswith("mailauth.db")
    )
    assert b"alice" in data  # the row is really there
    assert password.encode() not in data
    assert password.encode("utf-16-le") not in data


def test_secret_bound_to_its_user(db: MailAuthDatabase) -> None:
    db.set_password("alice", "alice-secret")
    db.set_password("bob", "bob-secret")
    conn = db._connection()
    (alice_secret,) = conn.execute("SELECT secret FROM mailauth WHERE name='alice'").fetchone()
    conn.execute("UPDATE mailauth SET secret = ? WHERE name = 'bob'", (alice_secret,))
    assert db.apop_secret("bob") is None  # moved ciphertext fails authentication
    assert db.apop_secret("alice") == "alice-secret"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("alice:pw", ("alice", "pw")),
        ("Alice:pass word:with:colons\n", ("alice", "pass word:with:colons")),
        ("bob   secret\r\n", ("bob", "secret")),
        ("  carol\tsecret two  ", ("carol", "secret two")),
        ("", None),
        ("   \n", None),
        ("# comment: not a user", None),
    ],
)
def test_parse_popauth_line(line: str, expected: tuple[str, str] | None) -> None:
    assert parse_popauth_line(line) == expected


@pytest.mark.parametrize("line", ["justaname", "alice:", "alice:   ", "-bad:pw", "a"])
def test_parse_popauth_line_rejects(line: str) -> None:
    with pytest.raises(ValueError):
        parse_popauth_line(line)


def test_import_popauth_reports_bad_lines(db: MailAuthDatabase) -> None:
    errors: list[tuple[int, str, str]] = []
    text = [
        "# popauth dump\n",
        "alice:alice pw\n",
        "\n",
        "garbage\n",
        "bob bob-pw\n",
        "carol:\n",
        "dave:dave-pw\n",
    ]
    count = db.import_popauth(text, on_error=lambda n, line, why: errors.append((n, line, why)))
    assert count == 3
    assert [(n, line) for n, line, _ in errors] == [(4, "garbage"), (6, "carol:")]
    assert db.users() == ["alice", "bob", "dave"]
    assert db.verify("alice", "alice pw")
    assert db.apop_secret("bob") == "bob-pw"


def test_import_without_callback_logs(
    db: MailAuthDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    assert db.import_popauth(["nonsense"]) == 0
    assert "line 1 skipped" in caplog.text


@pytest.mark.skipif(not crypt_available(), reason="no crypt(3)")
def test_legacy_crypt_hash_upgrades_on_first_good_login(db: MailAuthDatabase) -> None:
    legacy = crypt_hash("mhpass", "ab")
    assert legacy is not None
    db.set_legacy_crypt("mrose", legacy)
    assert db.has("mrose")
    assert db.apop_secret("mrose") is None
    assert not db.verify("mrose", "wrong")
    assert db.apop_secret("mrose") is None
    assert db.verify("mrose", "mhpass")
    assert db.apop_secret("mrose") == "mhpass"  # upgraded: now an argon2 hash + secret
    assert db.verify("mrose", "mhpass")


def test_legacy_hash_that_crypt_cannot_use(db: MailAuthDatabase) -> None:
    db.set_legacy_crypt("old", "!!not a hash!!")
    assert not db.verify("old", "anything")
