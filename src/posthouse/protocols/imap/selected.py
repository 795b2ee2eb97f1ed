"""The selected mailbox as the client knows it: pure logic, no store.

`SelectedMailbox` keeps the session's view of the mailbox that SELECT/EXAMINE opened:
the UIDs in sequence-number order (RFC 3501 §2.3.1.2), the flags the client was last
told of each message, which messages are \\Recent in this session, and what happened
in the mailbox that the client has not been told yet.  The server feeds it what the
store reports (`changes`, `expunged`, `appended`); the engine asks it for the untagged
responses that may be sent now (`pending_responses`), in the order RFC 3501 §7.4.1 and
RFC 7162 §3.2.10 require: expunges first (EXPUNGE, highest sequence number first so
every number is valid when sent, or VANISHED with QRESYNC), then EXISTS and RECENT for
the new count, then FETCH for flags changed by others.

RFC 3501 §7.4.1: an EXPUNGE may not be sent while a command that uses sequence numbers
(FETCH, STORE, SEARCH, not their UID forms) is in progress, nor in answer to them, so
that the numbers the client holds stay valid; until it is sent, an expunged message
keeps its sequence number (and fetching it yields nothing).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from posthouse.protocols.imap import response, seqset
from posthouse.protocols.imap.errors import CommandError
from posthouse.protocols.imap.response import Atom, Data
from posthouse.protocols.imap.told_flags import ToldFlags


@dataclass(frozen=True)
class FlagUpdate:
    """A message's flags as the store now has them (``modseq`` for CONDSTORE)."""

    uid: int
    flags: frozenset[str]
    modseq: int = 0


