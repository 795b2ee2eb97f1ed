"""`ToldFlags` answers as a plain dict of UID -> flags would, through bulk tells (kept as
lists, covering ones dropped, many folded into the dict), single tells and forgetting."""

from __future__ import annotations

import random

import pytest

from posthouse.protocols.imap import told_flags
from posthouse.protocols.imap.told_flags import ToldFlags

FLAGS = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "$Work"})]


@pytest.mark.parametrize("seed", range(20))
def test_answers_as_a_dict_would(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(told_flags, "MIN_BULK", 8)  # small lists take the bulk path
    rng = random.Random(seed)
    told, model = ToldFlags(), dict[int, frozenset[str]]()
    everything = list(range(1, 61))
    for _ in range(300):
        action = rng.random()
        if action < 0.3:  # FETCH 1:* again, or a run, or a set with holes
            kind = rng.choice(["all", "run", "holes"])
            if kind == "all":
                uids = everything
            elif kind == "run":
                low = rng.randrange(1, 50)
                uids = everything[low - 1 : low + rng.randrange(0, 20)]
            else:
                uids = sorted(rng.sample(everything, rng.randrange(0, 40)))
            flags = [rng.choice(FLAGS) for _ in uids]
            told.tell_many(uids, flags)
            model.update(zip(uids, flags, strict=True))
        elif action < 0.6:
            uid, flags = rng.choice(everything), rng.choice(FLAGS)
            told[uid] = flags
            model[uid] = flags
        elif action < 0.7:
            uid = rng.choice(everything)
            told.pop(uid, None)
            model.pop(uid, None)
        else:
            uid = rng.randrange(0, 70)
            assert told.get(uid) == model.get(uid), uid
    assert [told.get(uid) for uid in range(70)] == [model.get(uid) for uid in range(70)]


def test_a_repeated_full_tell_keeps_one_list_and_lists_are_not_copied() -> None:
    told = ToldFlags()
    uids = list(range(1, 5001))
    for _ in range(10):
        flags = [FLAGS[1]] * len(uids)
        told.tell_many(uids, flags)
    assert len(told._bulk) == 1 and told._bulk[0][2] is flags and not told._single
    told[3] = FLAGS[2]
    told.pop(7)  # expunged: known from the list only
    assert [told.get(u) for u in (3, 4, 7, 5001)] == [FLAGS[2], FLAGS[1], None, None]
