"""Editing a configuration file in place: only the options whose values change.

``posthouse setup`` changes a few options of a file the administrator may have written and
commented by hand.  :func:`edit_config` writes the new values into the existing text and
keeps everything else byte for byte (comments, order, blank lines, the way other values are
written):

* an option whose value changes keeps its line, its key and any comment after the value;
  only the value is replaced (a multi-line array as a whole);
* an option that is not in the file yet is added at the end of its table (with the short
  comment :mod:`posthouse.config.render` gives it), a table that is not in the file yet at
  the end of the file;
* an array-of-tables entry (``[[pseudodomain]]``) is matched to the file's by its identity
  (:data:`ENTRY_IDENTITY`, else the whole entry): a matched entry is edited like a table, an
  entry that goes is removed with the comment lines right above its header, a new one is
  added at the end of the file.

The result is checked by parsing it: when it does not give the new configuration (a file
written in a form this editor does not follow, such as dotted keys or inline tables for the
tables it edits), :func:`edit_config` returns None and the caller decides (setup then
writes the whole file from its values, and says so).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from posthouse.config.load import ConfigError, parse_config
from posthouse.config.render import ALWAYS_IN_ENTRY, key_lines, table_lines, toml_value
from posthouse.config.schema import Config

__all__ = ["ENTRY_IDENTITY", "edit_config"]

#: The field that tells an array-of-tables entry from the others (absent: the whole entry).
ENTRY_IDENTITY: dict[str, str] = {"pseudodomain": "protocol"}

_BARE_OR_QUOTED = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_KEY = re.compile(rf"\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=\s*")
_HEADER = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)*)\s*(\]\]?)\s*(#.*)?")


class _Unsupported(Exception):
    """The text is in a form this editor does not follow."""


@dataclass
class _Entry:
    key: str | None  # the key, unquoted; None for a dotted key
    line: int  # where the key is
    start: tuple[int, int]  # (line, column) where the value starts
    end: tuple[int, int]  # (line, column) just after the value


@dataclass
class _Table:
    name: str  # "" for the top level
    array: bool
    header: int  # the header's line (-1 for the top level)
    entries: list[_Entry] = field(default_factory=list)

    @property
    def last_line(self) -> int:
        """The last line of the header and the options (comments after them excluded)."""
        return max([self.header, *(entry.end[0] for entry in self.entries)])

    def entry(self, key: str) -> _Entry | None:
        return next((e for e in self.entries if e.key == key), None)


def edit_config(text: str, old: Config, new: Config) -> str | None:
    """``text`` (the file that gave ``old``) with ``new``'s values (module docstring)."""
    lines = _lines(text)
    try:
        tables = _scan(lines)
        editor = _Editor(lines, tables)
        for f in dataclasses.fields(Config):
            before, after = getattr(old, f.name), getattr(new, f.name)
            if before == after:
                continue
            if isinstance(after, tuple):
                editor.array(f.name, before, after)
            else:
                editor.section(f.name, before, after)
        edited = editor.result()
        if parse_config(edited, "edited") != new:
            return None
    except (_Unsupported, ConfigError):
        return None
    return edited


class _Editor:
    """Collects replacements of line ranges and text to append, then applies them."""

    def __init__(self, lines: list[str], tables: list[_Table]) -> None:
        self.lines = lines
        self.tables = tables
        self.replaced: list[tuple[int, int, str]] = []  # (first line, last line, new text)
        self.appended: list[list[str]] = []

    def section(self, name: str, before: Any, after: Any) -> None:
        found = [t for t in self.tables if t.name == name and not t.array]
        if not found:
            self.appended.append(table_lines(f"[{name}]", name, after, _changed(before, after)))
            return
        self._edit_table(found[-1], name, before, after)

    def array(self, name: str, before: tuple[Any, ...], after: tuple[Any, ...]) -> None:
        blocks = [t for t in self.tables if t.name == name and t.array]
        if len(blocks) != len(before):
            raise _Unsupported(f"[[{name}]] tables do not match the configuration")
        identity = ENTRY_IDENTITY.get(name)

        def ident(entry: Any) -> Any:
            return getattr(entry, identity) if identity else entry

        wanted = list(after)  # each matched at most once, in order
        for block, entry in zip(blocks, before, strict=True):
            match = next((w for w in wanted if ident(w) == ident(entry)), None)
            if match is None:
                self._remove(block)
            else:
                wanted.remove(match)
                self._edit_table(block, name, entry, match)
        entry_type = type(after[0]) if after else None
        for entry in wanted:
            assert entry_type is not None
            keys = _changed(entry_type(), entry, ALWAYS_IN_ENTRY.get(name, ()))
            self.appended.append(table_lines(f"[[{name}]]", name, entry, keys))

    def _edit_table(self, table: _Table, name: str, before: Any, after: Any) -> None:
        added: list[str] = []
        for key in _changed(before, after):
            value = getattr(after, key)
            found = table.entry(_file_key(after, key))
            if found is None:
                added.extend(key_lines(name, _file_key(after, key), value))
            else:
                self._replace_value(found, value)
        if added:  # after the table's last option (a section's header is never line -1)
            last = table.last_line
            newline = "" if self.lines[last].endswith("\n") else "\n"
            self.replaced.append((last + 1, last, newline + "".join(f"{a}\n" for a in added)))

    def _replace_value(self, entry: _Entry, value: Any) -> None:
        (first, column), (last, end) = entry.start, entry.end
        text = self.lines[first][:column] + toml_value(value) + self.lines[last][end:]
        self.replaced.append((first, last, text))

    def _remove(self, table: _Table) -> None:
        first = table.header
        while first > 0 and self.lines[first - 1].lstrip().startswith("#"):
            first -= 1  # the comment lines right above the header go with it
        self.replaced.append((first, table.last_line, ""))

    def result(self) -> str:
        lines = list(self.lines)
        # Replacements never overlap; applied from the end, earlier line numbers stay right.
        ordered = sorted(self.replaced, key=lambda r: (r[0], r[1]), reverse=True)
        for first, last, text in ordered:
            lines[first : last + 1] = [text] if text else []
        text = "".join(lines)
        for block in self.appended:
            if text and not text.endswith("\n"):
                text += "\n"
            text += ("\n" if text else "") + "\n".join(block) + "\n"
        return text


