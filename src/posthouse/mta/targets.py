"""Which delivery agent a destination goes to, as which of that agent's recipients.

Expansion ends in typed destinations (:mod:`posthouse.mta.destinations`); this module turns
one into an agent's recipient (:data:`Target`), the same way for direct delivery at intake
(:mod:`posthouse.mta.direct`) and for queue runs (:mod:`posthouse.mta.delivery`):

* a local user's mailbox: wherever :class:`~posthouse.mta.local_mail.LocalMail` says (the
  spool mailbox, :class:`~posthouse.mta.agents.mbox.SpoolMailbox`; the user's mailbox in
  the IMAP store, :class:`~posthouse.mta.agents.store.StoreMailbox`; or with ``forwarding =
  local`` the relay, planned as a remote address);
* a remote address: where :meth:`~posthouse.mta.transport.RemoteTransport.plan` says (SMTP to
  a next hop, :class:`~posthouse.mta.agents.smtp.SMTPRecipient`; a gateway's transport
  program, :class:`~posthouse.mta.agents.program.ProgramCall`; or, for an address that turns
  out to be this host's, the local user's mailbox -- never sent back out, a routing loop);
* programs and files: :class:`~posthouse.mta.agents.program.ProgramCall`,
  :class:`~posthouse.mta.agents.program.FileCall`.

What cannot be delivered comes back as :class:`Unroutable`, with the error to record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from posthouse.mta.address import unquote_local
from posthouse.mta.agents.mbox import SpoolMailbox
from posthouse.mta.agents.program import FileCall, ProgramCall
from posthouse.mta.agents.smtp import SMTPRecipient
from posthouse.mta.agents.store import StoreMailbox
from posthouse.mta.destinations import (
    Destination,
    FileDestination,
    LocalMailbox,
    ProgramDestination,
    RemoteAddress,
)
from posthouse.mta.errors import MailError
from posthouse.mta.local_mail import LocalMail
from posthouse.mta.logline import relay_name
from posthouse.mta.pseudodomains import AddressError
from posthouse.mta.transport import LocalRoute, PipeRoute, RemoteTransport, SMTPRoute

__all__ = ["Target", "Targets", "Unroutable", "mailer_of"]

Target = SpoolMailbox | StoreMailbox | SMTPRecipient | ProgramCall | FileCall


@dataclass(frozen=True)
class Unroutable:
    """A destination no agent can take: ``error`` is its failure, ``mailer`` the log's."""

    error: MailError
    mailer: str


def mailer_of(target: Target) -> tuple[str, str]:
    """The mailer and relay of a log line for ``target`` (sendmail's names)."""
    match target:
        case SpoolMailbox() | StoreMailbox():
            return "local", "localhost"
        case SMTPRecipient(hop=hop):
            return "smtp", relay_name(hop)
        case FileCall():
            return "file", "localhost"
        case ProgramCall(native=native):
            return (native.protocol if native is not None else "prog"), "localhost"


@dataclass(frozen=True)
class Targets:
    """The rules (module docstring); ``transport`` None: remote mail is not sent from here."""

    local_mail: LocalMail
    transport: RemoteTransport | None
    is_local_user: Callable[[str], bool]

    def resolve(self, destination: Destination) -> Target | Unroutable:
        match destination:
            case LocalMailbox(user=user):
                return self._local(user, via_relay=True, address=user)
            case RemoteAddress(address=address):
                return self._remote(address)
            case ProgramDestination(command=command, run_as=run_as):
                return ProgramCall(command, run_as)
            case FileDestination(path=path, run_as=run_as):
                return FileCall(path, run_as)

    def _local(self, user: str, *, via_relay: bool, address: str) -> Target | Unroutable:
        try:
            where = self.local_mail.target(user)
        except MailError as error:
            return Unroutable(error, "local")
        if isinstance(where, SpoolMailbox | StoreMailbox):
            return where
        if not via_relay:  # routed here, and from here to the relay: a loop
            return Unroutable(MailError("5.4.6", f"<{address}>: routing loop"), "local")
        return self._remote(where.address)

    def _remote(self, address: str) -> Target | Unroutable:
        if self.transport is None:
            error = MailError("4.4.1", "no transport for remote recipients on this host")
            return Unroutable(error, "smtp")
        try:
            where = self.transport.plan(address)
        except AddressError as exc:
            return Unroutable(MailError("5.1.3", str(exc)), "smtp")
        match where:
            case SMTPRoute(hop=hop, address=wire_address):
                return SMTPRecipient(hop, wire_address)
            case PipeRoute(command=command, native=native):
                return ProgramCall(command, "", native)
            case LocalRoute(user=local):
                user = unquote_local(local).lower()
                if not self.is_local_user(user):
                    return Unroutable(
                        MailError("5.1.1", f"<{address}>: no such local mailbox"), "local"
                    )
                return self._local(user, via_relay=False, address=address)
