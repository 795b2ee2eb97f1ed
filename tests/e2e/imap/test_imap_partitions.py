"""Partitions over IMAP (chapter 12.5.9), as Cyrus 3.6 takes them from an administrator:
``CREATE name PARTITION``, ``CREATE name (PARTITION p)`` (RFC 4466 §2.2 create-params) and
``RENAME old new PARTITION``; an unknown partition is NO [CANNOT]; a user who is not an
administrator never chooses one (NO [NOPERM], as Cyrus's "Permission denied")."""

from __future__ import annotations

import asyncio
import imaplib
from collections.abc import Callable
from pathlib import Path

from posthouse.app import mail_store_for
from posthouse.config.load import load_settings
from posthouse.store.fs.backend import FsBackend
from tests.e2e.conftest import PASSWORD, Server

EXTRA = """
[imap]
admins = "carol"
partition-fast = "fast-disk"
"""


def login(server: Server, user: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login(user, PASSWORD)
    return client


def tagged(client: imaplib.IMAP4, name: str, *args: str) -> tuple[str, bytes]:
    typ, data = client._simple_command(name, *args)
    return typ, data[0] if data and isinstance(data[0], bytes) else b""


def folder_of(server: Server, name: str) -> Path:
    """Where the server's store keeps mailbox ``name``'s files."""
    backend = mail_store_for(load_settings(server.config_path)).backend
    assert isinstance(backend, FsBackend)
    record = asyncio.run(backend.get_mailbox(name))
    assert record is not None
    return backend.layout.mailbox_dir(record.partition, record.id)


def test_admins_place_mailboxes_on_partitions_and_users_cannot(
    imap_factory: Callable[..., Server],
) -> None:
    server = imap_factory(extra=EXTRA)
    admin, bob = login(server, "carol"), login(server, "bob")
    try:
        assert tagged(admin, "CREATE", "user.bob.fast", "fast")[0] == "OK"
        assert tagged(admin, "CREATE", "user.bob.fast2", "(PARTITION fast)")[0] == "OK"
        assert tagged(admin, "CREATE", "user.bob.fast.sub")[0] == "OK"  # inherits
        typ, text = tagged(admin, "CREATE", "user.bob.slow", "slow")
        assert typ == "NO" and b"[CANNOT]" in text and b"slow" in text
        for name in ("user.bob.fast", "user.bob.fast2", "user.bob.fast.sub"):
            assert "fast-disk" in folder_of(server, name).parts
        assert "fast-disk" not in folder_of(server, "user.bob").parts

        typ, text = tagged(bob, "CREATE", "INBOX.mine", "fast")
        assert typ == "NO" and b"[NOPERM]" in text
        assert tagged(bob, "CREATE", "INBOX.mine")[0] == "OK"
        typ, text = tagged(bob, "RENAME", "INBOX.mine", "INBOX.mine", "fast")
        assert typ == "NO" and b"[NOPERM]" in text

        assert bob.append("INBOX.mine", "(\\Flagged)", None, b"Subject: kept\r\n\r\nhi\r\n")[0]
        before = folder_of(server, "user.bob.mine")
        assert tagged(admin, "RENAME", "user.bob.mine", "user.bob.mine", "fast")[0] == "OK"
        after = folder_of(server, "user.bob.mine")
        assert "fast-disk" in after.parts and not before.exists() and (after / "1.").exists()
        assert bob.select("INBOX.mine")[0] == "OK"
        typ, data = bob.uid("FETCH", "1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and b"\\Flagged" in data[0][0] and b"kept" in data[0][1]  # type: ignore[index]
    finally:
        admin.logout()
        bob.logout()
