"""sendmail's per-recipient log line, so that existing log tools can read ours.

``QUEUEID: to=<RCPT>, delay=HH:MM:SS, mailer=MAILER, relay=HOST, stat=...``: the
queue's delivery agents and direct delivery all log through :func:`delivery_line`.
``QUEUEID: from=<SENDER>, size=N, nrcpts=N, proto=PROTO, relay=CLIENT``: every way a
message comes in (an SMTP session, the ``sendmail`` command) logs through
:func:`received_line`.
"""

from __future__ import annotations

from posthouse.mta.routing import NextHop

__all__ = ["delivery_line", "received_line", "relay_name"]


def received_line(
    queue_id: str, sender: str, size: int, recipients: int, protocol: str, relay: str
) -> str:
    """The line logged when a message is received: who sent it, how big, how many
    recipients, by which protocol, from where."""
    return (
        f"{queue_id}: from=<{sender}>, size={size}, nrcpts={recipients}, "
        f"proto={protocol}, relay={relay}"
    )


def delivery_line(queue_id: str, recipient: str, delay: float, mailer: str, relay: str) -> str:
    """The line up to ``stat=`` (the caller adds ``, stat=Sent`` or the failure)."""
    return f"{queue_id}: to=<{recipient}>, delay={_delay(delay)}, mailer={mailer}, relay={relay}"


def relay_name(hop: NextHop) -> str:
    """``host`` or ``host:port`` (when not 25), as the ``relay=`` field shows a next hop."""
    return hop.host + (f":{hop.port}" if hop.port != 25 else "")


def _delay(seconds: float) -> str:
    """sendmail's delay format: [D+]HH:MM:SS.

    >>> _delay(3725), _delay(90061)
    ('01:02:05', '1+01:01:01')
    """
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}+{clock}" if days else clock
