"""Tests for posthouse.mta.address."""

from __future__ import annotations

import pytest

from posthouse.mta.address import (
    normalize_local,
    split_address,
    strip_angle_brackets,
    unquote_local,
)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("User@Example.COM", ("User", "example.com")),
        ("postmaster", ("postmaster", "")),
        ("a@b@Host.Example", ("a@b", "host.example")),
        ("user@example.com.", ("user", "example.com")),
        ('"john doe"@example.com', ('"john doe"', "example.com")),
        ("user@", ("user", "")),
        ("", ("", "")),
    ],
)
def test_split_address(addr: str, expected: tuple[str, str]) -> None:
    assert split_address(addr) == expected


def test_normalize_local_is_case_insensitive() -> None:
    assert normalize_local("Owner-Staff") == "owner-staff"
    assert normalize_local("ROOT") == normalize_local("root")


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("<user@example.com>", "user@example.com"),
        ("  < user >  ", "user"),
        ("user", "user"),
        ("<>", ""),
        ("<", "<"),
    ],
)
def test_strip_angle_brackets(addr: str, expected: str) -> None:
    assert strip_angle_brackets(addr) == expected


def test_unquote_local() -> None:
    assert unquote_local('"john doe"') == "john doe"
    assert unquote_local('"a\\"b"') == 'a"b'
    assert unquote_local("plain") == "plain"
    assert unquote_local('"half') == '"half'
