"""The IMAP store as the command-line tools use it: opened once per command, closed after.

:func:`store_session` opens the store of a configuration (the same one the server uses,
:func:`posthouse.app.mail_store_for`) and runs a coroutine against it;
:func:`ensure_inbox` gives a user their INBOX with the SPECIAL-USE folders (what
``mailusradm`` does when a user becomes IMAP type, chapter 12.5.2); :func:`imap_mail_of`
says what a user has in the store and where, :func:`delete_imap_mail` deletes it (when a
user stops being IMAP type and the administrator asks for that).  The store's errors come
out as the administrative error kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from posthouse.admin.errors import InvalidRequest, NotFound, StorageFailure
from posthouse.config.schema import Settings
from posthouse.store.acl import ALL_RIGHTS, Acl, AclError, format_rights, parse_rights
from posthouse.store.backend import MailboxRecord, NewMailbox, Viewer
from posthouse.store.errors import InvalidName, MailboxExists, MailboxNotFound, StoreError
from posthouse.store.fs.backend import FsBackend
from posthouse.store.names import SEPARATOR, children_prefix, user_inbox
from posthouse.store.service import DEFAULT_FOLDERS, MailStore

__all__ = [
    "StoredMailbox",
    "as_store_owner",
    "delete_imap_mail",
    "ensure_inbox",
    "imap_mail_of",
    "run_with_store",
    "store_errors",
]

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


def ensure_inbox(settings: Settings, user: str, rights: str | None = None) -> bool:
    """Give ``user`` their INBOX with Sent, Drafts, Trash and Junk, those that are missing
    (chapter 12.5.2 steps 5 and 8).  ``rights`` (ACL letters such as ``lrswipkxte``, or
    ``all``) are the user's own rights on them: on new mailboxes ``all`` when None; on
    mailboxes already there, the user's entry is set to ``rights`` only when they are given
    (None leaves an existing ACL as it is).  True when the INBOX was created."""
    chosen = None if rights is None else format_rights(_rights(user, rights))

    async def create(store: MailStore) -> bool:
        inbox = user_inbox(user)
        try:
            await store.create_user(user, rights=chosen or format_rights(ALL_RIGHTS))
        except MailboxExists:
            pass
        else:
            return True
        record = await store.backend.get_mailbox(inbox)
        assert record is not None  # it exists: creating it failed for that
        for folder, special_use in DEFAULT_FOLDERS:  # those missing, with the INBOX's ACL
            name = inbox + SEPARATOR + folder
            if await store.backend.get_mailbox(name) is None:
                await store.backend.create_mailbox(
                    NewMailbox(name, record.partition, record.acl, special_use=special_use)
                )
                await store.backend.set_subscribed(user, name, True)
        if chosen is not None:
            for name in [inbox] + [inbox + SEPARATOR + folder for folder, _ in DEFAULT_FOLDERS]:
                found = await store.backend.get_mailbox(name)
                if found is not None:
                    acl = Acl.parse(found.acl).with_entry(user, parse_rights(chosen))
                    await store.backend.set_acl(name, str(acl))
        return False

    with store_errors(user):
        return run_with_store(settings, create)


def _rights(user: str, rights: str) -> frozenset[str]:
    if rights == "all":
        return ALL_RIGHTS
    try:
        parsed = parse_rights(rights)
    except AclError as exc:
        raise InvalidRequest(f"{user}: {exc}") from exc
    if not parsed:
        raise InvalidRequest(f"{user}: no rights given")
    return parsed


@dataclass(frozen=True)
class StoredMailbox:
    """One of a user's mailboxes in the IMAP store, as the administrator is told of it."""

    name: str  # the store's name: user.jake.Sent
    messages: int
    size: int  # octets
    directory: Path | None  # where its files are (None: a backend without directories)


def imap_mail_of(settings: Settings, user: str) -> list[StoredMailbox]:
    """``user``'s INBOX and every mailbox below it, with their messages and sizes."""

    async def survey(store: MailStore) -> list[StoredMailbox]:
        inbox = user_inbox(user)
        own = await store.backend.get_mailbox(inbox)
        records = ([own] if own else []) + await store.backend.list_mailboxes(
            children_prefix(inbox)
        )
        found = []
        for record in records:
            status = await store.backend.status(record.id, viewer=Viewer(user))
            found.append(
                StoredMailbox(record.name, status.messages, status.size, _directory(store, record))
            )
        return found

    with store_errors(user):
        return run_with_store(settings, survey)


def _directory(store: MailStore, record: MailboxRecord) -> Path | None:
    if not isinstance(store.backend, FsBackend):
        return None
    try:
        return store.backend.layout.mailbox_dir(record.partition, record.id)
    except ValueError:  # a partition the configuration no longer names
        return None


def delete_imap_mail(settings: Settings, user: str) -> list[str]:
    """Delete ``user``'s INBOX and every mailbox below it; the names deleted."""

    async def delete(store: MailStore) -> list[str]:
        try:
            return await store.delete_user(user)
        except MailboxNotFound:
            return []

    with store_errors(user):
        return run_with_store(settings, delete)
