"""The IMAP store as the command-line tools use it: opened once per command, closed after.

:func:`store_session` opens the store of a configuration (the same one the server uses,
:func:`posthouse.app.mail_store_for`) and runs a coroutine against it;
:func:`ensure_inbox` gives a user their INBOX with the SPECIAL-USE folders (what
``mailusradm`` does when a user becomes IMAP type, chapter 12.5.2).  The store's errors come
out as the administrative error kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from posthouse.admin.errors import InvalidRequest, NotFound, StorageFailure
from posthouse.config.schema import Settings
from posthouse.store.acl import ALL_RIGHTS, AclError, format_rights
from posthouse.store.errors import InvalidName, MailboxExists, MailboxNotFound, StoreError
from posthouse.store.service import MailStore

__all__ = ["as_store_owner", "ensure_inbox", "run_with_store", "store_errors"]

T = TypeVar("T")


@contextlib.contextmanager
def store_errors(user: str) -> Iterator[None]:
    """The store's errors inside the block as :class:`~posthouse.admin.errors.AdminError`."""
    try:
        yield
    except (InvalidName, AclError) as exc:
        raise InvalidRequest(f"{user}: {exc}") from exc
    except MailboxNotFound as exc:
        raise NotFound(f"{user}: {exc}") from exc
    except (StoreError, OSError, sqlite3.Error) as exc:
        raise StorageFailure(f"IMAP store: {exc}") from exc


@contextlib.contextmanager
def as_store_owner(settings: Settings) -> Iterator[None]:
    """Inside the block, a tool started as root acts as the account that owns the data
    directory (the daemon's ``run_as`` once it has started), so that every file it creates
    in the store stays writable by the daemon, as Cyrus's tools switch to the ``cyrus``
    user.  Files opened before the block (a locked spool file) stay usable."""
    try:
        owner = os.stat(settings.paths.data_dir)
    except OSError:
        owner = None
    if os.geteuid() != 0 or owner is None or owner.st_uid == 0:
        yield
        return
    os.setegid(owner.st_gid)
    os.seteuid(owner.st_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def run_with_store(settings: Settings, work: Callable[[MailStore], Coroutine[Any, Any, T]]) -> T:
    """Open the configuration's store, run ``work`` on it, close it (raises the store's
    errors; wrap the call in :func:`store_errors`), as the store's owner."""

    from posthouse.app import mail_store_for  # here: the offline tools need not load it

    async def main() -> T:
        store = mail_store_for(settings)
        try:
            return await work(store)
        finally:
            await store.backend.close()

    with as_store_owner(settings):
        return asyncio.run(main())


def ensure_inbox(settings: Settings, user: str, rights: str = "all") -> bool:
    """Create ``user``'s INBOX (and Sent, Drafts, Trash, Junk) with ``rights`` for the user
    (``all``, or ACL letters such as ``lrswipkxte``); False if it existed (its ACL is then
    left as it is)."""
    letters = format_rights(ALL_RIGHTS) if rights == "all" else rights

    async def create(store: MailStore) -> bool:
        try:
            await store.create_user(user, rights=letters)
        except MailboxExists:
            return False
        return True

    with store_errors(user):
        return run_with_store(settings, create)
