"""The RFC 4314 ACL commands over the store's rules: SETACL, DELETEACL, GETACL, LISTRIGHTS
and MYRIGHTS.

The store (:class:`~posthouse.store.session.UserSession`) checks the rights (``a`` for all
but MYRIGHTS, which needs any right) and answers a mailbox the user may not see as a missing
one; this module turns its answers into ACL, LISTRIGHTS and MYRIGHTS responses, with the
obsolete ``c`` and ``d`` letters added for RFC 2086 clients (RFC 4314 §2.1.1).  A rights
letter the server does not know is BAD (RFC 4314 §3.1); an identifier no entry can have, or
an ACL already at its size limit, is NO.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from posthouse.protocols.imap.arguments import AclArguments
from posthouse.protocols.imap.commands import Command
from posthouse.protocols.imap.cursor import ATOM_CHARS
from posthouse.protocols.imap.response import LIMIT, Atom, Code, data
from posthouse.server.imap.outcome import Outcome
from posthouse.store.acl import (
    AclError,
    BadIdentifier,
    TooManyEntries,
    UnknownRight,
    listed_rights,
    wire_rights,
)
from posthouse.store.service import UserSession

if TYPE_CHECKING:
    from posthouse.server.imap.session import IMAPSession

Handler = Callable[[Command], Awaitable[None]]


def _astring(text: str) -> object:
    """An atom when the text may be one (as Cyrus writes identifiers and rights), else a
    quoted string (``""`` for no rights)."""
    raw = text.encode()
    if raw and all(c in ATOM_CHARS for c in raw) and text.upper() != "NIL":
        return Atom(text)
    return text


class AclCommands:
    """See the module docstring."""

    def __init__(self, session: IMAPSession) -> None:
        self.session = session
        self.engine = session.engine

    def handlers(self) -> dict[str, Handler]:
        return {
            name: self._guarded(handler)
            for name, handler in (
                ("SETACL", self.setacl),
                ("DELETEACL", self.deleteacl),
                ("GETACL", self.getacl),
                ("LISTRIGHTS", self.listrights),
                ("MYRIGHTS", self.myrights),
            )
        }

    @staticmethod
    def _guarded(handler: Callable[[AclArguments], Awaitable[None]]) -> Handler:
        async def run(command: Command) -> None:
            arguments = command.arguments
            assert isinstance(arguments, AclArguments)
            try:
                await handler(arguments)
            except UnknownRight as error:  # RFC 4314 §3.1: MUST be BAD
                raise Outcome("BAD", str(error)) from error
            except TooManyEntries as error:
                raise Outcome("NO", str(error), LIMIT) from error
            except BadIdentifier as error:
                raise Outcome("NO", f"Invalid identifier: {error}", Code("CANNOT")) from error
            except AclError as error:  # a stored ACL the store cannot read
                raise Outcome("NO", f"The mailbox's ACL is damaged: {error}") from error

        return run

    def _name(self, arguments: AclArguments) -> str:
        return self.session.commands.name_in(arguments.mailbox)

    async def setacl(self, arguments: AclArguments) -> None:
        assert arguments.identifier is not None and arguments.rights is not None
        await self._user().set_acl(self._name(arguments), arguments.identifier, arguments.rights)

    async def deleteacl(self, arguments: AclArguments) -> None:
        assert arguments.identifier is not None
        await self._user().delete_acl(self._name(arguments), arguments.identifier)

    async def getacl(self, arguments: AclArguments) -> None:
        entries = await self._user().get_acl(self._name(arguments))
        values: list[object] = [Atom("ACL"), arguments.mailbox]
        for identifier, rights in entries:
            values += [_astring(identifier), _astring(wire_rights(rights))]
        self.engine.untagged(data(*values, utf8=self.engine.utf8))

    async def listrights(self, arguments: AclArguments) -> None:
        assert arguments.identifier is not None
        always = await self._user().list_rights(self._name(arguments), arguments.identifier)
        required, optional = listed_rights(always)
        self.engine.untagged(
            data(
                Atom("LISTRIGHTS"),
                arguments.mailbox,
                _astring(arguments.identifier),
                _astring(required),
                *(Atom(letter) for letter in optional),
                utf8=self.engine.utf8,
            )
        )

    async def myrights(self, arguments: AclArguments) -> None:
        rights = await self._user().my_rights(self._name(arguments))
        self.engine.untagged(
            data(
                Atom("MYRIGHTS"),
                arguments.mailbox,
                _astring(wire_rights(rights)),
                utf8=self.engine.utf8,
            )
        )

    def _user(self) -> UserSession:
        return self.session.commands.user
