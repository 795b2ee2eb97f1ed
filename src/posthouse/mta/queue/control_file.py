"""The queue's control-file format: the envelope types and their JSON codec.

This module owns what an ``ID.qf`` file of the queue (see :mod:`posthouse.mta.queue.store`)
contains: one line of UTF-8 JSON, ``{"v": 1, "queue_id": ID, "sender": ..., "recipients":
[{"address", "original", "status", "attempts", "last_error", "next_attempt", "kind",
"run_as"}, ...],
"received_at": <unix time>, "size": <bytes of message data>, "client_address", "helo",
"auth_user", "body", "smtputf8", "protocol", "extra": {str: str}}``.  Version 1: the
message data is in ``ID.df``.  Version 2 (``"v": 2``, :attr:`Envelope.inline`): the
``size`` bytes of message data follow the line in the same file, so a small message is one
file (one create, one fsync, one rename, one unlink).  :func:`parse_control` takes a whole
control file apart.  Readers reject any other ``"v"``.

A recipient's ``kind`` (:mod:`posthouse.mta.destinations`) says what its ``address`` is:
``"address"`` for an envelope recipient not yet expanded (``original`` is null), else the
kind of destination expansion made of ``original`` (``"remote"``, ``"local"``, ``"file"``,
``"program"``, with ``run_as`` for the last two).  A recipient written before kinds existed
has no ``kind``: it is read as ``"address"`` when not expanded and as ``"legacy"`` when it
is, a token whose kind cannot be proven and that delivery never interprets.

:class:`QueueError`, the base of all queue errors, lives here because the parser raises
:class:`CorruptControlFile`.

Parsing has two paths giving the same result.  A file in exactly the shape
:func:`envelope_to_json` writes (its key order, no whitespace, strings without escapes, plain
non-negative numbers) is taken apart by one compiled regular expression, which checks every
field's type as it matches (several times faster than ``json.loads`` plus per-field checks;
listing and scanning a large queue parse every control file).  Anything else (escapes, other
key orders or spacing, nulls where the writer puts values) goes through ``json.loads`` and the
per-field checks, which accept any valid version-1 file and reject all else.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from posthouse.mta.destinations import ADDRESS, KINDS, LEGACY, Destination, Kind, decode, encode

__all__ = [
    "CONTROL_VERSION",
    "CorruptControlFile",
    "Envelope",
    "QueueError",
    "RecipientState",
    "RecipientStatus",
    "envelope_from_json",
    "envelope_to_json",
    "inline_data",
    "parse_control",
]

CONTROL_VERSION = 1  # the data is in ID.df
INLINE_VERSION = 2  # the data follows the control line

RecipientStatus = Literal["pending", "deferred", "sent", "failed"]
_STATUSES = ("pending", "deferred", "sent", "failed")


class QueueError(Exception):
    """Base class of queue errors."""


class CorruptControlFile(QueueError, ValueError):
    """A control file that cannot be parsed or has an unknown version."""


@dataclass
class RecipientState:
    """One recipient of a queued message and its delivery state."""

    address: str
    original: str | None = None
    status: RecipientStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    next_attempt: float = 0.0
    kind: Kind = ADDRESS
    run_as: str | None = None

    @classmethod
    def expanded(cls, destination: Destination, original: str) -> RecipientState:
        """A pending recipient for *destination*, which expansion made of *original*."""
        kind, address, run_as = encode(destination)
        return cls(address=address, original=original, kind=kind, run_as=run_as)

    def destination(self) -> Destination | None:
        """The typed destination, or None for an unexpanded address or a legacy token."""
        return decode(self.kind, self.address, self.run_as, self.original or "")


@dataclass
class Envelope:
    """The contents of a control file."""

    queue_id: str
    sender: str
    recipients: list[RecipientState]
    received_at: float
    size: int
    client_address: str | None = None
    helo: str | None = None
    auth_user: str | None = None
    body: str | None = None
    smtputf8: bool = False
    protocol: str = "ESMTP"
    extra: dict[str, str] = field(default_factory=dict)
    inline: bool = False  # the data follows the control line (version 2), not in ID.df


# -- control file (de)serialisation ----------------------------------------------------------


def envelope_to_json(envelope: Envelope) -> bytes:
    """Serialise ``envelope`` as a control line (version 2 if ``inline``, else 1)."""
    doc: dict[str, Any] = {"v": INLINE_VERSION if envelope.inline else CONTROL_VERSION}
    doc.update(dataclasses.asdict(envelope))
    del doc["inline"]
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode(
        "utf-8", "surrogatepass"
    )


def _field(
    doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, optional: bool
) -> Any:
    if key not in doc:
        if optional:
            return None
        raise CorruptControlFile(f"missing field {key!r}")
    value = doc[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise CorruptControlFile(f"field {key!r} has the wrong type")
    if not isinstance(value, kind):
        raise CorruptControlFile(f"field {key!r} has the wrong type")
    return value


def _recipient_from(doc: Any) -> RecipientState:
    if not isinstance(doc, dict):
        raise CorruptControlFile("recipient is not an object")
    status = _field(doc, "status", str, optional=True) or "pending"
    if status not in _STATUSES:
        raise CorruptControlFile(f"unknown recipient status {status!r}")
    attempts = _field(doc, "attempts", int, optional=True)
    next_attempt = _field(doc, "next_attempt", (int, float), optional=True)
    original = _field(doc, "original", str, optional=True)
    kind = _field(doc, "kind", str, optional=True)
    if kind is None:  # written before kinds existed: never guess what a token means
        kind = ADDRESS if original is None else LEGACY
    elif kind not in KINDS:
        raise CorruptControlFile(f"unknown recipient kind {kind!r}")
    if kind != ADDRESS and original is None:
        raise CorruptControlFile(f"a {kind} recipient without its original address")
    return RecipientState(
        address=_field(doc, "address", str, optional=False),
        original=original,
        status=cast(RecipientStatus, status),
        attempts=attempts or 0,
        last_error=_field(doc, "last_error", str, optional=True),
        next_attempt=float(next_attempt or 0.0),
        kind=cast(Kind, kind),
        run_as=_field(doc, "run_as", str, optional=True),
    )


def _check_id(envelope_id: str, queue_id: str | None) -> None:
    if queue_id is not None and envelope_id != queue_id:
        raise CorruptControlFile(f"queue id {envelope_id!r} does not match the file name")


def _envelope_from_doc(doc: Any, queue_id: str | None) -> Envelope:
    if not isinstance(doc, dict):
        raise CorruptControlFile("not a JSON object")
    version = doc.get("v")
    if version not in (CONTROL_VERSION, INLINE_VERSION) or isinstance(version, bool):
        raise CorruptControlFile(f"unsupported version {version!r}")
    qid = _field(doc, "queue_id", str, optional=False)
    _check_id(qid, queue_id)
    recipients = _field(doc, "recipients", list, optional=False)
    extra = _field(doc, "extra", dict, optional=True) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise CorruptControlFile("field 'extra' must map strings to strings")
    size = _field(doc, "size", int, optional=False)
    if size < 0:
        raise CorruptControlFile("negative size")
    return Envelope(
        queue_id=qid,
        sender=_field(doc, "sender", str, optional=False),
        recipients=[_recipient_from(r) for r in recipients],
        received_at=float(_field(doc, "received_at", (int, float), optional=False)),
        size=size,
        client_address=_field(doc, "client_address", str, optional=True),
        helo=_field(doc, "helo", str, optional=True),
        auth_user=_field(doc, "auth_user", str, optional=True),
        body=_field(doc, "body", str, optional=True),
        smtputf8=bool(_field(doc, "smtputf8", bool, optional=True)),
        protocol=_field(doc, "protocol", str, optional=True) or "ESMTP",
        extra=dict(extra),
        inline=version == INLINE_VERSION,
    )


# -- the fast path: the writer's own layout, matched in one go ---------------------------------

_STR = r'"([^"\\\x00-\x1f]*)"'  # a JSON string that needs no unescaping
_OPT_STR = f"(?:null|{_STR})"
_UINT = r"(0|[1-9][0-9]{0,15})"  # json.loads gives an int, and float() of it is exact
_UNUM = r"((?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,20})?)"  # json.loads gives float() of the text
_RECIPIENT = (
    f'{{"address":{_STR},"original":{_OPT_STR},"status":"(pending|deferred|sent|failed)",'
    f'"attempts":{_UINT},"last_error":{_OPT_STR},"next_attempt":{_UNUM},'
    f'"kind":"(address|remote|local|file|program|legacy)","run_as":{_OPT_STR}}}'
)
_PAIR = f"{_STR}:{_STR}"


def _uncaptured(pattern: str) -> str:
    return re.sub(r"\((?!\?)", "(?:", pattern)


# The first recipient's fields are groups of the whole match (most messages have one); the
# others, if any, are one group that _MORE_RECIPIENTS takes apart.
_CANONICAL = re.compile(
    f'{{"v":([{CONTROL_VERSION}{INLINE_VERSION}]),"queue_id":{_STR},"sender":{_STR},"recipients":\\['
    f"(?:{_RECIPIENT}((?:,{_uncaptured(_RECIPIENT)})*))?"
    f'\\],"received_at":{_UNUM},"size":{_UINT},"client_address":{_OPT_STR},"helo":{_OPT_STR},'
    f'"auth_user":{_OPT_STR},"body":{_OPT_STR},"smtputf8":(true|false),"protocol":{_STR},'
    f'"extra":{{((?:{_uncaptured(_PAIR)}(?:,{_uncaptured(_PAIR)})*)?)}}}}\n?'
).fullmatch
_MORE_RECIPIENTS = re.compile(_RECIPIENT).finditer
_PAIRS = re.compile(_PAIR).findall


def _recipient(
    address: str,
    original: str | None,
    status: str,
    attempts: str,
    error: str | None,
    at: str,
    kind: str,
    run_as: str | None,
) -> RecipientState:
    if kind != ADDRESS and original is None:
        raise CorruptControlFile(f"a {kind} recipient without its original address")
    return RecipientState(
        address,
        original,
        cast(RecipientStatus, status),
        int(attempts),
        error,
        float(at),
        cast(Kind, kind),
        run_as,
    )


def _canonical_envelope(text: str) -> Envelope | None:
    """The envelope if ``text`` is in :func:`envelope_to_json`'s exact layout, else None."""
    match = _CANONICAL(text)
    if match is None:
        return None
    (
        version, qid, sender, address, original, status, attempts, error, at, kind, run_as, more,
        received, size, client, helo, auth, body, utf8, proto, extra,
    ) = match.groups()  # fmt: skip
    recipients = []
    if address is not None:
        recipients.append(_recipient(address, original, status, attempts, error, at, kind, run_as))
        if more:
            recipients.extend(_recipient(*m.groups()) for m in _MORE_RECIPIENTS(more))
    return Envelope(
        qid,
        sender,
        recipients,
        float(received),
        int(size),
        client,
        helo,
        auth,
        body,
        utf8 == "true",
        proto or "ESMTP",
        dict(_PAIRS(extra)) if extra else {},
        version == str(INLINE_VERSION),
    )


