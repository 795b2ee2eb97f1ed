"""Address quoting and destination kinds at their edges, found unchecked by mutation testing
(docs/mutation.md): the RFC 5321 local-part checks, the file kind, run_as and the alias
through the queue file on both parsing paths, and how mailq shows each kind."""

from __future__ import annotations

import json

import pytest

from posthouse.mta.address import (
    is_rfc5321_local,
    quote_local,
    split_address,
    strip_angle_brackets,
    unquote_local,
)
from posthouse.mta.destinations import (
    Destination,
    FileDestination,
    LocalMailbox,
    ProgramDestination,
    RemoteAddress,
    decode,
    encode,
    legacy_token,
    shown,
)
from posthouse.mta.queue import control_file as queue_format
from posthouse.mta.queue.control_file import (
    CorruptControlFile,
    Envelope,
    RecipientState,
    envelope_from_json,
    envelope_to_json,
)

# -- address.py -------------------------------------------------------------------------------


def test_split_address_strips_only_the_trailing_dot_of_the_domain() -> None:
    assert split_address("user@MAILX") == ("user", "mailx")
    assert split_address("user@Example.ORG.") == ("user", "example.org")


def test_strip_angle_brackets_needs_both_brackets() -> None:
    assert strip_angle_brackets("user@example.org>") == "user@example.org>"
    assert strip_angle_brackets("<user@example.org") == "<user@example.org"
    assert strip_angle_brackets(" <a@b> ") == "a@b"


def test_unquote_local_drops_a_trailing_lone_backslash() -> None:
    assert unquote_local('"ab\\"') == "ab"
    assert unquote_local('"a\\\\b"') == "a\\b"


@pytest.mark.parametrize(
    "local",
    [
        '"',  # one quote is not a Quoted-string
        '"ab',  # unterminated
        'ab"',
        '"a"b"',  # an unescaped quote inside
        '"ab\\"',  # ends in a lone backslash: the closing quote is escaped
        '"a\x01b"',  # control characters
        '"a\x7fb"',
        '"a\x1fb"',
        "a\x7fb",  # DEL is not atext
        "a b",
    ],
)
def test_is_rfc5321_local_refuses(local: str) -> None:
    assert not is_rfc5321_local(local)


@pytest.mark.parametrize(
    "local", ['"a b"', '"a\\"b"', '"a\\\\"', '""', "a.b", "\x80", "j\u00fcrgen", '"~\x80"']
)
def test_is_rfc5321_local_accepts(local: str) -> None:
    assert is_rfc5321_local(local)


def test_quote_local_quotes_del_but_not_non_ascii_or_a_leading_x() -> None:
    assert quote_local("a\x7fb") == '"a\x7fb"'
    assert quote_local("\x80") == "\x80"  # U+0080 is UTF8-non-ascii (RFC 6531)
    assert quote_local("Xavier") == "Xavier"
    assert quote_local("XX") == "XX"


# -- destinations.py --------------------------------------------------------------------------

FILE = FileDestination("/var/log/archive", "archive", "bob")
PROGRAM = ProgramDestination("/usr/bin/vacation bob", "bob", "bob")
ALL: list[Destination] = [FILE, PROGRAM, LocalMailbox("alice"), RemoteAddress("a@example.org")]


def test_encode_and_decode_every_kind() -> None:
    assert encode(FILE) == ("file", "/var/log/archive", "bob")
    assert encode(PROGRAM) == ("program", "/usr/bin/vacation bob", "bob")
    for destination in ALL:
        kind, address, run_as = encode(destination)
        alias = getattr(destination, "alias", "")
        assert decode(kind, address, run_as, alias) == destination


def test_decode_defaults_to_no_alias_and_the_default_user() -> None:
    assert decode("file", "/tmp/f", None) == FileDestination("/tmp/f", "", "")
    assert decode("program", "cmd", None) == ProgramDestination("cmd", "", "")
    assert decode("program", "cmd", None, "alias") == ProgramDestination("cmd", "alias", "")


def test_not_a_destination_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="not a destination: 'x'"):
        encode("x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a destination: 'x'"):
        legacy_token("x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "address", "expected"),
    [
        ("local", "alice", "\\alice"),
        ("program", "/usr/bin/vacation bob", "|/usr/bin/vacation bob"),
        ("file", "/var/log/archive", "/var/log/archive"),
        ("remote", "a@example.org", "a@example.org"),
        ("legacy", "|old", "|old"),
    ],
)
def test_mailq_shows_each_kind_in_sendmail_notation(kind: str, address: str, expected: str) -> None:
    assert shown(kind, address) == expected


# -- control_file.py: kinds in the control file -----------------------------------------------


def _envelope() -> Envelope:
    return Envelope(
        "q1",
        "s@example.org",
        [
            RecipientState.expanded(FILE, "archive"),
            RecipientState.expanded(PROGRAM, "bob"),
            RecipientState.expanded(LocalMailbox("alice"), "Alice@example.org"),
        ],
        1.0,
        0,
    )


def test_expanded_recipients_keep_run_as_and_alias() -> None:
    states = _envelope().recipients
    assert [(s.kind, s.address, s.run_as) for s in states] == [
        ("file", "/var/log/archive", "bob"),
        ("program", "/usr/bin/vacation bob", "bob"),
        ("local", "alice", None),
    ]
    assert [s.destination() for s in states] == [FILE, PROGRAM, LocalMailbox("alice")]


def _check_read_back(read: Envelope) -> None:
    assert read == _envelope()
    assert [r.destination() for r in read.recipients] == [FILE, PROGRAM, LocalMailbox("alice")]


def test_kinds_survive_the_fast_path() -> None:
    data = envelope_to_json(_envelope())
    assert queue_format._canonical_envelope(data.decode()) is not None
    _check_read_back(envelope_from_json(data))


def test_kinds_survive_the_strict_path() -> None:
    doc = json.loads(envelope_to_json(_envelope()))
    data = json.dumps(doc, indent=1).encode()  # not the writer's layout: json.loads reads it
    assert queue_format._canonical_envelope(data.decode()) is None
    _check_read_back(envelope_from_json(data))


def _old_file(recipient: dict[str, object]) -> bytes:
    doc = json.loads(envelope_to_json(Envelope("q1", "", [], 0.0, 0)))
    doc["recipients"] = [recipient]
    return json.dumps(doc).encode()


def test_a_recipient_from_before_kinds_is_an_address_or_a_legacy_token() -> None:
    (unexpanded,) = envelope_from_json(_old_file({"address": "a@b"})).recipients
    assert (unexpanded.kind, unexpanded.destination()) == ("address", None)
    (token,) = envelope_from_json(_old_file({"address": "|x", "original": "a@b"})).recipients
    assert (token.kind, token.destination()) == ("legacy", None)


@pytest.mark.parametrize(
    ("recipient", "message"),
    [
        ({"address": "a@b", "original": "a@b", "kind": "shell"}, "unknown recipient kind 'shell'"),
        ({"address": "|x", "kind": "program"}, "a program recipient without its original"),
        ({"address": "/f", "original": "a", "kind": "file", "run_as": 0}, "'run_as' has the wrong"),
        ("|x", "^recipient is not an object$"),
    ],
)
def test_bad_recipients_are_refused_with_the_reason(recipient: object, message: str) -> None:
    data = _old_file(recipient)  # type: ignore[arg-type]
    with pytest.raises(CorruptControlFile, match=message):
        envelope_from_json(data)
