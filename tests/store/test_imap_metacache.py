"""The in-process copy of a mailbox's metadata stays exact while another process changes the
mailbox: after every kind of change, a fetch through the copy equals a fetch from the index."""

from __future__ import annotations

from pathlib import Path

from posthouse.store.backend import FlagChange, FlagColumns, FlagMode, Viewer
from posthouse.store.fs.backend import FsBackend
from posthouse.store.fs.metacache import MetadataCache
from posthouse.store.uidset import UidSet
from tests.store.imap_helpers import layout, message, open_store, run

EVERYTHING = UidSet([(1, 10_000)])


def test_the_copy_follows_every_change_made_by_another_process(tmp_path: Path) -> None:
    store = open_store(tmp_path)  # "the other process": makes the changes
    run(store.create_user("hansen"))
    cached = FsBackend(layout(tmp_path))
    cached.metadata = MetadataCache(min_messages=1)
    plain = FsBackend(layout(tmp_path))
    plain.metadata = MetadataCache(min_messages=10**9)  # never copies: reads the index
    record = run(plain.get_mailbox("user.hansen"))
    assert record is not None
    owner, fred = Viewer("hansen"), Viewer("fred", private_seen=True)
    other = store.backend

    def same() -> None:
        for viewer in (owner, fred):
            for uids in (EVERYTHING, UidSet.of([2, 3, 7, 40])):
                got = run(cached.fetch(record.id, uids, viewer=viewer))
                assert got == run(plain.fetch(record.id, uids, viewer=viewer))
                # FETCH 1:* (UID FLAGS) takes the copy's columns
                for modseqs in (False, True):
                    columns = run(
                        cached.fetch_flags(record.id, uids, viewer=viewer, modseqs=modseqs)
                    )
                    assert columns == FlagColumns(
                        [m.uid for m in got],
                        [m.flags for m in got],
                        [m.modseq for m in got] if modseqs else None,
                    )
            # SELECT's UIDs come from the copy too
            snapshot = run(cached.snapshot(record.id, viewer=viewer))
            assert list(snapshot.uids) == list(run(plain.snapshot(record.id, viewer=viewer)).uids)

    run(other.append(record.id, [message(n) for n in range(1, 11)]))
    same()  # first load
    run(other.append(record.id, [message(11)]))
    same()  # appended
    add = FlagChange(FlagMode.ADD, frozenset({"\\Flagged", "$Work"}))
    run(other.store_flags(record.id, UidSet.of([2, 3]), add, viewer=owner))
    same()  # flags
    seen = FlagChange(FlagMode.ADD, frozenset({"\\Seen"}))
    run(other.store_flags(record.id, UidSet.of([3, 7]), seen, viewer=fred))
    same()  # fred's private seen state
    delete = FlagChange(FlagMode.ADD, frozenset({"\\Deleted"}))
    run(other.store_flags(record.id, UidSet.of([1, 7, 11]), delete, viewer=owner))
    run(other.expunge(record.id))
    same()  # expunged
    run(other.append(record.id, [message(12)]))
    run(other.store_flags(record.id, UidSet.of([12]), delete, viewer=owner))
    run(other.expunge(record.id))
    same()  # appended and expunged between two looks
    run(other.append(record.id, [message(13), message(14)]))
    run(other.store_flags(record.id, UidSet.of([2, 13]), delete, viewer=owner))
    run(other.expunge(record.id))
    run(other.store_flags(record.id, UidSet.of([4, 14]), add, viewer=owner))
    same()  # appended, expunged and changed between two looks
    run(other.append(record.id, [message(16)]))
    run(other.store_flags(record.id, UidSet.of([3]), seen, viewer=owner))
    for uids in (EVERYTHING, UidSet.of([3, 15])):  # the columns caught up before a full fetch
        columns = run(cached.fetch_flags(record.id, uids, viewer=owner))
        assert columns.flags == [m.flags for m in run(plain.fetch(record.id, uids, viewer=owner))]
    run(other.store_flags(record.id, UidSet.of([15]), delete, viewer=owner))
    run(other.expunge(record.id))
    same()
    run(cached.snapshot(record.id, viewer=owner))
    run(other.append(record.id, [message(15)]))
    same()  # the copy made by SELECT, caught up by the next look
    assert [m.uid for m in run(cached.fetch(record.id, EVERYTHING, viewer=owner))] == [
        3, 4, 5, 6, 8, 9, 10, 14, 16,
    ]  # fmt: skip


def test_columns_read_when_first_needed_line_up_after_changes(tmp_path: Path) -> None:
    """The copy made by SELECT has UIDs and flags only; MODSEQs, dates and sizes are read
    by the first fetch that needs them, after changes the copy has caught up with."""
    store = open_store(tmp_path)
    run(store.create_user("hansen"))
    cached = FsBackend(layout(tmp_path))
    cached.metadata = MetadataCache(min_messages=1)
    plain = FsBackend(layout(tmp_path))
    plain.metadata = MetadataCache(min_messages=10**9)
    record = run(plain.get_mailbox("user.hansen"))
    assert record is not None
    owner, other = Viewer("hansen"), store.backend
    flag = FlagChange(FlagMode.ADD, frozenset({"\\Flagged", "$Work"}))
    delete = FlagChange(FlagMode.ADD, frozenset({"\\Deleted"}))

    def expected(modseqs: bool) -> FlagColumns:
        metas = run(plain.fetch(record.id, EVERYTHING, viewer=owner))
        return FlagColumns(
            [m.uid for m in metas],
            [m.flags for m in metas],
            [m.modseq for m in metas] if modseqs else None,
        )

    run(other.append(record.id, [message(n) for n in range(1, 8)]))
    run(other.store_flags(record.id, UidSet.of([2]), flag, viewer=owner))
    run(cached.snapshot(record.id, viewer=owner))  # the copy: UIDs and flags
    run(other.store_flags(record.id, UidSet.of([3, 5]), flag, viewer=owner))
    run(other.store_flags(record.id, UidSet.of([4]), delete, viewer=owner))
    run(other.expunge(record.id))
    run(other.append(record.id, [message(8)]))
    assert run(cached.fetch_flags(record.id, EVERYTHING, viewer=owner)) == expected(False)
    run(other.store_flags(record.id, UidSet.of([1, 8]), flag, viewer=owner))
    assert run(cached.fetch_flags(record.id, EVERYTHING, viewer=owner, modseqs=True)) == expected(
        True
    )
    run(other.store_flags(record.id, UidSet.of([6]), delete, viewer=owner))
    run(other.expunge(record.id))
    run(other.append(record.id, [message(9)]))
    assert run(cached.fetch(record.id, EVERYTHING, viewer=owner)) == run(
        plain.fetch(record.id, EVERYTHING, viewer=owner)
    )
    run(other.store_flags(record.id, UidSet.of([9, 2]), delete, viewer=owner))
    run(other.append(record.id, [message(10)]))
    assert run(cached.fetch_flags(record.id, EVERYTHING, viewer=owner, modseqs=True)) == expected(
        True
    )
    assert run(cached.fetch(record.id, EVERYTHING, viewer=owner)) == run(
        plain.fetch(record.id, EVERYTHING, viewer=owner)
    )