def envelope_from_json(data: bytes, queue_id: str | None = None) -> Envelope:
    """Parse a control file; raises :class:`CorruptControlFile` for anything unexpected."""
    try:
        text = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise CorruptControlFile(f"not JSON: {exc}") from None
    envelope = _canonical_envelope(text)
    if envelope is None:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CorruptControlFile(f"not JSON: {exc}") from None
        return _envelope_from_doc(doc, queue_id)
    _check_id(envelope.queue_id, queue_id)
    return envelope


def parse_control(data: bytes, queue_id: str | None = None) -> tuple[Envelope, bytes]:
    """A whole control file: its envelope, and the message data that follows the control
    line in a version-2 file (``b""`` for version 1, whose data is in ``ID.df``).  Data
    shorter or longer than the envelope's ``size`` is the caller's to judge (a damaged entry,
    not an unreadable one)."""
    end = data.find(b"\n") + 1 or len(data)
    envelope = envelope_from_json(data[:end], queue_id)
    rest = data[end:]
    if rest and not envelope.inline:
        raise CorruptControlFile("data after a version-1 control line")
    return envelope, rest


_INLINE_MARK = b'{"v":%d,' % INLINE_VERSION


def inline_data(data: bytes, queue_id: str | None = None) -> bytes | None:
    """The message data held by a whole control file (version 2), or None (version 1).

    A control line in the writer's own layout is recognised by its first bytes, without
    parsing it again (a claim has just parsed it); any other is parsed."""
    end = data.find(b"\n") + 1
    if end and data.startswith(_INLINE_MARK):
        return data[end:]
    envelope, rest = parse_control(data, queue_id)
    return rest if envelope.inline else None
