"""Command-line parsing: verbs, paths, mailboxes, ESMTP parameters."""

from __future__ import annotations

import pytest

from posthouse.protocols.smtp import parse


def test_split_command() -> None:
    assert parse.split_command("mail FROM:<a@b>") == parse.Command("MAIL", "FROM:<a@b>")
    assert parse.split_command("  NOOP  ") == parse.Command("NOOP", "")
    assert parse.split_command("RCPT\tTO:<x@y>") == parse.Command("RCPT", "TO:<x@y>")
    assert parse.split_command("") is None
    assert parse.split_command("M4IL x") is None
    assert parse.split_command("GÉT x") is None


@pytest.mark.parametrize(
    "mailbox",
    [
        "a@b.test",
        "first.last+tag@sub.example.test",
        '"quoted string"@b.test',
        '"a\\"b"@b.test',
        "x@[192.0.2.1]",
        "x@[IPv6:::1]",
        "x@[tag:content]",
        "用户@例子.test",
        "a!#$%&'*+-/=?^_`{|}~@b.test",
    ],
)
def test_valid_mailboxes(mailbox: str) -> None:
    assert parse.is_mailbox(mailbox)


@pytest.mark.parametrize(
    "mailbox",
    [
        "ab.test",
        "@b.test",
        "a@",
        ".a@b.test",
        "a.@b.test",
        "a..b@b.test",
        "a@b..test",
        "a@-b.test",
        "a@b-.test",
        "a@b_c.test",
        '"unterminated@b.test',
        '"a"b"@b.test',
        "a b@c.test",
        "x@[1.2.3]",
        "x@[IPv6:zz]",
        "x@[:x]",
        "a@" + "l" * 64 + ".test",
    ],
)
def test_invalid_mailboxes(mailbox: str) -> None:
    assert not parse.is_mailbox(mailbox)


def test_path_argument() -> None:
    parsed = parse.parse_path_argument(
        "FROM:<a@b.test> size=10 SMTPUTF8", "FROM", null_allowed=True, postmaster_allowed=False
    )
    assert parsed.address == "a@b.test"
    assert parsed.params == {"SIZE": "10", "SMTPUTF8": None}


def test_path_too_long() -> None:
    local = "a" * 64
    domain = ".".join(["d" * 60] * 4) + ".tt"  # > 256 with brackets
    with pytest.raises(parse.PathTooLongError):
        parse.parse_path(f"<{local}@{domain}>", null_allowed=False, postmaster_allowed=False)


@pytest.mark.parametrize(
    "text", ["A=", "=b", "A=b=c", "A B A", "-X", "A=b\x00"[:3] + "=", "K=v K=w"]
)
def test_bad_params(text: str) -> None:
    with pytest.raises(parse.CommandSyntaxError):
        parse.parse_params(text)


def test_source_route_validation() -> None:
    assert (
        parse.parse_path("<@a.test,@b.test:x@c.test>", null_allowed=False, postmaster_allowed=False)
        == "x@c.test"
    )
    with pytest.raises(parse.AddressSyntaxError):
        parse.parse_path("<@a.test,b.test:x@c.test>", null_allowed=False, postmaster_allowed=False)
    with pytest.raises(parse.AddressSyntaxError):
        parse.parse_path("<@a.test>", null_allowed=False, postmaster_allowed=False)
    with pytest.raises(parse.AddressSyntaxError):
        parse.parse_path("<>", null_allowed=False, postmaster_allowed=False)
