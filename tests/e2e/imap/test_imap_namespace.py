"""The chapter's namespace examples (12.5.6) over a real server and imaplib:

* a user's own mailboxes are INBOX.FOLDER; another user's appear as user.NAME.FOLDER to
  those whose ACL lets them see it, and no others of that user's mailboxes do;
* a user with a dot in the name logs in but has no INBOX (and cannot make one);
* deleting a user's INBOX (an administrator's DELETE user.NAME) deletes all of the user's
  mailboxes and the user's subscriptions file (12.5.5's user/NAME.sub).
"""

from __future__ import annotations

import asyncio
import imaplib
from collections.abc import Callable

from posthouse.app import mail_store_for
from posthouse.auth.users import UserDatabase
from posthouse.config.load import load_settings
from tests.e2e.conftest import PASSWORD, Server

ADMIN = '[imap]\nadmins = "carol"\n'


def login(server: Server, user: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login(user, PASSWORD)
    return client


def names(client: imaplib.IMAP4, pattern: str = "*") -> set[str]:
    typ, lines = client.list('""', pattern)
    assert typ == "OK"
    return {line.decode().rsplit(' "." ', 1)[1].strip('"') for line in lines if line}


def grant(server: Server, mailbox: str, user: str, rights: str) -> None:
    """Add an ACL entry in the store (the ACL commands are another issue's)."""
    store = mail_store_for(load_settings(server.config_path))

    async def change() -> None:
        record = await store.backend.get_mailbox(mailbox)
        assert record is not None
        await store.backend.set_acl(mailbox, f"{record.acl}{user}\t{rights}\t")
        await store.backend.close()

    asyncio.run(change())


def test_other_users_mailboxes_appear_as_user_name_folder(
    imap_factory: Callable[..., Server],
) -> None:
    server: Server = imap_factory()
    bob = login(server, "bob")
    assert bob.create("INBOX.Shared")[0] == "OK"
    assert bob.create("INBOX.Private")[0] == "OK"
    bob.append("INBOX.Shared", None, None, b"Subject: for alice\r\n\r\nhello\r\n")
    assert "INBOX.Shared" in names(bob) and "user.bob.Shared" not in names(bob)
    grant(server, "user.bob.Shared", "alice", "lr")

    alice = login(server, "alice")
    seen = names(alice)
    assert "user.bob.Shared" in seen
    assert not {"user.bob", "user.bob.Private", "INBOX.Shared"} & seen
    assert {"INBOX", "INBOX.Sent"} <= seen
    typ, data = alice._simple_command("NAMESPACE")
    _, [namespace] = alice._untagged_response(typ, data, "NAMESPACE")
    assert namespace.startswith(b'(("INBOX." ".")) (("user." "."))')
    typ, [count] = alice.select("user.bob.Shared", readonly=True)
    assert (typ, count) == ("OK", b"1")
    assert alice.select("user.bob.Private")[0] == "NO"  # not visible: as if it did not exist
    alice.logout()
    bob.logout()


def test_a_user_with_a_dot_in_the_name_logs_in_without_an_inbox(
    imap_factory: Callable[..., Server],
) -> None:
    server: Server = imap_factory()
    with UserDatabase(server.home / "data" / "etc" / "users.db") as users:
        users.add("jane.doe", PASSWORD)
    jane = login(server, "jane.doe")
    assert jane.select("INBOX")[0] == "NO"
    assert jane.create("INBOX")[0] == "NO"
    assert jane.create("INBOX.work")[0] == "NO"
    assert names(jane) == set()
    jane.logout()


def test_deleting_a_users_inbox_deletes_all_their_mailboxes(
    imap_factory: Callable[..., Server],
) -> None:
    server: Server = imap_factory(extra=ADMIN)
    bob = login(server, "bob")
    for folder in ("INBOX.work", "INBOX.work.personnel", "INBOX.play"):
        assert bob.create(folder)[0] == "OK"
        assert bob.subscribe(folder)[0] == "OK"
    bob.logout()
    subscriptions = server.home / "data" / "imap" / "user" / "bob.sub"
    assert "user.bob.work.personnel" in subscriptions.read_text()

    carol = login(server, "carol")
    assert {"user.bob", "user.bob.work", "user.bob.work.personnel"} <= names(carol, "user.bob*")
    assert carol.delete("user.bob")[0] == "OK"
    assert names(carol, "user.bob*") == set()
    assert names(carol, "user.alice") == {"user.alice"}  # others keep theirs
    carol.logout()
    assert not subscriptions.exists()

    bob = login(server, "bob")  # bob may still log in, with no mail left
    assert bob.select("INBOX")[0] == "NO"
    assert bob.lsub()[1] == [None]
    bob.logout()
