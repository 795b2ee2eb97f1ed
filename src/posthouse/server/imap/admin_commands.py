"""Administrator commands Cyrus's IMAP server has beyond the RFCs: ``RECONSTRUCT mailbox
[RECURSIVE]`` (chapter 12.5.5; what cyradm's ``reconstruct`` sends).  Only the
configuration's ``admins`` may use them; the store enforces that."""

from __future__ import annotations

from typing import TYPE_CHECKING

from posthouse.protocols.imap import response
from posthouse.protocols.imap.arguments import Reconstruct
from posthouse.protocols.imap.commands import Command
from posthouse.server.imap.outcome import Outcome

if TYPE_CHECKING:
    from posthouse.server.imap.commands import CommandRunner

__all__ = ["reconstruct"]


async def reconstruct(runner: CommandRunner, command: Command) -> Outcome | None:
    """One untagged OK per mailbox rebuilt, saying what was repaired."""
    arguments = command.arguments
    assert isinstance(arguments, Reconstruct)
    name = runner.name_in(arguments.mailbox)
    reports = await runner.user.reconstruct(name, recursive=arguments.recursive)
    for report in reports:
        text = (
            f"{runner.name_out(report.name)}: {report.messages} messages,"
            f" {len(report.appeared)} added, {len(report.dropped)} dropped"
        )
        runner.engine.untagged(response.Status("OK", text))
    return None
