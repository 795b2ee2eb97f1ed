"""Where a remote destination goes, and the blocking bridge to the SMTP client agent.

``RemoteTransport.plan`` decides for one address: a gateway pseudodomain
(DECnet, DECnet/OSI, UUCP, MTS, X.25) is mapped to its native form and sent
through its routing (``direct``: the configured transport program, run by the
pipe agent; ``relay``: SMTP to the relay host; ``internet``: DNS decides);
any other domain goes where ``routing.route`` says (static route, mail
server, relay, or the domain's MX hosts); a pseudodomain alias leaves in the
pseudodomain's own name.  The sender is mapped to its Internet form and
masqueraded (12.1.2) on the way out, by the host's
:class:`~posthouse.mta.rewrite.AddressRewriter`.

Delivery batches run in worker threads while the agent is asyncio code:
``deliver`` submits the agent's coroutine to the server's event loop (bound
with ``bind_loop``) and waits; command-line queue runs, which have no loop,
run it on a private one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from posthouse.mta.address import split_address
from posthouse.mta.agents.smtp import OutboundMessage, RecipientResult, SMTPClientAgent
from posthouse.mta.pseudodomains import AddressError, AddressMapper, NativeAddress
from posthouse.mta.rewrite import AddressRewriter, MasqueradeSettings
from posthouse.mta.routing import NextHop, RoutingSettings, parse_host_spec, route


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
    """Plans remote destinations and delivers them with the SMTP agent."""

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

    async def _deliver_spread(
        self, hop: NextHop, messages: Sequence[OutboundMessage]
    ) -> dict[str, list[RecipientResult]]:
        connections = max(1, min(self.agent.max_connections, len(messages)))
        groups = [messages[index::connections] for index in range(connections)]
        return await _gather_results(self.agent, hop, [g for g in groups if g])

    def outbound_sender(self, sender: str) -> str:
        """The envelope sender as it leaves: Internet form, masqueraded."""
        return self.rewriter.outbound_sender(sender)

    def deliver(
        self, hop: NextHop, messages: Sequence[OutboundMessage]
    ) -> dict[str, list[RecipientResult]]:
        """Deliver over SMTP, blocking the calling (worker) thread.

        The messages are spread over up to the per-destination connection limit, each
        connection carrying several messages in turn.
        """
        coroutine = self._deliver_spread(hop, messages)
        loop = self._loop
        if loop is not None and loop.is_running():
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()
        return asyncio.run(coroutine)


async def _gather_results(
    agent: SMTPClientAgent, hop: NextHop, groups: list[Sequence[OutboundMessage]]
) -> dict[str, list[RecipientResult]]:
    results: dict[str, list[RecipientResult]] = {}
    for part in await asyncio.gather(*(agent.deliver(hop, group) for group in groups)):
        results.update(part)
    return results


__all__ = ["AddressError", "LocalRoute", "PipeRoute", "RemoteTransport", "Route", "SMTPRoute"]
