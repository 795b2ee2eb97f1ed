"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.protocols.imap import mutf7
from posthouse.protocols.imap.errors import CommandError


def test_the_rfc_3501_example_both_ways() -> None:
    # RFC 3501 §5.1.3: "~peter/mail/&U,BTFw-/&ZeVnLIqe-" is "~peter/mail/台北/日本語".
    assert mutf7.decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-") == "~peter/mail/台北/日本語"
    assert mutf7.encode("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("&", "&-"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("€", "&IKw-"),
        ("😀", "&2D3eAA-"),  # a supplementary character: a UTF-16 surrogate pair
        ("", ""),
    ],
)
def test_known_names(name: str, encoded: str) -> None:
    assert mutf7.encode(name) == encoded
    assert mutf7.decode(encoded) == name


@pytest.mark.parametrize(
    "bad",
    [
        "&U,BTFw",  # unterminated shift
        "&Jjo!-",  # not base64
        "&AGE-",  # "a" (printable ASCII) inside a shift
        "&2D0-",  # a lone high surrogate
        "&AP-",  # bits that do not end on a character
        "&APw-&APw-",  # two adjacent shifts: the encoder writes one
        "caf\u00e9",  # 8-bit character outside a shift
        "a\x01b",  # control character
    ],
)
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(CommandError) as caught:
        mutf7.decode(bad)
    assert caught.value.status == "BAD"
    assert "modified UTF-7" in caught.value.text


@given(st.text(max_size=40))
def test_round_trip_and_ascii_only(name: str) -> None:
    encoded = mutf7.encode(name)
    assert encoded.isascii()
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert mutf7.decode(encoded) == name


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30))
def test_decode_never_raises_anything_but_the_protocol_error(name: str) -> None:
    with contextlib.suppress(CommandError):
        mutf7.decode(name)


def test_wire_forms_follow_utf8_accept() -> None:
    assert mutf7.to_wire("Entwürfe", utf8=False) == "Entw&APw-rfe"
    assert mutf7.to_wire("Entwürfe", utf8=True) == "Entwürfe"
    assert mutf7.from_wire("Entw&APw-rfe", utf8=False) == "Entwürfe"
    assert mutf7.from_wire("Tom & Jerry", utf8=True) == "Tom & Jerry"
    with pytest.raises(CommandError):
        mutf7.from_wire("Tom & Jerry", utf8=False)
