"""cyradm's pieces without a server: IMAP words sent and read, Cyrus's output formats, the
shell's command lines, and what a command says when the server answers NO or BAD."""

from __future__ import annotations

import io

import pytest

from posthouse.admin.cyradm_client import CyradmClient, QuotaRootInfo, QuotaUsage, ServerRefused
from posthouse.admin.cyradm_commands import CommandFailed, columns, execute, help_text
from posthouse.admin.imap_words import WordError, quoted, response_lines, words
from posthouse.cli.cyradm import command_lines, split_line


def test_quoted_sends_atoms_bare_and_anything_else_quoted() -> None:
    assert quoted("user.bob") == "user.bob"
    assert quoted("with space") == '"with space"'
    assert quoted('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'
    assert quoted("") == '""'
    assert quoted("user.*") == '"user.*"'
    assert quoted("user.%", pattern=True) == "user.%"
    with pytest.raises(WordError):
        quoted("two\r\nlines")
    with pytest.raises(WordError):
        quoted("x" * 1001)


def test_words_reads_atoms_strings_lists_and_literals() -> None:
    assert words(b'(\\HasNoChildren) "." "with space"') == [["\\HasNoChildren"], ".", "with space"]
    assert words(b"user.bob (STORAGE 10 100)") == ["user.bob", ["STORAGE", "10", "100"]]
    assert words(b'"a \\"quoted\\" \\\\ one"') == ['a "quoted" \\ one']
    lines = response_lines([(b'() "." {4}', b'a"b)'), b"", b'() "." plain'])
    assert [words(line) for line in lines] == [[[], ".", 'a"b)'], [[], ".", "plain"]]
    with pytest.raises(WordError):
        words(b"(unbalanced")
    with pytest.raises(WordError):
        words(b'"unterminated')


def test_columns_go_down_then_across_as_cyrus_prints_them() -> None:
    assert columns(["a", "bb", "ccc", "dd", "e"], line_length=10) == (
        "a    dd   \nbb   e    \nccc  \n"
    )
    assert columns([]) == ""
    assert columns(["x" * 100]) == "x" * 100 + "\n"  # wider than a line: one per line


def test_command_lines_split_on_semicolons_and_keep_quotes() -> None:
    assert split_line("cm a; sam 'b c' anyone lrs;lm") == [
        ["cm", "a"],
        ["sam", "b c", "anyone", "lrs"],
        ["lm"],
    ]
    assert split_line("   ") == []
    assert command_lines(["lm\ncm a"], ["sam", "x y", "-anyone", "s"]) == [
        "lm",
        "cm a",
        "sam 'x y' -anyone s",
    ]
    assert command_lines([], []) is None


class Answering(CyradmClient):
    """A client whose server answers every command with one status and text."""

    def __init__(self, status: str, text: str) -> None:
        self.status, self.text = status, text
        self.sent: list[tuple[str, tuple[str, ...]]] = []

    def _run(self, command: str, *args: str, want: str | None = None) -> list[bytes]:
        self.sent.append((command, args))
        if self.status != "OK":
            raise ServerRefused(self.status, self.text)
        return []


def run(client: CyradmClient, line: str) -> str:
    out = io.StringIO()
    execute(client, line.split(), out)
    return out.getvalue()


def test_a_bad_answer_says_the_server_does_not_support_the_command() -> None:
    client = Answering("BAD", "Unknown command RECONSTRUCT")
    with pytest.raises(CommandFailed) as failed:
        run(client, "reconstruct user.bob")
    assert str(failed.value) == (
        "reconstruct: the server does not support RECONSTRUCT as sent (Unknown command RECONSTRUCT)"
    )
    client = Answering("NO", "[NOPERM] only an administrator sets quotas")
    with pytest.raises(CommandFailed) as failed:
        run(client, "sq user.bob STORAGE 5")
    assert str(failed.value) == "setquota: [NOPERM] only an administrator sets quotas"


def test_what_each_command_sends() -> None:
    client = Answering("OK", "")
    for line in (
        "cm user.bob.x archive",
        "cm --partition archive user.bob.y",
        "renm user.bob.x user.bob.z archive",
        "sam user.bob anyone lrs fred lwi",
        "dam user.bob anyone fred",
        "sq user.bob STORAGE 100",
        "sq user.bob none",
        "reconstruct -r user.bob",
        "dm user.bob.z",
    ):
        run(client, line)
    assert client.sent == [
        ("CREATE", ("user.bob.x", "archive")),
        ("CREATE", ("user.bob.y", "archive")),
        ("RENAME", ("user.bob.x", "user.bob.z", "archive")),
        ("SETACL", ("user.bob", "anyone", "lrs")),
        ("SETACL", ("user.bob", "fred", "lwi")),
        ("DELETEACL", ("user.bob", "anyone")),
        ("DELETEACL", ("user.bob", "fred")),
        ("SETQUOTA", ("user.bob", "(STORAGE 100)")),
        ("SETQUOTA", ("user.bob", "()")),
        ("RECONSTRUCT", ("user.bob", "RECURSIVE")),
        ("DELETE", ("user.bob.z",)),
    ]


class Quotas(Answering):
    def getquotaroot(self, mailbox: str) -> QuotaRootInfo:
        usage = (QuotaUsage("STORAGE", 1, 3),)
        return QuotaRootInfo(("user.bob",), {"user.bob": usage})


def test_quota_percentages_print_as_perl_prints_them() -> None:
    assert run(Quotas("OK", ""), "lqr user.bob.x") == "user.bob STORAGE 1/3 (33.3333333333333%)\n"


def test_usage_errors_name_the_command_and_its_arguments() -> None:
    client = Answering("OK", "")
    for line, usage in (
        ("cm", "usage: createmailbox [--partition partition] mailbox [partition]"),
        ("sam user.bob anyone", "usage: setacl mailbox id rights [id rights ...]"),
        ("lq", "usage: listquota root"),
        ("exit now", "usage: exit [number]"),
    ):
        with pytest.raises(CommandFailed) as failed:
            run(client, line)
        assert str(failed.value) == usage
    assert client.sent == []
    assert help_text(["lam"]) == "lam, alias for listacl mailbox\n\tlist ACLs on mailbox\n"
