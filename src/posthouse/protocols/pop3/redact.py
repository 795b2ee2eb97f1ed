"""POP3 client input with its secrets masked, for the telemetry log (chapter 12.5.5).

`SecretMask` (a :class:`~posthouse.protocols.redact.LineMask`) rewrites

* ``PASS`` (RFC 1939 §7) as ``PASS ***``;
* ``APOP name digest`` (RFC 1939 §7) as ``APOP name ***``: the digest proves the password;
* ``AUTH MECHANISM initial-response`` (RFC 5034 §4) as ``AUTH MECHANISM ***``, and after
  an ``AUTH MECHANISM`` every line as ``***`` until the server says the exchange is over
  (`authentication_done`): those lines are SASL responses;

everything else passes unchanged.
"""

from __future__ import annotations

from posthouse.protocols.redact import MASK, LineMask

__all__ = ["MASK", "SecretMask"]


class SecretMask(LineMask):
    """See the module docstring."""

    def _masked_line(self, line: bytes) -> bytes:
        verb, _, rest = line.partition(b" ")
        match verb.upper():
            case b"PASS":
                return verb + b" " + MASK
            case b"APOP":
                name, space, _digest = rest.rpartition(b" ")
                return b" ".join((verb, name, MASK) if space else (verb, MASK))
            case b"AUTH" if rest:
                self._sasl_follows()
                mechanism, _, initial = rest.partition(b" ")
                return verb + b" " + mechanism + (b" " + MASK if initial else b"")
        return line
