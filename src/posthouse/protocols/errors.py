"""Exceptions shared by the sans-I/O protocol engines.

Engines never raise because of what a peer sends: bad input becomes a protocol
reply.  These exceptions signal programming errors in the I/O layer that drives
an engine (calling the API out of order, answering with an invalid reply).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of every exception raised by ``posthouse.protocols``."""


class UsageError(ProtocolError):
    """The engine API was called in a state where that call is not allowed."""