def _changed(before: Any, after: Any, always: tuple[str, ...] = ()) -> list[str]:
    names = [f.name for f in dataclasses.fields(after)]
    keys = [name for name in always if name in names]
    keys += [n for n in names if n not in keys and getattr(before, n) != getattr(after, n)]
    for name in keys:
        meta = next(f for f in dataclasses.fields(after) if f.name == name).metadata
        if "prefix" in meta:  # partition-NAME options: not edited here
            raise _Unsupported(f"{name} is written as several options")
    return keys


def _file_key(item: Any, name: str) -> str:
    meta = next(f for f in dataclasses.fields(item) if f.name == name).metadata
    return str(meta.get("key", name))


# -- reading the structure of the text ---------------------------------------------------------


def _lines(text: str) -> list[str]:
    """The lines of ``text`` with their ends; TOML's only line end is LF (``str.splitlines``
    would also split at characters a string value may hold, such as U+0085)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _scan(lines: list[str]) -> list[_Table]:
    """The tables of the text with where each option's value is."""
    tables = [_Table("", False, -1)]
    number = 0
    while number < len(lines):
        line = lines[number]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            number += 1
            continue
        header = _HEADER.fullmatch(line.rstrip("\r\n"))
        if header is not None:
            opening, name, closing = header.group(1), header.group(2), header.group(3)
            if len(opening) != len(closing):
                raise _Unsupported(f"line {number + 1}: a table header")
            name = re.sub(r"\s+", "", name)
            tables.append(_Table(name, opening == "[[", number))
            number += 1
            continue
        key = _KEY.match(line)
        if key is None:
            raise _Unsupported(f"line {number + 1}: neither a table nor an option")
        written = key.group(1)
        end = _value_end(lines, number, key.end())
        tables[-1].entries.append(_Entry(_unquoted(written), number, (number, key.end()), end))
        number = end[0] + 1
    return tables


def _unquoted(key: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return key
    if re.fullmatch(r"'[^']*'", key):
        return key[1:-1]
    if re.fullmatch(r'"[^"\\]*"', key):
        return key[1:-1]
    return None  # dotted, or with escapes: never one this editor changes


def _value_end(lines: list[str], row: int, column: int) -> tuple[int, int]:
    """(line, column) just after the value that starts at (``row``, ``column``): strings,
    arrays and inline tables followed across lines; a comment ends a line."""
    depth = 0
    end = (row, column)
    while row < len(lines):
        line = lines[row]
        while column < len(line):
            char = line[column]
            if line.startswith(('"""', "'''"), column):
                row, column = _string_end(lines, row, column + 3, line[column : column + 3])
                line = lines[row]
                end = (row, column)
                continue
            if char in "\"'":
                column = _quoted_end(line, column + 1, char)
                end = (row, column)
                continue
            if char == "#" or char in "\r\n":
                break
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            if char not in " \t":
                end = (row, column + 1)
            column += 1
        if depth == 0:
            return end
        row, column = row + 1, 0
    raise _Unsupported("a value that does not end")


def _quoted_end(line: str, column: int, quote: str) -> int:
    while column < len(line):
        char = line[column]
        if char == "\\" and quote == '"':
            column += 2
            continue
        if char == quote:
            return column + 1
        column += 1
    raise _Unsupported("a string that does not end on its line")


def _string_end(lines: list[str], row: int, column: int, delimiter: str) -> tuple[int, int]:
    while row < len(lines):
        line = lines[row]
        while column < len(line):
            if line[column] == "\\" and delimiter == '"""':
                column += 2
                continue
            if line.startswith(delimiter, column):
                column += 3
                while column < len(line) and line[column] == delimiter[0]:
                    column += 1  # up to two quotes may end the string's content
                return row, column
            column += 1
        row, column = row + 1, 0
    raise _Unsupported("a multi-line string that does not end")
