"""posthouse's user database: names, service types, passwords, several processes."""

from __future__ import annotations

import concurrent.futures
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from posthouse.auth.authenticator import UserDirectory
from posthouse.auth.passwords import verify_password
from posthouse.auth.users import (
    InvalidUserName,
    NoSuchUser,
    ServiceType,
    User,
    UserDatabase,
    UserExists,
    normalize_name,
)

pytestmark = pytest.mark.usefixtures("cheap_hashes")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[UserDatabase]:
    database = UserDatabase(tmp_path / "etc" / "users.db")
    yield database
    database.close()


def test_add_and_get(db: UserDatabase) -> None:
    added = db.add("alice", "secret", ServiceType.IMAP)
    got = db.get("alice")
    assert got == added
    assert got is not None
    assert got.name == "alice"
    assert got.service_type is ServiceType.IMAP
    assert got.source == "posthouse"
    assert (got.uid, got.gid, got.home) == (None, None, None)
    assert got.password_hash is not None
    assert verify_password(got.password_hash, "secret")
    assert not verify_password(got.password_hash, "Secret")


def test_default_service_type_is_unix(db: UserDatabase) -> None:
    assert db.add("bob", "pw").service_type is ServiceType.UNIX


def test_user_without_password(db: UserDatabase) -> None:
    db.add("carol", None, ServiceType.POP)
    assert db.get("carol") == User("carol", None, ServiceType.POP, None, None, None, "posthouse")


def test_get_missing_is_none(db: UserDatabase) -> None:
    assert db.get("nobody-here") is None


def test_add_twice_raises(db: UserDatabase) -> None:
    db.add("dave", None)
    with pytest.raises(UserExists):
        db.add("dave", None)
    with pytest.raises(UserExists):
        db.add("DAVE", None)


def test_names_are_case_insensitive(db: UserDatabase) -> None:
    added = db.add("Erin.Smith", None)
    assert added.name == "erin.smith"
    for spelling in ("erin.smith", "ERIN.SMITH", "Erin.Smith", "eRiN.sMiTh"):
        user = db.get(spelling)
        assert user is not None
        assert user.name == "erin.smith"
    db.set_service_type("ERIN.smith", ServiceType.POP)
    assert db.list() == [User("erin.smith", None, ServiceType.POP, None, None, None, "posthouse")]
    db.delete("ERIN.SMITH")
    assert db.get("erin.smith") is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-dash",
        ".dot",
        "has space",
        "slash/name",
        "at@example",
        "x" * 65,
        "tab\tname",
        "new\nline",
        "ünïcode",
        "\u212aelvin",  # KELVIN SIGN, which str.lower() turns into ASCII "k"
        "semi;colon",
        "star*",
        "x.lock",  # the dot-lock of user x's mailbox
        "X.LOCK",
    ],
)
def test_invalid_names(db: UserDatabase, name: str) -> None:
    with pytest.raises(InvalidUserName):
        db.add(name, None)
    with pytest.raises(InvalidUserName):
        db.delete(name)
    with pytest.raises(InvalidUserName):
        db.set_password(name, "pw")
    with pytest.raises(InvalidUserName):
        db.set_service_type(name, ServiceType.POP)
    assert db.get(name) is None  # cannot exist; client-supplied names must not raise


@pytest.mark.parametrize("name", ["a", "0", "_x", "a-b.c_d", "x" * 64, "user1", "a.", "b-"])
def test_valid_names(db: UserDatabase, name: str) -> None:
    assert db.add(name, None).name == name
    assert normalize_name(name.upper()) == name


def test_invalid_name_is_value_error() -> None:
    assert issubclass(InvalidUserName, ValueError)


def test_list_sorted_and_pattern(db: UserDatabase) -> None:
    for name in ("bob", "alice", "albert", "carol", "al"):
        db.add(name, None)
    assert [u.name for u in db.list()] == ["al", "albert", "alice", "bob", "carol"]
    assert [u.name for u in db.list("al*")] == ["al", "albert", "alice"]
    assert [u.name for u in db.list("AL*")] == ["al", "albert", "alice"]
    assert [u.name for u in db.list("?o?")] == ["bob"]
    assert [u.name for u in db.list("[bc]*")] == ["bob", "carol"]
    assert db.list("zz*") == []
    assert [u.name for u in db.list("*")] == ["al", "albert", "alice", "bob", "carol"]


def test_delete(db: UserDatabase) -> None:
    db.add("frank", "pw")
    db.delete("frank")
    assert db.get("frank") is None
    with pytest.raises(NoSuchUser):
        db.delete("frank")


def test_set_password(db: UserDatabase) -> None:
    db.add("gina", "old")
    db.set_password("gina", "new")
    user = db.get("gina")
    assert user is not None and user.password_hash is not None
    assert verify_password(user.password_hash, "new")
    assert not verify_password(user.password_hash, "old")
    with pytest.raises(NoSuchUser):
        db.set_password("nobody", "pw")


