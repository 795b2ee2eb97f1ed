"""Tests for posthouse.mta.aliasdb: newaliases and the live-reloading reader."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from posthouse.mta.aliasdb import AliasDatabase, AliasDatabaseError, build_alias_database
from posthouse.mta.aliases import AliasSyntaxError


def write_and_build(tmp_path: Path, text: str) -> tuple[Path, int]:
    src = tmp_path / "aliases"
    src.write_text(text, encoding="utf-8")
    db = tmp_path / "aliases.db"
    return db, build_alias_database(src, db)


def test_build_and_lookup(tmp_path: Path) -> None:
    db, count = write_and_build(
        tmp_path,
        "# system aliases\nPostmaster: root\nstaff: alice,\n  bob@Other.Host,\n"
        '  "|/usr/bin/archive a,b"\n',
    )
    assert count == 2
    with AliasDatabase(db) as adb:
        assert adb.lookup("postmaster") == ("root",)
        assert adb.lookup("POSTMASTER") == ("root",)
        assert adb.lookup("staff") == ("alice", "bob@Other.Host", "|/usr/bin/archive a,b")
        assert adb.lookup("nobody") is None


def test_database_file_is_world_readable_and_no_temp_files_left(tmp_path: Path) -> None:
    db, _ = write_and_build(tmp_path, "a: b\n")
    assert stat.S_IMODE(db.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aliases", "aliases.db"]


def test_missing_database_behaves_as_empty_then_appears(tmp_path: Path) -> None:
    db = tmp_path / "aliases.db"
    adb = AliasDatabase(db)
    assert adb.lookup("root") is None
    (tmp_path / "aliases").write_text("root: admin\n", encoding="utf-8")
    build_alias_database(tmp_path / "aliases", db)
    assert adb.lookup("root") == ("admin",)
    db.unlink()
    assert adb.lookup("root") is None
    adb.close()


def test_rebuild_is_seen_without_restart(tmp_path: Path) -> None:
    db, _ = write_and_build(tmp_path, "root: admin\nold: x\n")
    adb = AliasDatabase(db)
    assert adb.lookup("root") == ("admin",)
    assert adb.lookup("new") is None

    # newaliases run with changed content; the same object must see it.
    _, count = write_and_build(tmp_path, "root: admin, backup\nnew: y\n")
    assert count == 2
    assert adb.lookup("new") == ("y",)
    assert adb.lookup("root") == ("admin", "backup")
    assert adb.lookup("old") is None
    adb.close()


def test_rebuild_with_same_size_content_is_seen(tmp_path: Path) -> None:
    db, _ = write_and_build(tmp_path, "a: x\n")
    adb = AliasDatabase(db)
    for value in ("y", "z", "w"):
        write_and_build(tmp_path, f"a: {value}\n")
        assert adb.lookup("a") == (value,)
    adb.close()


def test_syntax_error_keeps_old_database(tmp_path: Path) -> None:
    db, _ = write_and_build(tmp_path, "root: admin\n")
    before = db.stat()
    adb = AliasDatabase(db)
    assert adb.lookup("root") == ("admin",)
    src = tmp_path / "aliases"
    src.write_text("root: admin\nbroken\n", encoding="utf-8")
    with pytest.raises(AliasSyntaxError) as info:
        build_alias_database(src, db)
    assert str(info.value) == f"{src}:2: missing ':' after alias name"
    after = db.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert adb.lookup("root") == ("admin",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aliases", "aliases.db"]
    adb.close()


def test_invalid_utf8_is_a_syntax_error_with_line(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    src.write_bytes(b"a: b\nc: \xff\n")
    with pytest.raises(AliasSyntaxError) as info:
        build_alias_database(src, tmp_path / "aliases.db")
    assert info.value.line == 2
    assert not (tmp_path / "aliases.db").exists()


def test_missing_aliases_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build_alias_database(tmp_path / "nope", tmp_path / "aliases.db")
    assert list(tmp_path.iterdir()) == []


def test_at_most_one_stat_per_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db, _ = write_and_build(tmp_path, "a: b\n")
    adb = AliasDatabase(db)
    adb.lookup("a")  # first open may stat more than once (stat, open, stat again)
    calls: list[Any] = []
    real_stat = os.stat

    def counting_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        calls.append(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    for _ in range(10):
        assert adb.lookup("a") == ("b",)
    assert len([c for c in calls if Path(c) == db.absolute()]) == 10
    adb.close()


def test_answers_are_read_once_per_database_file(tmp_path: Path) -> None:
    db, _ = write_and_build(tmp_path, "a: b\n")
    adb = AliasDatabase(db)
    assert adb.lookup("a") == ("b",)
    statements: list[str] = []
    assert adb._conn is not None
    adb._conn.set_trace_callback(statements.append)
    for _ in range(10):
        assert adb.lookup("A") == ("b",)
        assert adb.lookup("nobody") is None
    assert [s for s in statements if s.startswith("SELECT")] == [
        "SELECT targets FROM aliases WHERE name = 'nobody'"
    ]
    write_and_build(tmp_path, "a: c\nnobody: d\n")  # a new file: nothing kept is used
    assert adb.lookup("a") == ("c",)
    assert adb.lookup("nobody") == ("d",)
    adb.close()


def test_corrupt_database_raises(tmp_path: Path) -> None:
    db = tmp_path / "aliases.db"
    db.write_bytes(b"this is not sqlite" * 100)
    adb = AliasDatabase(db)
    with pytest.raises(AliasDatabaseError):
        adb.lookup("a")
    adb.close()


def test_foreign_sqlite_database_raises(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "aliases.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    with AliasDatabase(db) as adb, pytest.raises(AliasDatabaseError):
        adb.lookup("a")


def test_lookup_after_close_raises(tmp_path: Path) -> None:
    db, _ = write_and_build(tmp_path, "a: b\n")
    adb = AliasDatabase(db)
    adb.close()
    adb.close()  # idempotent
    with pytest.raises(ValueError):
        adb.lookup("a")


def test_threads_share_one_reader(tmp_path: Path) -> None:
    db, _ = write_and_build(tmp_path, "a: b\n")
    adb = AliasDatabase(db)
    failures: list[object] = []

    def worker() -> None:
        for _ in range(200):
            result = adb.lookup("a")
            if result != ("b",):
                failures.append(result)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):
        write_and_build(tmp_path, "a: b\n")
    for t in threads:
        t.join()
    assert failures == []
    adb.close()


# -- many processes reading while newaliases rebuilds ---------------------------------

FILLER = "".join(f"filler{i}: user{i}, user{i}@example.org\n" for i in range(300))


def _aliases_text(version: int) -> str:
    return f"common: everyone\nversion: v{version}\n{FILLER}"


def _reader(
    db_path: str,
    ready: Any,
    stop: Any,
    results: Any,
) -> None:
    adb = AliasDatabase(Path(db_path))
    lookups = 0
    versions: list[int] = []
    problems: list[str] = []
    try:
        while True:
            # Once stop is seen, this round's lookups start after the last rebuild.
            final = stop.is_set()
            common = adb.lookup("common")
            version = adb.lookup("version")
            lookups += 1
            if lookups == 1:
                ready.set()  # the reader now has the initial database open
            if common != ("everyone",):
                problems.append(f"common={common!r}")
            if version is None or len(version) != 1:
                problems.append(f"version={version!r}")
            else:
                number = int(version[0][1:])
                if versions and number < versions[-1]:
                    problems.append(f"went back from v{versions[-1]} to v{number}")
                if not versions or versions[-1] != number:
                    versions.append(number)
            if final:
                break
    except Exception as exc:  # report everything to the parent
        problems.append(repr(exc))
        ready.set()
    finally:
        adb.close()
    results.put((lookups, versions, problems[:10]))


def test_many_processes_read_while_rebuilding(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    db = tmp_path / "aliases.db"
    src.write_text(_aliases_text(0), encoding="utf-8")
    build_alias_database(src, db)

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    results = ctx.Queue()
    readers = []
    events = []
    for _ in range(3):
        ready = ctx.Event()
        proc = ctx.Process(target=_reader, args=(str(db), ready, stop, results))
        proc.start()
        readers.append(proc)
        events.append(ready)
    for ready in events:
        assert ready.wait(timeout=60)

    rebuilds = 60
    for version in range(1, rebuilds + 1):
        src.write_text(_aliases_text(version), encoding="utf-8")
        build_alias_database(src, db)
    stop.set()

    outcomes = [results.get(timeout=60) for _ in readers]
    for proc in readers:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    for lookups, versions, problems in outcomes:
        assert problems == []
        # Each reader started on the first database and, without reopening anything
        # itself, ended on the last one.
        assert versions[0] == 0
        assert versions[-1] == rebuilds
        assert lookups >= 2
    # No temporary files are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aliases", "aliases.db"]
