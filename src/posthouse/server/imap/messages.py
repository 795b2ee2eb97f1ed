"""The selected-state commands (RFC 3501 §6.4 and extensions) against the open mailbox.

CHECK, NOOP, CLOSE, UNSELECT (RFC 3691), EXPUNGE and UID EXPUNGE (RFC 4315), SEARCH with
ESEARCH RETURN and SAVE (RFC 4731, RFC 5182), FETCH (every item; RFC 7162 CHANGEDSINCE and
VANISHED), STORE (UNCHANGEDSINCE, MODIFIED), COPY and MOVE (RFC 6851) with COPYUID, SORT
and THREAD (RFC 5256).  Sequence numbers and UIDs are resolved by the engine's
`SelectedMailbox`; a message another session expunged keeps its number until the client
is told, and is skipped.

Two fast paths for big mailboxes: a FETCH of metadata only (``1:* (UID FLAGS)``) is
written straight from the store's rows (metadata_fetch.py), and a SEARCH with a header
key asks the store's cached-header search for the candidates before the exact matcher
looks at them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from operator import attrgetter
from typing import TYPE_CHECKING

from posthouse.protocols.imap import response, search, seqset, sort, thread
from posthouse.protocols.imap.arguments import Expunge, Fetch, Sort, Store, Thread, Transfer
from posthouse.protocols.imap.commands import Command
from posthouse.protocols.imap.fetchatt import FetchItem, FetchRequest
from posthouse.protocols.imap.metadata_fetch import FlagForms, MetadataFetch, metadata_only
from posthouse.protocols.imap.response import Atom, Code
from posthouse.protocols.imap.selected import SelectedMailbox
from posthouse.server.imap.outcome import Outcome
from posthouse.server.imap.views import StoredMessage, fetch_items, missing_blobs, needs_cache
from posthouse.store.backend import FlagChange, FlagMode, MessageMeta
from posthouse.store.service import OpenMailbox, UserSession
from posthouse.store.uidset import UidSet

if TYPE_CHECKING:
    from posthouse.server.imap.session import IMAPSession

Handler = Callable[[Command], Awaitable[Outcome | None]]
_SETS_SEEN = frozenset({"RFC822", "RFC822.TEXT"})
_BLOCK_ROWS = 4096  # FETCH lines rendered at once: about 160 KiB of UID FLAGS
_FLAG_ITEMS = frozenset({"UID", "FLAGS", "MODSEQ"})  # what `UserSession.fetch_flags` gives
_uid_of = attrgetter("uid")
_flags_of = attrgetter("flags")
_MODES = {"replace": FlagMode.REPLACE, "add": FlagMode.ADD, "remove": FlagMode.REMOVE}


def _needs(key: search.Key, kinds: tuple[type, ...]) -> bool:
    """Whether ``key`` holds a key of one of ``kinds`` anywhere in its tree."""
    match key:
        case search.Not(inner):
            return _needs(inner, kinds)
        case search.Or(left, right):
            return _needs(left, kinds) or _needs(right, kinds)
        case search.And(keys):
            return any(_needs(k, kinds) for k in keys)
    return isinstance(key, kinds)


def _narrowing_header(key: search.Key) -> search.Header | None:
    """A HEADER key that every match of ``key`` satisfies and that the store's search of
    the cached headers can look for: a non-empty needle, ASCII once case-folded, on one
    line, and a plain field name."""
    match key:
        case search.Header(name, value):
            folded = value.casefold()
            if (
                folded
                and folded.isascii()
                and "\r" not in folded
                and "\n" not in folded
                and name.isascii()
                and name.isprintable()
                and not set(name) & set(" :")
            ):
                return key
        case search.And(keys):
            for inner in keys:
                found = _narrowing_header(inner)
                if found is not None:
                    return found
    return None


def _sets_seen(item: FetchItem) -> bool:
    return item.name in _SETS_SEEN or (
        item.name in ("BODY", "BINARY") and item.section is not None and not item.peek
    )


class MessageCommands:
    """See the module docstring."""

    def __init__(self, session: IMAPSession) -> None:
        self.session = session
        self.engine = session.engine
        self.saved: list[int] = []  # RFC 5182 "$": UIDs of the last SEARCH ... RETURN (SAVE)
        self.flag_forms = FlagForms()

    def handlers(self) -> dict[str, Handler]:
        return {
            "CHECK": self.noop,
            "NOOP": self.noop,
            "CLOSE": self.close,
            "UNSELECT": self.close,
            "EXPUNGE": self.expunge,
            "SEARCH": self.search,
            "FETCH": self.fetch,
            "STORE": self.store,
            "COPY": self.transfer,
            "MOVE": self.transfer,
            "SORT": self.sort,
            "THREAD": self.thread,
        }

    # -- helpers --

    def _open(self) -> tuple[UserSession, OpenMailbox, SelectedMailbox]:
        user, mailbox, selected = self.session.user, self.session.mailbox, self.engine.selected
        assert user is not None and mailbox is not None and selected is not None
        return user, mailbox, selected

    def _pairs(self, numbers: seqset.SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
        _, _, selected = self._open()
        if numbers.saved:
            saved = set(self.saved)
            return selected.live((seq, u) for seq, u in enumerate(selected.uids, 1) if u in saved)
        return selected.live(selected.resolve(numbers, uid=uid))

    async def _messages(
        self, pairs: Iterable[tuple[int, int]], *, cached: bool = False
    ) -> list[StoredMessage]:
        user, mailbox, selected = self._open()
        seq_of = dict((u, s) for s, u in pairs)
        if not seq_of:
            return []
        metas = await user.fetch(mailbox, UidSet.of(seq_of), cached=cached)
        return [
            StoredMessage(m, seq_of[m.uid], selected.flags_of(m.uid, m.flags))
            for m in metas
            if m.uid in seq_of
        ]

    async def _load(self, uid: int) -> bytes:
        user, mailbox, _ = self._open()
        return await user.read_message(mailbox, uid)

    # -- CHECK, NOOP, CLOSE, UNSELECT, EXPUNGE --

    async def noop(self, command: Command) -> None:
        return None  # the runner's look at the mailbox does the work

    async def close(self, command: Command) -> None:
        user, mailbox, _ = self._open()
        if command.name == "CLOSE" and not mailbox.read_only and "e" in mailbox.rights:
            await user.expunge(mailbox)  # RFC 3501 §6.4.2: silently, no EXPUNGE responses
        self.engine.unselect()
        self.session.opened(None)
        return None

    async def expunge(self, command: Command) -> None:
        arguments = command.arguments
        user, mailbox, selected = self._open()
        uids = None
        if isinstance(arguments, Expunge) and arguments.numbers is not None:
            uids = UidSet.of(u for _, u in self._pairs(arguments.numbers, uid=True))
            if not uids:
                return None
        result = await user.expunge(mailbox, uids)
        selected.expunged(result.uids)
        self.session.own_change(result.modseqs)
        return None

    # -- SEARCH, SORT, THREAD --

    async def _matching(
        self, key: search.Key, *, uid: bool, headers: bool = False
    ) -> list[StoredMessage]:
        """The live messages matching ``key``; ``headers``: the caller needs every
        match's header too (SORT, THREAD).  Body and text keys read each message; header
        keys make do with the header section cached at APPEND time."""
        user, mailbox, selected = self._open()
        narrowing = _narrowing_header(key)
        if narrowing is not None and selected.count:  # the store narrows, the matcher decides
            hits, unsure = await user.search_headers(
                mailbox,
                UidSet([(1, selected.largest_uid)]),
                narrowing.name,
                narrowing.value.casefold().encode("ascii"),
            )
            known = ((selected.seq_of(u), u) for u in sorted(hits.union(unsure)))
            pairs = selected.live((seq, u) for seq, u in known if seq is not None)
        else:
            pairs = selected.live(enumerate(selected.uids, 1))
        content = _needs(key, (search.Body, search.Text))
        header = headers or _needs(key, (search.Header,))
        messages = await self._messages(pairs, cached=header and not content)
        context = search.SearchContext(
            largest_seq=selected.count,
            largest_uid=selected.largest_uid,
            saved_uids=frozenset(self.saved),
        )
        found: list[StoredMessage] = []
        for message in messages:
            if content or (header and message.meta.header is None):
                message.use_content(await self._load(message.uid))
            if search.matches(key, message, context):
                found.append(message)
            if not headers:
                message.forget_content()
        return found

    async def search(self, command: Command) -> None:
        request = command.arguments
        assert isinstance(request, search.SearchRequest)
        found = await self._matching(request.key, uid=command.uid)
        numbers = [m.uid if command.uid else m.seq for m in found]
        modseq = (
            max((m.modseq for m in found), default=0)
            if _needs(request.key, (search.ModSeq,))
            else None
        )
        if _needs(request.key, (search.ModSeq,)):
            self.engine.use_condstore()
        if request.returns is None:
            self.engine.untagged(response.search_data(numbers, modseq=modseq))
            return None
        returns = request.returns or frozenset({"ALL"})
        if "SAVE" in returns:
            self.saved = [m.uid for m in found]
        results = search.return_results(numbers, returns)
        if modseq:
            results.append(("MODSEQ", modseq))
        if returns - {"SAVE"} or "SAVE" not in returns:
            self.engine.untagged(response.esearch(command.tag, uid=command.uid, results=results))
        return None

    async def sort(self, command: Command) -> None:
        arguments = command.arguments
        assert isinstance(arguments, Sort)
        found = await self._matching(arguments.search.key, uid=command.uid, headers=True)
        ordered = sort.sort_messages(found, arguments.criteria)
        values: list[object] = [Atom("SORT")]
        values += [m.uid if command.uid else m.seq for m in ordered]
        self.engine.untagged(response.Data(tuple(values)))
        return None

    async def thread(self, command: Command) -> None:
        arguments = command.arguments
        assert isinstance(arguments, Thread)
        found = await self._matching(arguments.search.key, uid=command.uid, headers=True)
        build = thread.references if arguments.algorithm == "REFERENCES" else thread.ordered_subject
        roots = build(found)
        text = thread.format_threads(roots, lambda m: m.uid if command.uid else m.seq)
        self.engine.send_raw(f"* THREAD {text}\r\n".encode("ascii") if text else b"* THREAD\r\n")
        return None

    # -- FETCH --

    async def fetch(self, command: Command) -> None:
        arguments = command.arguments
        assert isinstance(arguments, Fetch)
        request = arguments.request
        user, mailbox, selected = self._open()
        engine = self.engine
        if request.changed_since is not None:
            engine.use_condstore()
        if request.vanished and not engine.qresync:
            raise Outcome("BAD", "VANISHED needs QRESYNC enabled (RFC 7162 §3.2.6)")
        if request.vanished and request.changed_since is not None:
            changes = await user.changes_since(mailbox, request.changed_since)
            uids = set(
                arguments.numbers.select_uids(sorted(set(changes.vanished) | set(selected.uids)))
            )
            gone = sorted(u for u in changes.vanished if u in uids)
            if gone:
                engine.untagged(response.vanished(gone, earlier=True))
        items = list(request.items)
        if command.uid and not any(i.name == "UID" for i in items):
            items.insert(0, FetchItem("UID"))
        if metadata_only(items):
            await self._fetch_metadata(arguments.numbers, command.uid, items, request.changed_since)
            return None
        pairs = self._pairs(arguments.numbers, uid=command.uid)
        seen_setting = not mailbox.read_only and any(_sets_seen(i) for i in items)
        messages = await self._messages(pairs, cached=needs_cache(request))
        if request.changed_since is not None:
            messages = [m for m in messages if m.modseq > request.changed_since]
        if seen_setting:
            unseen = [m.uid for m in messages if "\\Seen" not in m.flags]
            if unseen:
                result = await user.store_flags(
                    mailbox, UidSet.of(unseen), FlagChange(FlagMode.ADD, frozenset({"\\Seen"}))
                )
                changed = {m.uid: m for m in result.changed}
                for message in messages:
                    if message.uid in changed:
                        meta = changed[message.uid]
                        message.meta = meta
                        message.flags = selected.flags_of(meta.uid, meta.flags)
                if not any(i.name == "FLAGS" for i in items) and changed:
                    items.append(FetchItem("FLAGS"))
        full = FetchRequest(tuple(items), request.changed_since, request.vanished)
        cache_wanted = needs_cache(full)
        for message in messages:
            values = await fetch_items(message, full, load=self._load, condstore=engine.condstore)
            engine.send_raw(response.fetch(message.seq, values, utf8=engine.utf8).to_bytes())
            blobs = missing_blobs(message) if cache_wanted else None
            if blobs is not None:  # the next FETCH of it needs no parse
                await user.store_cache(mailbox, message.uid, **blobs)
            message.forget_content()
            await self.session.driver.send_soon()
        return None

    async def _fetch_metadata(
        self,
        numbers: seqset.SequenceSet,
        uid: bool,
        items: list[FetchItem],
        changed_since: int | None,
    ) -> None:
        """FETCH of metadata items only (``1:* (UID FLAGS)``): sequence numbers and UIDs
        as columns (slices of the session's UIDs), the store's rows as they come, the
        lines written a block at a time (`MetadataFetch.block`)."""
        user, mailbox, selected = self._open()
        if numbers.saved:
            pairs = self._pairs(numbers, uid=uid)
            seqs, uids = [s for s, _ in pairs], [u for _, u in pairs]
            ranges = [(u, u) for u in uids]
        else:
            spans = selected.spans(numbers, uid=uid)
            seqs, uids = selected.live_columns(spans)
            ranges = [(selected.uids[low - 1], selected.uids[high - 1]) for low, high in spans]
        if not uids:
            return
        metas: list[MessageMeta] | None = None
        modseqs: list[int] | None = None
        writer = MetadataFetch(items, self.flag_forms, condstore=self.engine.condstore)
        if set(writer.names) <= _FLAG_ITEMS:  # the store's columns as they are
            stored, flags, modseqs = await user.fetch_flags(
                mailbox,
                UidSet(ranges),
                modseqs="MODSEQ" in writer.names or changed_since is not None,
            )
        else:
            metas = await user.fetch(mailbox, UidSet(ranges))
            stored, flags = list(map(_uid_of, metas)), list(map(_flags_of, metas))
        if stored != uids or changed_since is not None:  # the store and the session differ
            seq_of = dict(zip(uids, seqs, strict=True))
            kept = [i for i, uid in enumerate(stored) if uid in seq_of]
            if changed_since is not None:
                mods = modseqs if modseqs is not None else [m.modseq for m in metas or ()]
                kept = [i for i in kept if mods[i] > changed_since]
            uids = [stored[i] for i in kept]
            seqs = [seq_of[uid] for uid in uids]
            flags = [flags[i] for i in kept]
            modseqs = None if modseqs is None else [modseqs[i] for i in kept]
            metas = None if metas is None else [metas[i] for i in kept]
        selected.told_flags(uids, flags)
        for start in range(0, len(uids), _BLOCK_ROWS):
            part = slice(start, start + _BLOCK_ROWS)
            lines = writer.block(
                seqs[part],
                None if metas is None else metas[part],
                selected.recent,
                uids=uids[part],
                flags=flags[part],
                modseqs=None if modseqs is None else modseqs[part],
            )
            self.engine.send_raw(lines)
            await self.session.driver.send_soon()

    # -- STORE --

    async def store(self, command: Command) -> Outcome | None:
        arguments = command.arguments
        assert isinstance(arguments, Store)
        user, mailbox, selected = self._open()
        engine = self.engine
        if arguments.unchanged_since is not None:
            engine.use_condstore()
        pairs = self._pairs(arguments.numbers, uid=command.uid)
        if not pairs:
            return None
        seq_of = {u: s for s, u in pairs}
        change = FlagChange(_MODES[arguments.mode], frozenset(arguments.flags) - {"\\Recent"})
        result = await user.store_flags(
            mailbox, UidSet.of(seq_of), change, unchanged_since=arguments.unchanged_since
        )
        for meta in result.changed:
            flags = selected.flags_of(meta.uid, meta.flags)
            seq = seq_of.get(meta.uid)
            if seq is None or (arguments.silent and arguments.unchanged_since is None):
                continue
            engine.untagged(response.fetch(seq, self._flag_items(meta, flags, command.uid)))
        self.session.own_change(result.modseqs, result.changed)  # as the look after would
        if result.failed:
            failed = [u if command.uid else seq_of[u] for u in result.failed if u in seq_of]
            return Outcome("OK", "Some messages were modified meanwhile", response.modified(failed))
        return None

    def _flag_items(
        self, meta: MessageMeta, flags: frozenset[str], uid: bool
    ) -> list[tuple[str, object]]:
        items: list[tuple[str, object]] = []
        if uid:
            items.append(("UID", meta.uid))
        items.append(("FLAGS", response.flags_value(sorted(flags))))
        if self.engine.condstore:
            items.append(("MODSEQ", [meta.modseq]))
        return items

    # -- COPY, MOVE --

    async def transfer(self, command: Command) -> Outcome | None:
        arguments = command.arguments
        assert isinstance(arguments, Transfer)
        user, mailbox, selected = self._open()
        pairs = self._pairs(arguments.numbers, uid=command.uid)
        if not pairs:
            return None
        move = command.name == "MOVE"
        target = self.session.commands.name_in(arguments.mailbox)
        result = await user.copy(mailbox, UidSet.of(u for _, u in pairs), target, move=move)
        code: Code | None = None
        if result.source_uids:
            code = response.copyuid(result.uidvalidity, result.source_uids, result.target_uids)
        if move:
            if code is not None:  # RFC 6851 §4.3: COPYUID in an untagged OK before EXPUNGEs
                self.engine.untagged(response.Status("OK", "Moved", code=code))
            selected.expunged(result.source_uids)
            return Outcome("OK", "MOVE completed")
        return Outcome("OK", "COPY completed", code)
