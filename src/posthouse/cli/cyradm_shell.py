"""``posthouse cyradm``'s interactive shell: a ``HOST>`` prompt with readline editing,
command-name completion and a history kept in the user's home
(``~/.posthouse_cyradm_history``, the last :data:`HISTORY_LENGTH` lines).

Each line runs as in one-shot mode (:func:`posthouse.cli.cyradm.run_line`), but a failed
command only prints its error: the shell goes on until ``quit``/``exit`` or end of input.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

from posthouse.admin.cyradm_client import ConnectionFailed, CyradmClient
from posthouse.admin.cyradm_commands import Quit, all_names
from posthouse.cli.exits import EX_OK, EX_UNAVAILABLE

__all__ = ["HISTORY_LENGTH", "history_path", "run_shell"]

HISTORY_LENGTH = 1000


def history_path() -> Path:
    """Where the history is kept: the user's home."""
    return Path(os.path.expanduser("~")) / ".posthouse_cyradm_history"


def run_shell(client: CyradmClient, host: str) -> int:
    """Read commands at a ``HOST>`` prompt until ``quit`` or end of input."""
    from posthouse.cli.cyradm import TOOL, run_line

    readline = _setup_readline()
    try:
        while True:
            try:
                line = input(f"{host}> ")
            except EOFError:
                print()
                return EX_OK
            except KeyboardInterrupt:
                print()
                continue
            run_line(client, line, sys.stdout, sys.stderr)
            sys.stdout.flush()
    except Quit as leave:
        return leave.status
    except ConnectionFailed as exc:
        print(f"{TOOL}: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    finally:
        if readline is not None:
            _save_history(readline)


def _setup_readline() -> ModuleType | None:
    """readline with the saved history and command completion, or None without it."""
    try:
        import readline
    except ImportError:  # the shell still works, without editing and history
        return None
    path = history_path()
    try:
        readline.read_history_file(path)
    except (FileNotFoundError, PermissionError):
        pass
    except OSError as exc:
        print(f"cyradm: history {path}: {exc}", file=sys.stderr)
    readline.set_history_length(HISTORY_LENGTH)
    names = all_names()

    def complete(text: str, state: int) -> str | None:
        if readline.get_begidx() > 0:  # only the command word is completed
            return None
        matches = [name + " " for name in names if name.startswith(text)]
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")
    return readline


def _save_history(readline: ModuleType) -> None:
    path = history_path()
    try:
        readline.write_history_file(path)
        path.chmod(0o600)  # the commands may name other users' mailboxes
    except OSError as exc:
        print(f"cyradm: history {path}: {exc}", file=sys.stderr)
