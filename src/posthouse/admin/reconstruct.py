"""``reconstruct`` as an administrative operation (chapter 12.5.5): rebuild mailboxes'
indexes from their message files, as the data directory's owner, and describe the result.

Mailbox names are the administrator's (``user.NAME.FOLDER``, as Cyrus's reconstruct takes
them).  The quota usage is not adjusted, as the chapter says of Cyrus's: run
``imapquota -f`` afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from posthouse.admin.mailstore import as_store_owner, store_errors
from posthouse.config.schema import Settings
from posthouse.imap_layout import store_layout
from posthouse.store.backend import ReconstructReport
from posthouse.store.errors import MailboxNotFound
from posthouse.store.fs.backend import FsBackend
from posthouse.store.service import MailStore

__all__ = ["Outcome", "describe", "reconstruct"]


@dataclass(frozen=True)
class Outcome:
    """The reports of the mailboxes rebuilt and the names that do not exist."""

    reports: tuple[ReconstructReport, ...]
    missing: tuple[str, ...]


def reconstruct(settings: Settings, names: Sequence[str], *, recursive: bool) -> Outcome:
    """Rebuild each mailbox of ``names`` (and their inferiors with ``recursive``)."""

    async def work() -> Outcome:
        store = MailStore(FsBackend(store_layout(settings)))  # no server loaded: see below
        reports: list[ReconstructReport] = []
        missing: list[str] = []
        try:
            for name in names:
                try:
                    reports += await store.reconstruct(name, recursive=recursive)
                except MailboxNotFound:
                    missing.append(name)
        finally:
            await store.backend.close()
        return Outcome(tuple(reports), tuple(missing))

    # The store alone, not posthouse.app's (which loads the servers: a second and more of
    # start-up, as long as the rebuild of a healthy 100,000-message mailbox).
    with store_errors("reconstruct"), as_store_owner(settings):
        return asyncio.run(work())


def _uids(uids: Sequence[int]) -> str:
    shown = " ".join(str(u) for u in uids[:20])
    return shown + (f" and {len(uids) - 20} more" if len(uids) > 20 else "")


def describe(report: ReconstructReport) -> list[str]:
    """Lines for the administrator: the counts, then what changed."""
    lines = [
        f"{report.name}: {report.messages} messages, {report.kept} with their flags and dates"
        f" kept{'' if report.changed else ', nothing to repair'}"
    ]
    if report.damaged_index:
        lines.append(f"  index unreadable, set aside as {report.damaged_index} and rebuilt")
    if report.uidvalidity is not None:
        lines.append(f"  index state lost: new UIDVALIDITY {report.uidvalidity}")
    if report.appeared:
        lines.append(f"  message files not in the index, added: UID {_uids(report.appeared)}")
    if report.renumbered:
        pairs = ", ".join(f"{old}. -> {new}." for old, new in report.renumbered[:20])
        lines.append(f"  files with UIDs clients may have seen, renumbered: {pairs}")
    if report.dropped:
        lines.append(
            f"  index entries without a message file, dropped: UID {_uids(report.dropped)}"
        )
    if report.temporary_removed:
        lines.append(f"  leftover temporary files removed: {len(report.temporary_removed)}")
    if report.strays:
        lines.append(f"  unknown files left alone: {', '.join(report.strays[:20])}")
    return lines