class SelectedMailbox:
    """See the module docstring."""

    def __init__(
        self,
        name: str,
        uids: Sequence[int],
        *,
        read_only: bool,
        uidvalidity: int,
        highestmodseq: int,
        recent_after: int,
        qresync: bool = False,
    ) -> None:
        self.name = name
        self.read_only = read_only
        self.uidvalidity = uidvalidity
        self.highestmodseq = highestmodseq
        self.qresync = qresync  # QRESYNC enabled: VANISHED instead of EXPUNGE
        self.uids: list[int] = list(uids)
        self.recent: set[int] = set() if read_only else {u for u in uids if u > recent_after}
        self.known_flags = ToldFlags()
        self._gone: set[int] = set()  # expunged in the store, not yet told
        self._told_count = len(self.uids)
        self._told_recent = len(self.recent)
        self._flag_news: dict[int, FlagUpdate] = {}

    # -------------------------------------------------------- numbers

    @property
    def count(self) -> int:
        return len(self.uids)

    @property
    def largest_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def seq_of(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index + 1
        return None

    def resolve(self, numbers: seqset.SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
        """(sequence number, UID) pairs of the set; a UID set ignores UIDs not here
        (RFC 3501 §6.4.8), a sequence set beyond the count is BAD (RFC 3501 §9)."""
        pairs: list[tuple[int, int]] = []
        for low, high in self.spans(numbers, uid=uid):  # slices: 1:* of 100,000
            pairs += zip(range(low, high + 1), self.uids[low - 1 : high], strict=True)
        return pairs

    def spans(self, numbers: seqset.SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
        """The set as ascending, disjoint (first, last) runs of sequence numbers; see
        `resolve`.  A UID set costs a bisection per range, not a step per UID."""
        if not uid:
            if not self.uids:
                raise CommandError("The mailbox is empty: no message sequence numbers")
            return numbers.message_spans(len(self.uids))
        spans: list[tuple[int, int]] = []
        if not self.uids:
            return spans
        for low, high in numbers.resolve(self.uids[-1]):  # ascending, merged
            start = bisect.bisect_left(self.uids, low)
            stop = bisect.bisect_right(self.uids, high)
            if start < stop:
                spans.append((start + 1, stop))
        return spans

    def live(self, pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """The pairs whose message still exists in the store."""
        if not self._gone:
            return list(pairs)
        return [(seq, uid) for seq, uid in pairs if uid not in self._gone]

    def live_columns(self, spans: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
        """The sequence numbers and UIDs of ``spans`` (see `spans`) whose message still
        exists in the store, as two lists: slices, not a step per message."""
        seqs: list[int] = []
        uids: list[int] = []
        for low, high in spans:
            seqs += range(low, high + 1)
            uids += self.uids[low - 1 : high]
        if self._gone:
            live = [(s, u) for s, u in zip(seqs, uids, strict=True) if u not in self._gone]
            seqs, uids = [s for s, _ in live], [u for _, u in live]
        return seqs, uids

    def is_gone(self, uid: int) -> bool:
        return uid in self._gone

    def told_flags(self, uids: Sequence[int], stored: Sequence[frozenset[str]]) -> None:
        """`flags_of` for many messages at once (``uids`` ascending; both lists kept as
        they are), without the answer: the caller shows \\Recent for the UIDs in `recent`."""
        self.known_flags.tell_many(uids, stored)
        if self._flag_news:
            for uid in uids:
                self._flag_news.pop(uid, None)

    def flags_of(self, uid: int, stored: frozenset[str]) -> frozenset[str]:
        """The flags to show: the store's plus \\Recent in this session; remembered as told."""
        self.known_flags[uid] = stored
        self._flag_news.pop(uid, None)
        return stored | {"\\Recent"} if uid in self.recent else stored

    # -------------------------------------------------------- news from the store

    def changes(self, updates: Iterable[FlagUpdate], vanished: Iterable[int]) -> None:
        """What the store reports changed since the last look (other sessions' work and
        this one's): new messages, flag changes, expunged UIDs."""
        for uid in vanished:
            if self.seq_of(uid) is not None:
                self._gone.add(uid)
                self._flag_news.pop(uid, None)
        new: list[int] = []
        for update in updates:
            self.highestmodseq = max(self.highestmodseq, update.modseq)
            if update.uid > self.largest_uid:
                new.append(update.uid)
                self.known_flags[update.uid] = update.flags
            elif (
                self.seq_of(update.uid) is not None
                and update.uid not in self._gone
                and self.known_flags.get(update.uid) != update.flags
            ):
                self._flag_news[update.uid] = update
        self.appended(sorted(set(new)))

    def appended(self, uids: Sequence[int]) -> None:
        """Messages added (by anyone) with UIDs above every known one, ascending."""
        for uid in uids:
            if uid > self.largest_uid:
                self.uids.append(uid)
                if not self.read_only:
                    self.recent.add(uid)

    def expunged(self, uids: Iterable[int]) -> None:
        """Messages this session expunged or moved away (to be told at once)."""
        for uid in uids:
            if self.seq_of(uid) is not None:
                self._gone.add(uid)

    # -------------------------------------------------------- what to tell

    def pending_responses(self, *, expunges_allowed: bool, utf8: bool = False) -> list[Data]:
        """The untagged responses that may be sent now, in the RFC's order."""
        out: list[Data] = []
        if expunges_allowed and self._gone:
            gone = sorted(self._gone)
            told = self.uids[: self._told_count]
            # Messages that came and went before the client heard of them are dropped
            # silently; they sit after every told one, so told numbers are unaffected.
            told_gone = [
                u
                for u in gone
                if bisect.bisect_left(told, u) < len(told)
                and told[bisect.bisect_left(told, u)] == u
            ]
            if told_gone and self.qresync:
                out.append(response.vanished(told_gone, earlier=False))
            elif told_gone:
                for uid in reversed(told_gone):  # highest first: every number stays valid
                    seq = self.seq_of(uid)
                    assert seq is not None
                    out.append(response.data(seq, Atom("EXPUNGE")))
            self.uids = [u for u in self.uids if u not in self._gone]
            for uid in gone:
                self.recent.discard(uid)
                self.known_flags.pop(uid, None)
            self._gone.clear()
            self._told_count -= len(told_gone)
            self._told_recent = min(self._told_recent, len(self.recent))
        if len(self.uids) != self._told_count:
            out.append(response.data(len(self.uids), Atom("EXISTS")))
            self._told_count = len(self.uids)
            if len(self.recent) != self._told_recent:
                out.append(response.data(len(self.recent), Atom("RECENT")))
                self._told_recent = len(self.recent)
        for uid in sorted(self._flag_news):
            update = self._flag_news[uid]
            seq = self.seq_of(uid)
            if seq is None:
                continue
            items: list[tuple[str, object]] = [
                ("FLAGS", response.flags_value(sorted(self.flags_of(uid, update.flags))))
            ]
            if self.qresync or update.modseq:
                items.insert(0, ("UID", uid))
                if update.modseq:
                    items.append(("MODSEQ", [update.modseq]))
            out.append(response.fetch(seq, items, utf8=utf8))
        self._flag_news.clear()
        return out
