"""The text format of sendmail's aliases(5) file and of ``:include:`` / ``.forward`` lists.

This module owns parsing only: it turns alias-file text into a mapping from
lower-cased alias names to their destination entries, and include-file (or
``~/.forward``) text into a flat tuple of entries.  It never touches the file
system and never expands anything; see :mod:`posthouse.mta.expand` for that.

Alias file syntax::

    # comment (a line whose first non-blank character is '#')
    name: addr, addr, ...
        addr, addr          <- continuation: the line starts with a space or tab

Entries are returned as written, except that an entry which is one quoted
string loses its quotes (``"|/usr/bin/prog a, b"`` -> ``|/usr/bin/prog a, b``;
commas inside quotes do not separate entries), ``Name <addr>`` becomes
``addr`` and ``:include: /path`` becomes ``:include:/path``.  The destination
kinds are: a local name (``user``), the mailbox itself (``\\user``), another
host (``user@host``), ``:include:/path``, ``|program args`` and ``/path/file``.

A line break also ends an entry, so a comma at the end of a line is optional.
Blank lines end an alias (an indented line after a blank line is an error, as
in sendmail); comment lines inside a continued alias are skipped.
"""

from __future__ import annotations

import re

__all__ = [
    "INCLUDE_PREFIX",
    "AliasSyntaxError",
    "parse_address_list",
    "parse_aliases",
    "split_entries",
]

INCLUDE_PREFIX = ":include:"

_BAD_NAME_CHARS = re.compile(r'[\s@,"\\:<>]')


class AliasSyntaxError(Exception):
    """A syntax error in an aliases, include or ``.forward`` file.

    ``str(err)`` is ``"PATH:LINE: message"``.
    """

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


def _normalize_entry(raw: str, source: str, line: int) -> str:
    """Turn one comma-separated item into its canonical entry string."""
    item = raw.strip()
    quoted = len(item) >= 2 and item.startswith('"') and _single_quoted(item)
    if quoted:
        item = _unescape(item[1:-1]).strip()
        if not item:
            raise AliasSyntaxError(source, line, "empty quoted address")
    elif not item.startswith("|") and "<" in item and item.endswith(">"):
        item = item[item.rindex("<") + 1 : -1].strip()
        if not item:
            raise AliasSyntaxError(source, line, f"empty address in {raw.strip()!r}")
    if item[: len(INCLUDE_PREFIX)].lower() == INCLUDE_PREFIX:
        path = item[len(INCLUDE_PREFIX) :].strip()
        if not path:
            raise AliasSyntaxError(source, line, ":include: without a file name")
        return INCLUDE_PREFIX + path
    if item.startswith("|"):
        if not item[1:].strip():
            raise AliasSyntaxError(source, line, "'|' without a program")
        return item
    if not quoted and not _whitespace_only_in_quotes(item):
        # Unquoted whitespace is almost always a missing comma.
        raise AliasSyntaxError(
            source, line, f"unquoted whitespace in address {item!r} (missing comma?)"
        )
    return item


def _single_quoted(item: str) -> bool:
    """True if *item* is exactly one quoted string (the closing quote is the last char)."""
    i = 1
    while i < len(item):
        ch = item[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i == len(item) - 1
        i += 1
    return False


def _unescape(text: str) -> str:
    return re.sub(r'\\(["\\])', r"\1", text)


def _whitespace_only_in_quotes(item: str) -> bool:
    """True if every whitespace character of *item* is inside double quotes."""
    in_quote = False
    escaped = False
    for ch in item:
        if escaped:
            escaped = False
        elif ch == "\\" and in_quote:
            escaped = True
        elif ch == '"':
            in_quote = not in_quote
        elif ch.isspace() and not in_quote:
            return False
    return True


def split_entries(text: str, source: str, line: int) -> list[str]:
    """Split one physical line of an address list at commas outside double quotes.

    Empty items (``a,,b`` or a trailing comma) are skipped.
    """
    items: list[str] = []
    current: list[str] = []
    in_quote = False
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and in_quote:
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            in_quote = not in_quote
        elif ch == "," and not in_quote:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    if in_quote:
        raise AliasSyntaxError(source, line, "unterminated quoted string")
    items.append("".join(current))
    return [_normalize_entry(item, source, line) for item in items if item.strip()]


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse_aliases(text: str, source: str) -> dict[str, tuple[str, ...]]:
    """Parse aliases(5) *text*; *source* names the file in error messages.

    Returns ``{lower-cased name: (entry, ...)}`` in file order.  Raises
    :class:`AliasSyntaxError` for a missing colon, an empty or invalid name, an
    empty destination list, an indented line that continues nothing, an
    unterminated quote, or a duplicate name (the message gives both lines).
    """
    result: dict[str, tuple[str, ...]] = {}
    first_line: dict[str, int] = {}
    current: str | None = None
    current_line = 0
    entries: list[str] = []

    def finish() -> None:
        nonlocal current
        if current is None:
            return
        if not entries:
            raise AliasSyntaxError(source, current_line, f"alias {current!r} has no destinations")
        result[current] = tuple(entries)
        current = None

    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.rstrip()
        if not line.strip():
            finish()
            continue
        if _is_comment(line):
            continue
        if line[0] in " \t":
            if current is None:
                raise AliasSyntaxError(source, lineno, "continuation line does not follow an alias")
            entries.extend(split_entries(line, source, lineno))
            continue
        finish()
        name_part, colon, value = line.partition(":")
        if not colon:
            raise AliasSyntaxError(source, lineno, "missing ':' after alias name")
        name = name_part.strip()
        if not name:
            raise AliasSyntaxError(source, lineno, "empty alias name")
        if _BAD_NAME_CHARS.search(name) or name.startswith("|"):
            raise AliasSyntaxError(source, lineno, f"invalid alias name {name!r}")
        key = name.lower()
        if key in first_line:
            raise AliasSyntaxError(
                source,
                lineno,
                f"duplicate alias {key!r} (first defined at line {first_line[key]},"
                f" again at line {lineno})",
            )
        first_line[key] = lineno
        current = key
        current_line = lineno
        entries = split_entries(value, source, lineno)
    finish()
    return result


def parse_address_list(text: str, source: str) -> tuple[str, ...]:
    """Parse an ``:include:`` file or ``~/.forward``: addresses separated by commas/newlines.

    Comment lines and blank lines are ignored.  Entries are normalised exactly as
    in :func:`parse_aliases`; no name prefix is allowed or expected.
    """
    entries: list[str] = []
    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        if not raw_line.strip() or _is_comment(raw_line):
            continue
        entries.extend(split_entries(raw_line, source, lineno))
    return tuple(entries)
