"""Where a remote destination goes, and the blocking bridge to the delivery agents.

``RemoteTransport.plan`` decides for one address: a gateway pseudodomain
(DECnet, DECnet/OSI, UUCP, MTS, X.25) is mapped to its native form and sent
through its routing (``direct``: the configured transport program, run by the
pipe agent; ``relay``: SMTP to the relay host; ``internet``: DNS decides);
any other domain goes where ``routing.route`` says (static route, mail
server, relay, or the domain's MX hosts); a pseudodomain alias leaves in the
pseudodomain's own name.  The sender is mapped to its Internet form and
masqueraded (12.1.2) on the way out, by the host's
:class:`~posthouse.mta.rewrite.AddressRewriter`.

Queue delivery batches run in worker threads while the delivery agents
(:mod:`posthouse.mta.agents.transaction`) are asyncio code: ``run`` submits a
batch's coroutine to the server's event loop (bound with ``bind_loop``) and
waits; command-line queue runs, which have no loop, run it on a private one
that keeps the SMTP agent's connections for the length of the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from posthouse.mta.address import split_address
from posthouse.mta.agents.smtp import SMTPClientAgent
from posthouse.mta.pseudodomains import AddressError, AddressMapper, NativeAddress
from posthouse.mta.rewrite import AddressRewriter, MasqueradeSettings
from posthouse.mta.routing import NextHop, RoutingSettings, parse_host_spec, route

T = TypeVar("T")


@dataclass(frozen=True)
class SMTPRoute:
    """Send over SMTP to ``hop``."""

    hop: NextHop
    address: str


@dataclass(frozen=True)
class PipeRoute:
    """Hand to a gateway's transport program (routing ``direct``)."""

    command: str
    native: NativeAddress


@dataclass(frozen=True)
class LocalRoute:
    """The address turned out to be this host's after all (e.g. a host alias)."""

    user: str


Route = SMTPRoute | PipeRoute | LocalRoute


class RemoteTransport:
    """Plans remote destinations; runs queue runs' deliveries on the right event loop."""

    def __init__(
        self,
        *,
        agent: SMTPClientAgent,
        routing: RoutingSettings,
        mapper: AddressMapper,
        masquerade: MasqueradeSettings | None,
        local_domains: Sequence[str],
        default_domain: str,
        hostname: str = "",
    ) -> None:
        self.agent = agent
        self.routing = routing
        self.mapper = mapper
        self.masquerade = masquerade
        self.local_domains = tuple(local_domains)
        self.default_domain = default_domain
        self.rewriter = AddressRewriter(
            hostname or default_domain, mapper, masquerade, self.local_domains
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def forwards_local_mail(self) -> bool:
        """forwarding = local (12.2.3.2): even local-domain mail goes to the relay."""
        return self.routing.role != "client" and self.routing.forwarding == "local"

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run deliveries on ``loop`` (the server's), keeping idle connections for reuse."""
        self._loop = loop
        self.agent.keep_connections(loop)

    def plan(self, address: str) -> Route:
        """Where ``address`` goes; raises AddressError for a malformed gateway address."""
        native = self.mapper.to_native(address)
        if native is not None:
            pseudo = native.pseudodomain
            match pseudo.routing:
                case "direct":
                    return PipeRoute(pseudo.transport, native)
                case "relay":
                    host, port, use_mx = parse_host_spec(pseudo.relay_host)
                    relay = NextHop(host, port, use_mx, f"{pseudo.name} relay")
                    return SMTPRoute(relay, self.mapper.canonical(address))
        local, domain = split_address(address)
        hop = route(domain or self.default_domain, self.routing)
        if hop is None:
            return LocalRoute(local)
        return SMTPRoute(hop, self.mapper.canonical(address))

    def outbound_sender(self, sender: str) -> str:
        """The envelope sender as it leaves: Internet form, masqueraded."""
        return self.rewriter.outbound_sender(sender)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` (deliveries), blocking the calling (worker) thread: on the
        server's loop when one is bound, else on a private one."""
        loop = self._loop
        if loop is not None and loop.is_running():
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()
        return asyncio.run(self._privately(coroutine))

    async def _privately(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """A private loop's run: connections to a hop are reused while it lasts."""
        self.agent.keep_connections(asyncio.get_running_loop())
        try:
            return await coroutine
        finally:
            await self.agent.close_idle()
            self.agent.keep_connections(None)


__all__ = ["AddressError", "LocalRoute", "PipeRoute", "RemoteTransport", "Route", "SMTPRoute"]
