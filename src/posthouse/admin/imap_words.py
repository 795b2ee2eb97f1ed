"""Reading and writing the words of IMAP lines for an administrative client.

:func:`quoted` turns a mailbox name, identifier or rights string into an IMAP astring
(RFC 3501 §4.3: an atom when it can be one, else a quoted string); :func:`words` splits an
untagged response's data (as :mod:`imaplib` hands it over, literals as ``(head, bytes)``
pairs) into atoms, strings and parenthesised lists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["MAX_WORD", "ImapWord", "WordError", "quoted", "response_lines", "words"]

#: The longest word the client sends (a mailbox name, identifier or rights string).
MAX_WORD = 1000

# RFC 3501 §9: ATOM-CHAR is any CHAR except atom-specials ( ) { SP CTL % * " \ ]
_ATOM = re.compile(rb"[^(){ \x00-\x1f\x7f%*\"\\\]]+")
_LIST_ATOM = re.compile(rb"[^(){ \x00-\x1f\x7f\"\\]+")  # LIST patterns may hold % and *

ImapWord = str | list["ImapWord"]


class WordError(ValueError):
    """A word the client cannot send, or a response it cannot read."""


def quoted(word: str, *, pattern: bool = False) -> str:
    """*word* as an IMAP astring: an atom if it is one (``pattern``: ``%`` and ``*`` allowed,
    RFC 3501 §6.3.8's list-mailbox), else a quoted string (RFC 3501 §4.3)."""
    if len(word) > MAX_WORD:
        raise WordError(f"{word[:40]}...: longer than {MAX_WORD} characters")
    if "\r" in word or "\n" in word or "\x00" in word:
        raise WordError(f"{word!r}: line breaks and NUL cannot be sent")
    encoded = word.encode("utf-8")
    atom = _LIST_ATOM if pattern else _ATOM
    if encoded and atom.fullmatch(encoded):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def response_lines(data: Sequence[bytes | tuple[bytes, bytes] | None]) -> list[bytes]:
    """The untagged responses in *data* as whole lines, each literal made a quoted string
    (imaplib gives a literal as ``(b'... {N}', literal)`` followed by the line's rest)."""
    lines: list[bytes] = []
    pending: bytes | None = None
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            head, literal = item
            head = re.sub(rb"\{\d+\}$", b"", head)
            text = literal.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
            pending = (pending or b"") + head + b'"' + text + b'"'
            continue
        if pending is not None:
            lines.append(pending + item)
            pending = None
        else:
            lines.append(item)
    if pending is not None:
        lines.append(pending)
    return lines


def words(line: bytes) -> list[ImapWord]:
    """The words of one response line: atoms and strings as ``str``, ``NIL`` as ``"NIL"``,
    parenthesised lists as lists."""
    stack: list[list[ImapWord]] = [[]]
    at = 0
    while at < len(line):
        char = line[at : at + 1]
        if char == b" ":
            at += 1
        elif char == b"(":
            stack.append([])
            at += 1
        elif char == b")":
            if len(stack) == 1:
                raise WordError(f"unbalanced ')' in {line!r}")
            done = stack.pop()
            stack[-1].append(done)
            at += 1
        elif char == b'"':
            at, text = _quoted_string(line, at + 1)
            stack[-1].append(text)
        else:
            match = re.compile(rb"[^ ()\"]+").match(line, at)
            assert match is not None  # a non-space, non-paren, non-quote byte starts one
            stack[-1].append(match.group().decode("utf-8", "replace"))
            at = match.end()
    if len(stack) != 1:
        raise WordError(f"unbalanced '(' in {line!r}")
    return stack[0]


def _quoted_string(line: bytes, at: int) -> tuple[int, str]:
    text = bytearray()
    while at < len(line):
        char = line[at]
        if char == 0x5C and at + 1 < len(line):  # backslash quotes the next byte
            text.append(line[at + 1])
            at += 2
        elif char == 0x22:
            return at + 1, text.decode("utf-8", "replace")
        else:
            text.append(char)
            at += 1
    raise WordError(f"unterminated string in {line!r}")
