"""``imapquota`` (the chapter's imapquota, Cyrus's ``quota``): the quota roots of the IMAP
store with their limits and usage, and with ``fix`` their usage counted again.

:func:`quota_report` reads the roots whose names start with one of the prefixes given (all
without any) and, when asked to fix, counts the bytes of each of their mailboxes again
from the messages' rows in its index (each copy counted, index files not), correcting what
the index kept, which the roots' usage sums.  The work is the
store's (:meth:`~posthouse.store.backend.MailStoreBackend.recompute_quotas`); run as root,
the tool acts as the data directory's owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from posthouse.admin.mailstore import run_with_store, store_errors
from posthouse.config.schema import Settings
from posthouse.store.backend import QuotaUsage
from posthouse.store.service import MailStore

__all__ = ["QuotaLine", "quota_report"]


@dataclass(frozen=True)
class QuotaLine:
    """One root as reported; ``was_bytes``: the usage recorded before a fix (else None)."""

    usage: QuotaUsage
    was_bytes: int | None = None

    @property
    def fixed(self) -> bool:
        return self.was_bytes is not None and self.was_bytes != self.usage.used_bytes


def _selected(usages: Sequence[QuotaUsage], prefixes: Sequence[str]) -> list[QuotaUsage]:
    return [u for u in usages if not prefixes or any(u.root.startswith(p) for p in prefixes)]


def quota_report(settings: Settings, prefixes: Sequence[str], *, fix: bool) -> list[QuotaLine]:
    """The roots named by ``prefixes`` (Cyrus's ``quota`` takes root prefixes), fixed first
    when ``fix``."""

    async def work(store: MailStore) -> list[QuotaLine]:
        before = _selected(await store.backend.list_quotas(), prefixes)
        if not fix:
            return [QuotaLine(usage) for usage in before]
        if not before:
            return []
        roots = None if not prefixes else [u.root for u in before]
        after = {u.root: u for u in await store.backend.recompute_quotas(roots)}
        return [QuotaLine(after[u.root], u.used_bytes) for u in before if u.root in after]

    with store_errors("imapquota"):
        return run_with_store(settings, work)
