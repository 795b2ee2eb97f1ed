"""A :class:`~posthouse.mta.expand.FileSource` over a reader function, for expansion tests.

It applies no safety rules (those are :mod:`posthouse.mta.trusted_files`' and are tested
there and end to end): every file the reader returns is trusted, a ``.forward``'s programs
run as its user, an include file's as whatever included it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from posthouse.mta.agents.local_runner import DirectRunner
from posthouse.mta.errors import MailError
from posthouse.mta.expand import Refused, TrustedText
from posthouse.mta.identity import Identity


class TextFiles:
    def __init__(
        self,
        read: Callable[[Path], str] | None = None,
        forward_file: Callable[[str], Path | None] = lambda _user: None,
    ) -> None:
        self._read = read or (lambda path: path.read_text(encoding="utf-8"))
        self._forward_file = forward_file

    def read_forward(self, user: str) -> TrustedText | Refused | None:
        path = self._forward_file(user)
        if path is None:
            return None
        try:
            return TrustedText(self._read(path), run_as=user)
        except (FileNotFoundError, PermissionError):
            return None
        except (OSError, UnicodeDecodeError) as exc:
            return Refused(f"cannot read {path}: {exc}", temporary=True)

    def read_include(self, path: Path, parent_run_as: str) -> TrustedText | Refused:
        try:
            return TrustedText(self._read(path), run_as=parent_run_as)
        except FileNotFoundError:
            return Refused("does not exist", temporary=True)
        except (OSError, UnicodeDecodeError) as exc:
            return Refused(f"cannot read: {exc}", temporary=True)


NO_FILES = TextFiles()


class SelfRunner(DirectRunner):
    """A :class:`~posthouse.mta.agents.local_runner.DirectRunner` that really runs every
    program and file destination, as the test process itself, root included (who runs them
    as whom is tested in test_program_agent.py, test_local_runner.py and end to end)."""

    def __init__(self) -> None:
        super().__init__(lambda _run_as: Identity.current())

    def _identity(self, run_as: str) -> Identity | MailError:
        return Identity.current()


RUN_AS_SELF = SelfRunner()
