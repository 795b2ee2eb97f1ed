"""The quota rule of chapter 12.5.8, as the store service's :class:`QuotaPolicy`.

A mailbox is limited by the nearest quota root at or above it (RFC 9208 STORAGE, in
kilobytes of the messages, each copy counted).  What a user adds by hand (APPEND,
MULTIAPPEND, COPY, MOVE into another root) must fit: usage plus the new bytes may not pass
the limit, else :class:`~posthouse.store.errors.OverQuota` (``[OVERQUOTA]``, RFC 9208 §7)
and nothing is written.  Delivery is the chapter's exception: while the root is not over
its limit when delivery starts, the message goes in whatever its size (so the user learns
of the problem from the server's warning rather than from lost mail); once the root is
over it, delivery fails temporarily and the sending server retries for days.  A MOVE
between mailboxes of the same root adds nothing and is never refused (Cyrus does the same).

:func:`usage_percent` is what the ``quotawarn`` alert on SELECT compares.
"""

from __future__ import annotations

from posthouse.store.backend import MailboxRecord, MailStoreBackend, QuotaUsage
from posthouse.store.errors import OverQuota

__all__ = ["RootLimits", "usage_percent"]

KB = 1024


def usage_percent(usage: QuotaUsage) -> float | None:
    """How full a root is, in percent of its limit; None without a limit."""
    if usage.limit_kb is None:
        return None
    if usage.limit_kb == 0:
        return 100.0 if usage.used_bytes else 0.0
    return 100.0 * usage.used_bytes / (usage.limit_kb * KB)


class RootLimits:
    """See the module docstring."""

    async def check(
        self,
        backend: MailStoreBackend,
        record: MailboxRecord,
        added_bytes: int,
        *,
        delivery: bool,
        leaving: MailboxRecord | None = None,
    ) -> None:
        usage = await backend.quota_root_of(record.name)
        if usage is None or usage.limit_kb is None:
            return
        if leaving is not None:
            source = await backend.quota_root_of(leaving.name)
            if source is not None and source.root == usage.root:
                return
        limit = usage.limit_kb * KB
        used_kb = -(-usage.used_bytes // KB)
        if delivery:
            if usage.used_bytes > limit:
                raise OverQuota(
                    f"quota root {usage.root} is over its limit"
                    f" ({used_kb} of {usage.limit_kb} KB); delivery will be retried",
                    temporary=True,
                )
        elif usage.used_bytes + added_bytes > limit:
            raise OverQuota(
                f"quota root {usage.root} would go over its limit of {usage.limit_kb} KB"
                f" ({used_kb} KB used, {-(-added_bytes // KB)} KB more)"
            )
