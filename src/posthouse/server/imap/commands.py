"""Carrying out the engine's `Run` commands: dispatch, and the authenticated-state group.

`CommandRunner.run` finds the command's handler, runs it, and completes the command
with ``engine.finish``: OK, or the `Outcome` a handler raised, or what a store error or a
`CommandError` maps to (outcome.py); before that it takes a look at the selected mailbox
so the engine can tell what changed.  This module holds the commands of the
authenticated state (RFC 3501 §6.3: SELECT/EXAMINE with RFC 7162 CONDSTORE/QRESYNC,
CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST with RFC 5258/5819/6154, LSUB,
STATUS, APPEND with RFC 3502/4315, NAMESPACE RFC 2342); messages.py those of the
selected state.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from posthouse.protocols.imap import mutf7, response
from posthouse.protocols.imap.arguments import (
    Append,
    Create,
    ListMailboxes,
    MailboxName,
    Rename,
    Select,
    Status,
)
from posthouse.protocols.imap.commands import Command
from posthouse.protocols.imap.errors import CommandError
from posthouse.protocols.imap.response import Atom, Code, data, number_code
from posthouse.protocols.imap.selected import SelectedMailbox
from posthouse.server.imap.acl_commands import AclCommands
from posthouse.server.imap.admin_commands import reconstruct
from posthouse.server.imap.list_subscribed import SubscribedItem, subscribed_items
from posthouse.server.imap.messages import MessageCommands
from posthouse.server.imap.outcome import Outcome, command_error, store_error_status, unexpected
from posthouse.server.imap.quota_commands import QuotaCommands
from posthouse.server.imap.views import prepared
from posthouse.store.backend import MailboxStatus
from posthouse.store.errors import InvalidName, StoreError, StoreUnavailable
from posthouse.store.service import ListItem, UserSession

if TYPE_CHECKING:
    from posthouse.server.imap.session import IMAPSession

log = logging.getLogger("posthouse.imap")

Handler = Callable[[Command], Awaitable[Outcome | None]]


class CommandRunner:
    """See the module docstring."""

    def __init__(self, session: IMAPSession) -> None:
        self.session = session
        self.engine = session.engine
        self.messages = MessageCommands(session)
        self.quotas = QuotaCommands(session)

    def _handlers(self) -> dict[str, Handler]:
        """Every command's handler, bound to this session.  Made for each command rather than
        kept: 10,000 sessions idling in IDLE would each hold a table of some 40 bound methods
        (about 4 KiB a session), while making it costs a few microseconds a command."""
        return {
            "SELECT": self.select,
            "EXAMINE": self.select,
            "CREATE": self.create,
            "DELETE": self.delete,
            "RENAME": self.rename,
            "SUBSCRIBE": self.subscribe,
            "UNSUBSCRIBE": self.subscribe,
            "LIST": self.list,
            "LSUB": self.list,
            "STATUS": self.status,
            "APPEND": self.append,
            "NAMESPACE": self.namespace,
            "RECONSTRUCT": functools.partial(reconstruct, self),
            **self.messages.handlers(),
            **AclCommands(self.session).handlers(),
            **self.quotas.handlers(),
        }

    @property
    def user(self) -> UserSession:
        user = self.session.user
        assert user is not None, "the engine runs these commands only after a login"
        return user

    async def run(self, command: Command) -> None:
        target = command.name in ("APPEND", "COPY", "MOVE")
        try:
            outcome = await self._handlers()[command.name](command)
        except Outcome as raised:
            outcome = raised
        except CommandError as error:
            outcome = command_error(error)
        except StoreUnavailable as error:
            log.error("imap: %s %s: store unavailable: %s", self.user.user, command.name, error)
            outcome = store_error_status(error)
        except (StoreError, InvalidName) as error:
            outcome = store_error_status(error, target=target)
        except OSError as error:
            log.error("imap: %s %s: I/O error: %s", self.engine.user, command.name, error)
            outcome = Outcome("NO", "The mail store is not available now", response.UNAVAILABLE)
        except Exception:  # the session goes on; the fault is logged
            outcome = unexpected(f"{command.name} of {self.engine.user}")
        if outcome is None:
            outcome = Outcome("OK", f"{command.name} completed")
        elif outcome.code == response.NOPERM:  # 12.5.4: protection failures at WARNING
            log.warning("imap: %s %s refused: %s", self.engine.user, command.name, outcome.text)
        await self.session.look()
        self.engine.finish(outcome.status, outcome.text, outcome.code)

    # -- names --

    def name_in(self, wire: str) -> str:
        return mutf7.from_wire(wire, utf8=self.engine.utf8)

    def name_out(self, name: str) -> str:
        return mutf7.to_wire(name, utf8=self.engine.utf8)

    # -- SELECT / EXAMINE --

    async def select(self, command: Command) -> Outcome:
        arguments = command.arguments
        assert isinstance(arguments, Select)
        engine, session = self.engine, self.session
        if arguments.qresync is not None and not engine.qresync:
            raise Outcome("BAD", "QRESYNC must be enabled first (RFC 7162 §3.2.5)")
        if engine.selected is not None:
            engine.unselect()
            session.opened(None)
            if engine.qresync:  # RFC 7162 §3.2.11
                engine.untagged(
                    response.Status("OK", "Previous mailbox closed", code=Code("CLOSED"))
                )
        if arguments.condstore:
            engine.use_condstore()
        mailbox = await self.user.select(
            self.name_in(arguments.mailbox), read_only=command.name == "EXAMINE"
        )
        snapshot = mailbox.snapshot
        status = snapshot.status
        selected = SelectedMailbox(
            mailbox.name,
            snapshot.uids,
            read_only=mailbox.read_only,
            uidvalidity=status.uidvalidity,
            highestmodseq=status.highestmodseq,
            recent_after=snapshot.recent_after,
            qresync=engine.qresync,
        )
        engine.untagged(
            data(Atom("FLAGS"), response.flags_value(mailbox.flags)),
            data(len(snapshot.uids), Atom("EXISTS")),
            data(len(selected.recent), Atom("RECENT")),
        )
        first_unseen = selected.seq_of(snapshot.first_unseen) if snapshot.first_unseen else None
        if first_unseen is not None:
            engine.untagged(_ok(number_code("UNSEEN", first_unseen)))
        engine.untagged(
            _ok(response.list_code("PERMANENTFLAGS", mailbox.permanent_flags)),
            _ok(number_code("UIDNEXT", status.uidnext)),
            _ok(number_code("UIDVALIDITY", status.uidvalidity)),
        )
        if engine.condstore:
            engine.untagged(_ok(number_code("HIGHESTMODSEQ", status.highestmodseq)))
        qresync = arguments.qresync
        if qresync is not None and qresync.uidvalidity == status.uidvalidity:
            changes = await self.user.changes_since(mailbox, qresync.modseq)
            known = qresync.known_uids
            largest = max([*changes.vanished, *snapshot.uids], default=0)
            vanished = [u for u in changes.vanished if known is None or known.contains(u, largest)]
            if vanished:
                engine.untagged(response.vanished(vanished, earlier=True))
            for meta in changes.changed:
                seq = selected.seq_of(meta.uid)
                if seq is not None:
                    flags = selected.flags_of(meta.uid, meta.flags)
                    items = [
                        ("UID", meta.uid),
                        ("FLAGS", response.flags_value(sorted(flags))),
                        ("MODSEQ", [meta.modseq]),
                    ]
                    engine.untagged(response.fetch(seq, items, utf8=engine.utf8))
        engine.select(selected)
        session.opened(mailbox)
        await self.quotas.alert(mailbox)
        log.info("imap: %s opened %s", self.user.user, mailbox.name)
        code = Code("READ-ONLY") if mailbox.read_only else Code("READ-WRITE")
        return Outcome("OK", f"{command.name} completed", code)

    # -- the mailboxes list --

    async def create(self, command: Command) -> Outcome | None:
        arguments = command.arguments
        assert isinstance(arguments, Create)
        await self.user.create(
            self.name_in(arguments.mailbox),
            partition=arguments.partition,
            special_use=arguments.special_use,
        )
        return None

    async def delete(self, command: Command) -> Outcome | None:
        arguments = command.arguments
        assert isinstance(arguments, MailboxName)
        name = self.name_in(arguments.mailbox)
        await self.user.delete(name)
        mailbox = self.session.mailbox
        if mailbox is not None and mailbox.name == name:
            self.engine.unselect()
            self.session.opened(None)  # RFC 9051 §7.1: [CLOSED], the selection has ended
            self.engine.untagged(response.Status("OK", "Mailbox deleted", code=Code("CLOSED")))
        return None

    async def rename(self, command: Command) -> Outcome | None:
        arguments = command.arguments
        assert isinstance(arguments, Rename)
        await self.user.rename(
            self.name_in(arguments.source),
            self.name_in(arguments.target),
            partition=arguments.partition,
        )
        return None

    async def subscribe(self, command: Command) -> Outcome | None:
        arguments = command.arguments
        assert isinstance(arguments, MailboxName)
        name = self.name_in(arguments.mailbox)
        if command.name == "SUBSCRIBE":
            await self.user.subscribe(name)
        else:
            await self.user.unsubscribe(name)
        return None

    async def list(self, command: Command) -> Outcome | None:
        """RFC 3501 §6.3.8/§6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819, RFC 6154, RFC 3348."""
        arguments = command.arguments
        assert isinstance(arguments, ListMailboxes)
        lsub = command.name == "LSUB"
        selection, returns = arguments.selection, arguments.returns
        subscribed_only = "SUBSCRIBED" in selection
        show_subscribed = subscribed_only or "SUBSCRIBED" in returns
        special_only = "SPECIAL-USE" in selection
        reference = self.name_in(arguments.reference)
        recursive = "RECURSIVEMATCH" in selection  # RFC 5258 §3.5
        if recursive and not selection - {"RECURSIVEMATCH", "REMOTE"}:
            raise Outcome("BAD", "RECURSIVEMATCH needs another selection option (RFC 5258 §3)")
        seen: set[str] = set()
        for pattern in arguments.patterns:
            wanted = self.name_in(pattern)
            items: Sequence[ListItem | SubscribedItem]
            if subscribed_only:
                items = await subscribed_items(self.user, reference, wanted, recursive=recursive)
            elif lsub:
                items = await self.user.list_subscribed(reference, wanted)
            else:
                items = await self.user.list_mailboxes(reference, wanted)
            for item in items:
                if item.name in seen:
                    continue
                seen.add(item.name)
                attributes = set(item.attributes)
                if special_only and not attributes & _SPECIAL_USE:
                    continue
                if not show_subscribed:
                    attributes.discard("\\Subscribed")
                name: object = self.name_out(item.name) if item.name else ""
                extended: list[object] = []
                if isinstance(item, SubscribedItem) and item.childinfo:
                    extended.append(["CHILDINFO", ["SUBSCRIBED"]])
                self.engine.untagged(
                    data(
                        Atom(command.name),
                        [Atom(a) for a in sorted(attributes)],
                        ".",
                        name,
                        *extended,
                        utf8=self.engine.utf8,
                    )
                )
                if (
                    arguments.status_items
                    and item.name
                    and not attributes & {"\\Noselect", "\\NonExistent"}
                ):
                    await self._status_line(item.name, arguments.status_items, quiet=True)
        return None

    async def status(self, command: Command) -> Outcome | None:
        arguments = command.arguments
        assert isinstance(arguments, Status)
        await self._status_line(self.name_in(arguments.mailbox), arguments.items, quiet=False)
        return None

    async def _status_line(self, name: str, items: tuple[str, ...], *, quiet: bool) -> None:
        try:
            status = await self.user.status(name)
        except StoreError:
            if quiet:  # RFC 5819 §2: a mailbox STATUS cannot be had for is left out
                return
            raise
        values: list[object] = []
        for item in items:
            value = _status_value(status, item, self.session.services.store.max_message_size)
            if value is not None:
                values += [Atom(item), value]
        self.engine.untagged(
            data(Atom("STATUS"), self.name_out(name), values, utf8=self.engine.utf8)
        )

    async def namespace(self, command: Command) -> Outcome | None:
        personal, others, shared = self.user.namespace()

        def one(space: tuple[str, str] | None) -> object:
            return None if space is None else [[self.name_out(space[0]), space[1]]]

        self.engine.untagged(data(Atom("NAMESPACE"), one(personal), one(others), one(shared)))
        return None

    # -- APPEND --

    async def append(self, command: Command) -> Outcome:
        """RFC 3501 §6.3.11, RFC 3502 MULTIAPPEND (all or none), RFC 4315 APPENDUID."""
        arguments = command.arguments
        assert isinstance(arguments, Append)
        now = dt.datetime.now(dt.UTC).astimezone()
        messages = [
            prepared(m.data, m.date or now, frozenset(m.flags) - {"\\Recent"})
            for m in arguments.messages
        ]
        result = await self.user.append(self.name_in(arguments.mailbox), messages)
        code = response.appenduid(result.uidvalidity, result.uids)
        return Outcome("OK", "APPEND completed", code)


_SPECIAL_USE = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)


def _ok(code: Code) -> response.Status:
    return response.Status("OK", str(code).split(" ", 1)[0].capitalize(), code=code)


def _status_value(status: MailboxStatus, item: str, appendlimit: int) -> int | None:
    match item:
        case "MESSAGES":
            return status.messages
        case "RECENT":
            return status.recent
        case "UIDNEXT":
            return status.uidnext
        case "UIDVALIDITY":
            return status.uidvalidity
        case "UNSEEN":
            return status.unseen
        case "HIGHESTMODSEQ":
            return status.highestmodseq
        case "SIZE":
            return status.size
        case "DELETED":
            return status.deleted
        case "APPENDLIMIT":
            return appendlimit
    return None