def test_set_password_gives_passwordless_user_a_password(db: UserDatabase) -> None:
    db.add("hank", None)
    db.set_password("hank", "pw")
    user = db.get("hank")
    assert user is not None and user.password_hash is not None
    assert verify_password(user.password_hash, "pw")


def test_empty_passwords_refused(db: UserDatabase) -> None:
    with pytest.raises(ValueError, match="empty"):
        db.add("ivy", "")
    assert db.get("ivy") is None
    db.add("ivy", "pw")
    with pytest.raises(ValueError, match="empty"):
        db.set_password("ivy", "")


def test_set_service_type(db: UserDatabase) -> None:
    db.add("jack", "pw")
    for service_type in ServiceType:
        db.set_service_type("jack", service_type)
        user = db.get("jack")
        assert user is not None
        assert user.service_type is service_type
    with pytest.raises(NoSuchUser):
        db.set_service_type("nobody", ServiceType.IMAP)


def test_service_type_values_and_properties() -> None:
    assert [t.value for t in ServiceType] == [
        "unix",
        "pop",
        "pop-mailpass",
        "apop-mailpass",
        "imap",
        "imap-mailpass",
    ]
    assert {t for t in ServiceType if t.uses_imap_store} == {
        ServiceType.IMAP,
        ServiceType.IMAP_MAILPASS,
    }
    assert {t for t in ServiceType if t.uses_mail_password} == {
        ServiceType.POP_MAILPASS,
        ServiceType.APOP_MAILPASS,
        ServiceType.IMAP_MAILPASS,
    }


def test_persists_across_instances_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    with UserDatabase(path) as first:
        first.add("kate", "pw", ServiceType.POP_MAILPASS)
    with UserDatabase(path) as second:
        user = second.get("kate")
        assert user is not None
        assert user.service_type is ServiceType.POP_MAILPASS
        journal = second._conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert journal == "wal"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_two_instances_see_each_others_changes(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    with UserDatabase(path) as one, UserDatabase(path) as two:
        one.add("liam", None)
        assert two.get("liam") is not None
        two.delete("liam")
        assert one.get("liam") is None


_WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from posthouse.auth.users import UserDatabase, UserExists

    path, worker, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    db = UserDatabase(path)
    print("ready", flush=True)
    sys.stdin.readline()  # wait until every worker is ready
    for i in range(count):
        db.add(f"w{worker}-u{i}", "pw" if i == 0 else None)
    try:
        db.add("contested", None)
        print("won", flush=True)
    except UserExists:
        print("lost", flush=True)
    db.close()
    """
)


def test_concurrent_processes_adding_users(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    workers, per_worker = 6, 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(w), str(per_worker)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:  # release them all at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    outcomes = sorted(out.strip() for out, _ in results)
    assert outcomes == ["lost"] * (workers - 1) + ["won"]
    with UserDatabase(path) as db:
        names = {u.name for u in db.list()}
        expected = {f"w{w}-u{i}" for w in range(workers) for i in range(per_worker)}
        assert names == expected | {"contested"}
        with_password = db.list("w*-u0")
        assert len(with_password) == workers
        assert all(u.password_hash is not None for u in with_password)


def test_directory_remembers_found_users_briefly_and_absent_ones_never(tmp_path: Path) -> None:
    now = [100.0]
    db = UserDatabase(tmp_path / "users.db")
    directory = UserDirectory(db, exists_ttl=2.0, clock=lambda: now[0])
    assert not directory.exists("newbie")
    other = UserDatabase(tmp_path / "users.db")  # e.g. `posthouse user add` in another process
    other.add("newbie", "pw-123456")
    assert directory.exists("newbie")  # an absence was not remembered
    other.delete("newbie")
    assert directory.exists("newbie")  # a recent "yes" is
    assert directory.get("newbie") is None  # logins always ask the database
    now[0] += 2.5
    assert not directory.exists("newbie")
    other.close()
    db.close()


def test_lookups_from_many_threads_see_changes_of_other_connections(tmp_path: Path) -> None:
    db = UserDatabase(tmp_path / "users.db")
    other = UserDatabase(tmp_path / "users.db")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert not any(pool.map(lambda _i: db.get("late") is not None, range(8)))
        other.add("late", None)
        assert all(pool.map(lambda _i: db.get("late") is not None, range(8)))
    other.close()
    db.close()


def test_has_service_type_follows_changes_by_other_connections(tmp_path: Path) -> None:
    with UserDatabase(tmp_path / "users.db") as reader, UserDatabase(tmp_path / "users.db") as db:
        assert not reader.has_service_type(ServiceType.APOP_MAILPASS)
        db.add("alice", "pw", ServiceType.APOP_MAILPASS)
        assert reader.has_service_type(ServiceType.APOP_MAILPASS)
        assert not reader.has_service_type(ServiceType.IMAP)
        db.set_service_type("alice", ServiceType.POP)
        assert not reader.has_service_type(ServiceType.APOP_MAILPASS)
        reader.add("bob", None, ServiceType.APOP_MAILPASS)  # its own change too
        assert reader.has_service_type(ServiceType.APOP_MAILPASS)
