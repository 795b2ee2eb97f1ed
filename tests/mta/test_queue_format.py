"""Tests for posthouse.mta.queue.control_file: both parsing paths of a control file agree.

A control file in :func:`envelope_to_json`'s own layout is parsed by one regular expression;
anything else by ``json.loads`` and the per-field checks.  Whenever the fast path accepts a
text, the strict path must accept it too and give the identical envelope.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posthouse.mta.queue import control_file as queue_format
from posthouse.mta.queue.control_file import (
    CorruptControlFile,
    Envelope,
    RecipientState,
    envelope_from_json,
    envelope_to_json,
    parse_control,
)

QID = "01abcdefghjkmnpq"


def _strict(text: str) -> Envelope:
    """The ``json.loads`` path alone."""
    return queue_format._envelope_from_doc(json.loads(text), None)


def _fast(text: str) -> Envelope | None:
    return queue_format._canonical_envelope(text)


@pytest.fixture
def no_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ``json.loads`` path fail, to prove the fast path was taken."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("json.loads used")

    monkeypatch.setattr(json, "loads", refuse)


def _typical() -> Envelope:
    return Envelope(
        QID,
        "blaise@example.com",
        [
            RecipientState(
                "corcoran@host1.corp.com",
                "corcoran@host1.corp.com",
                "deferred",
                1,
                "4.4.1 Connection refused by host1.corp.com",
                1798251343.8140042,
            ),
            RecipientState("alice", "postmaster@example.com"),
            RecipientState("gone@example.net", None, "failed", 3, "5.1.1 No such user", 0.0),
            RecipientState("done@example.net", status="sent", attempts=1),
        ],
        1795655743.8140414,
        958,
        client_address="192.0.2.7",
        helo="mx.example.org",
        auth_user="blaise",
        body="8BITMIME",
        smtputf8=True,
        protocol="ESMTPSA",
        extra={"bounce": "single", "ünï": "cødé"},
    )


@pytest.mark.parametrize(
    "envelope",
    [
        _typical(),
        Envelope(QID, "", [], 0.0, 0),  # null sender, no recipients, all defaults
        Envelope(QID, "s@x", [RecipientState("r@y")], 1e9, 10**15),
    ],
)
def test_writer_output_takes_the_fast_path(envelope: Envelope, no_json: None) -> None:
    data = envelope_to_json(envelope)
    parsed = envelope_from_json(data, QID)
    assert parsed == envelope
    assert repr(parsed) == repr(envelope)  # same types too (floats stay floats)


def test_other_layouts_take_the_strict_path() -> None:
    envelope = _typical()
    doc = json.loads(envelope_to_json(envelope))
    spaced = json.dumps(doc, indent=2)  # valid, but not the writer's layout
    reordered = json.dumps(dict(reversed(doc.items())))
    escaped = json.dumps(doc)  # ensure_ascii: \u escapes
    for text in (spaced, reordered, escaped):
        assert _fast(text) is None
        assert envelope_from_json(text.encode(), QID) == envelope
    envelope.recipients[1].address = "\\alice"  # written as "\\alice"
    text = envelope_to_json(envelope).decode()
    assert _fast(text) is None
    assert envelope_from_json(text.encode(), QID) == envelope


def _with(field: str, raw: str) -> bytes:
    """The typical control file with the JSON of ``field`` replaced by ``raw``."""
    text = envelope_to_json(_typical()).decode()
    doc = json.loads(text)
    old = f'"{field}":{json.dumps(doc[field], ensure_ascii=False, separators=(",", ":"))}'
    assert old in text
    return text.replace(old, f'"{field}":{raw}', 1).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_with("v", "3"), "unsupported version 3"),
        (_with("v", "true"), "unsupported version True"),
        (_with("size", '"958"'), "field 'size' has the wrong type"),
        (_with("size", "-1"), "negative size"),
        (_with("size", "true"), "field 'size' has the wrong type"),
        (_with("received_at", "null"), "field 'received_at' has the wrong type"),
        (_with("sender", "7"), "field 'sender' has the wrong type"),
        (_with("recipients", "{}"), "field 'recipients' has the wrong type"),
        (_with("recipients", '["r@x"]'), "recipient is not an object"),
        (_with("recipients", '[{"address":"r@x","status":"bogus"}]'), "unknown recipient"),
        (_with("recipients", '[{"address":"r@x","attempts":true}]'), "'attempts'"),
        (_with("recipients", '[{"original":"r@x"}]'), "missing field 'address'"),
        (_with("extra", '{"k":1}'), "field 'extra' must map strings to strings"),
        (_with("queue_id", '"01abcdefghjkmnpr"'), "does not match the file name"),
    ],
)
def test_corrupt_files_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(CorruptControlFile, match=message):
        envelope_from_json(data, QID)


# Mostly characters the fast path takes as they are, sometimes ones that need escapes.
_PLAIN = ["a", "@", " ", "é", "}", "{", ",", ":", "[", "0", "n", "\x7f", "\udc80"]
_plain_texts = st.text(st.sampled_from(_PLAIN), max_size=6)
_texts = _plain_texts | st.text(st.sampled_from([*_PLAIN, '"', "\\", "\x01", "\n"]), max_size=3)
_ints = st.integers(0, 10**6) | st.integers(-2, 2**60)
_times = st.one_of(
    st.floats(min_value=0, max_value=4e9, allow_nan=False), st.integers(0, 2**60), _ints
).map(float)
_recipients = st.builds(
    RecipientState,
    address=_texts,
    original=st.none() | _texts,
    status=st.sampled_from(["pending", "deferred", "sent", "failed"]),
    attempts=_ints,
    last_error=st.none() | _texts,
    next_attempt=_times,
)
_envelopes = st.builds(
    Envelope,
    queue_id=st.just(QID),
    sender=_texts,
    recipients=st.lists(_recipients, max_size=3),
    received_at=_times,
    size=_ints.filter(lambda n: n >= 0),
    client_address=st.none() | _texts,
    helo=st.none() | _texts,
    auth_user=st.none() | _texts,
    body=st.none() | _texts,
    smtputf8=st.booleans(),
    protocol=_texts,
    extra=st.dictionaries(_texts, _texts, max_size=2),
    inline=st.booleans(),
)
# Files the fast path takes (to be edited): plain strings, plain numbers.
_plain_envelopes = st.builds(
    Envelope,
    queue_id=st.just(QID),
    sender=_plain_texts,
    recipients=st.lists(
        st.builds(
            RecipientState,
            address=_plain_texts,
            original=st.none() | _plain_texts,
            status=st.sampled_from(["pending", "deferred", "sent", "failed"]),
            attempts=st.integers(0, 10**6),
            last_error=st.none() | _plain_texts,
            next_attempt=st.integers(0, 2**40).map(lambda n: n / 1024),
        ),
        max_size=2,
    ),
    received_at=st.integers(0, 2**40).map(lambda n: n / 1024),
    size=st.integers(0, 10**6),
    client_address=st.none() | _plain_texts,
    smtputf8=st.booleans(),
    protocol=_plain_texts,
    extra=st.dictionaries(_plain_texts, _plain_texts, max_size=2),
    inline=st.booleans(),
)


@given(_envelopes)
def test_both_paths_agree_on_written_files(envelope: Envelope) -> None:
    text = envelope_to_json(envelope).decode("utf-8", "surrogatepass")
    fast = _fast(text)
    if fast is not None:
        assert repr(fast) == repr(_strict(text))
    assert repr(envelope_from_json(text.encode("utf-8", "surrogatepass"))) == repr(_strict(text))


_edits = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.integers(0, 3),
        st.sampled_from(
            [
                *'"\\,:{}[]01-.e \n\x01',
                *("null", "true", '"x"', "01", "1e5", "1.", "[]", "{}", ""),
            ]
        ),
    ),
    min_size=1,
    max_size=2,
)


@settings(max_examples=500)
@given(_plain_envelopes, _edits)
def test_fast_path_accepts_nothing_the_strict_path_rejects(
    envelope: Envelope, edits: list[tuple[int, int, str]]
) -> None:
    text = envelope_to_json(envelope).decode("utf-8", "surrogatepass")
    for position, length, replacement in edits:
        at = position % (len(text) + 1)
        text = text[:at] + replacement + text[at + length :]
    fast = _fast(text)
    if fast is not None:
        assert repr(fast) == repr(_strict(text))


def test_parse_control_splits_the_inline_data() -> None:
    envelope = _typical()
    envelope.inline = True
    data = b"Subject: x\r\n\r\n{not json}\n"
    parsed, rest = parse_control(envelope_to_json(envelope) + data, QID)
    assert parsed == envelope and rest == data
    envelope.inline = False
    assert parse_control(envelope_to_json(envelope), QID) == (envelope, b"")
    with pytest.raises(CorruptControlFile, match="data after a version-1 control line"):
        parse_control(envelope_to_json(envelope) + data, QID)
