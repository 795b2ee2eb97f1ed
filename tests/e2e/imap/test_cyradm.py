"""``posthouse cyradm`` end to end: one-shot commands against a real posthouse IMAP server,
their Cyrus aliases, the server's refusals, and users who are not administrators."""

from __future__ import annotations

import asyncio
import imaplib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from posthouse.app import mail_store_for
from posthouse.auth.users import UserDatabase
from posthouse.config.load import load_settings
from posthouse.store.fs.backend import FsBackend
from tests.e2e.conftest import PASSWORD, Server

ADMIN = "cyrus"
ADMIN_CONFIG = f'\n[imap]\nadmins = "{ADMIN}"\n'


@dataclass
class Cyradm:
    """Runs ``posthouse cyradm`` against one server as one user."""

    server: Server
    password_file: Path
    user: str = ADMIN

    def run(
        self, *words: str, stdin: str | None = None, local: bool = True
    ) -> tuple[int, str, str]:
        target = ["--port", str(self.server.ports["imap"])]
        if not local:  # as another server: its certificate checked against the test's CA
            cafile = self.password_file.parent / "ca.pem"
            self.server.ca.cert_pem.write_to_path(str(cafile))
            target = ["--server", "127.0.0.1", "--cafile", str(cafile), *target]
        args = ["cyradm", "--user", self.user, "--password-file", str(self.password_file)]
        result = self.server.cli(*args, *target, *words, input=stdin)
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    def ok(self, *words: str) -> str:
        status, out, err = self.run(*words)
        assert (status, err) == (0, ""), f"{words}: {status} {err}"
        return out

    def as_user(self, user: str) -> Cyradm:
        return Cyradm(self.server, self.password_file, user)


def add_admin(server: Server) -> None:
    with UserDatabase(server.home / "data" / "etc" / "users.db") as users:
        users.add(ADMIN, PASSWORD)


@pytest.fixture
def cyradm(imap_factory: Callable[..., Server], tmp_path: Path) -> Cyradm:
    archive = tmp_path / "archive"
    server = imap_factory(extra=ADMIN_CONFIG + f'partition-archive = "{archive}"\n')
    add_admin(server)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    return Cyradm(server, password_file)


def listed(output: str) -> set[str]:
    """The mailbox names of ``listmailbox`` output (columns of ``name (attributes)``)."""
    names = set()
    for line in output.splitlines():
        for cell in line.split(")"):
            name = cell.strip().split(" (")[0].strip()
            if name:
                names.add(name)
    return names


def names_over_imap(server: Server, user: str) -> set[str]:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login(user, PASSWORD)
    typ, data = client.list()
    client.logout()
    assert typ == "OK"
    names = set()
    for line in data:
        assert isinstance(line, bytes)
        match = re.search(r'\) (?:"."|NIL) (?:"((?:[^"\\]|\\.)*)"|(\S+))$', line.decode())
        assert match, line
        names.add(match.group(1) if match.group(1) is not None else match.group(2))
    return names


def test_listmailbox_and_lm_show_every_users_mailboxes_in_columns(cyradm: Cyradm) -> None:
    out = cyradm.ok("listmailbox")
    assert {"user.alice", "user.bob", "user.carol", "user.alice.Sent"} <= listed(out)
    assert "user.bob (\\HasChildren)" in out
    assert cyradm.ok("lm") == out
    only_bob = listed(cyradm.ok("lm", "user.bob*"))
    assert "user.bob" in only_bob and not any(n.startswith("user.alice") for n in only_bob)


@pytest.mark.parametrize("create, delete", [("createmailbox", "deletemailbox"), ("cm", "dm")])
def test_create_and_delete_a_users_folder(cyradm: Cyradm, create: str, delete: str) -> None:
    assert cyradm.ok(create, "user.bob.projects") == ""
    assert "INBOX.projects" in names_over_imap(cyradm.server, "bob")
    assert "user.bob.projects" in listed(cyradm.ok("lm", "user.bob.*"))
    assert cyradm.ok(delete, "user.bob.projects") == ""
    assert "INBOX.projects" not in names_over_imap(cyradm.server, "bob")


@pytest.mark.parametrize("rename", ["renamemailbox", "renm", "rename"])
def test_rename_a_folder(cyradm: Cyradm, rename: str) -> None:
    cyradm.ok("cm", "user.carol.old")
    assert cyradm.ok(rename, "user.carol.old", "user.carol.new") == ""
    names = names_over_imap(cyradm.server, "carol")
    assert "INBOX.new" in names and "INBOX.old" not in names


def test_a_refused_command_shows_the_servers_text_and_exits_nonzero(cyradm: Cyradm) -> None:
    status, out, err = cyradm.run("cm", "user.alice")
    assert status == 1 and out == ""
    assert err.startswith("createmailbox: ") and "exist" in err.lower()
    status, _, err = cyradm.run("dm", "user.nobody.nothing")
    assert status == 1 and err.startswith("deletemailbox: ")


def test_commands_from_stdin_and_c_stop_at_the_first_failure(cyradm: Cyradm) -> None:
    script = "cm user.alice.one\ncm user.alice.one\ncm user.alice.two\n"
    status, _, err = cyradm.run(stdin=script)
    assert status == 1 and err.startswith("createmailbox: ")
    names = names_over_imap(cyradm.server, "alice")
    assert "INBOX.one" in names and "INBOX.two" not in names  # stopped after the failure
    assert cyradm.ok("-c", "cm user.alice.two; cm 'user.alice.with space'") == ""
    assert {"INBOX.two", "INBOX.with space"} <= names_over_imap(cyradm.server, "alice")
    status, _, err = cyradm.run("-c", "lm user.alice; quit 3; cm user.alice.never")
    assert status == 3
    assert "INBOX.never" not in names_over_imap(cyradm.server, "alice")


def test_help_and_usage(cyradm: Cyradm) -> None:
    out = cyradm.ok("help")
    assert "createmailbox, cm, create" in out and "listquotaroot, lqr, lqm" in out
    assert cyradm.ok("?") == out
    assert cyradm.ok("help", "sam") == (
        "sam, alias for setacl mailbox id rights [id rights ...]\n\tset ACLs on mailbox\n"
    )
    status, _, err = cyradm.run("renm", "only-one")
    assert status == 1 and err.startswith("usage: renamemailbox")
    status, _, err = cyradm.run("frobnicate")
    assert status == 1 and "frobnicate: unknown command" in err


def test_a_user_not_in_admins_is_refused(cyradm: Cyradm) -> None:
    status, out, err = cyradm.as_user("alice").run("lm")
    assert status == 77 and out == ""
    assert "alice is not an IMAP administrator" in err and "admins" in err


def test_the_server_refuses_a_non_admin_what_only_admins_may_do(cyradm: Cyradm) -> None:
    # Named as another server (--server), cyradm cannot know the admins: the server decides.
    status, _, err = cyradm.as_user("alice").run("cm", "user.bob.mine", local=False)
    assert status == 1 and err.startswith("createmailbox: "), err
    assert "INBOX.mine" not in names_over_imap(cyradm.server, "bob")


def test_a_wrong_password_is_refused_at_login(cyradm: Cyradm, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    status, _, err = Cyradm(cyradm.server, wrong).run("lm")
    assert status == 77 and "cannot authenticate to server as cyrus" in err


def test_starttls_checks_the_servers_certificate(cyradm: Cyradm) -> None:
    # Named as another server without --cafile, the test CA is unknown: no session.
    port = str(cyradm.server.ports["imap"])
    password = str(cyradm.password_file)
    result = cyradm.server.cli(
        "cyradm", "--user", ADMIN, "--password-file", password, "--server", "127.0.0.1",
        "--port", port, "lm",
    )  # fmt: skip
    assert result.returncode == 69 and b"CERTIFICATE_VERIFY_FAILED" in result.stderr
    status, out, _ = cyradm.run("lm", "user.alice")  # trusts this posthouse's own certificate
    assert status == 0 and "user.alice" in out


def mailbox_files(directory: Path) -> set[str]:
    """The mailbox folders (named by id) under a partition directory."""
    return {path.name for path in directory.glob("*/*") if path.is_dir()}


def test_create_and_rename_into_a_partition(cyradm: Cyradm, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    assert cyradm.ok("cm", "user.bob.old-mail", "archive") == ""
    first = mailbox_files(archive)
    assert len(first) == 1  # its files are on the archive partition
    assert cyradm.ok("-c", "cm --partition archive user.bob.older") == ""
    assert len(mailbox_files(archive)) == 2
    cyradm.ok("cm", "user.carol.projects")
    assert cyradm.ok("renm", "user.carol.projects", "user.carol.done", "archive") == ""
    assert len(mailbox_files(archive)) == 3
    assert "INBOX.done" in names_over_imap(cyradm.server, "carol")
    status, _, err = cyradm.run("cm", "user.bob.x", "nosuchpartition")
    assert status == 1 and err.startswith("createmailbox: ") and "nosuchpartition" in err


def can_see(server: Server, user: str, mailbox: str) -> bool:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login(user, PASSWORD)
    status, _ = client.select(mailbox, readonly=True)
    client.logout()
    return status == "OK"


@pytest.mark.parametrize(
    "setacl, listacl, deleteacl",
    [("setacl", "listacl", "deleteacl"), ("sam", "lam", "dam"),
     ("setaclmailbox", "listaclmailbox", "deleteaclmailbox")],
)  # fmt: skip
def test_acl_commands(cyradm: Cyradm, setacl: str, listacl: str, deleteacl: str) -> None:
    cyradm.ok("cm", "user.bob.shared")
    assert not can_see(cyradm.server, "alice", "user.bob.shared")
    assert cyradm.ok(setacl, "user.bob.shared", "alice", "lrs") == ""
    assert cyradm.ok(listacl, "user.bob.shared").splitlines() == [
        "bob lrswipkxtecda",
        "alice lrs",
    ]
    assert can_see(cyradm.server, "alice", "user.bob.shared")
    assert cyradm.ok(deleteacl, "user.bob.shared", "alice") == ""
    assert cyradm.ok(listacl, "user.bob.shared") == "bob lrswipkxtecda\n"
    assert not can_see(cyradm.server, "alice", "user.bob.shared")


def test_acl_commands_on_a_pattern_and_their_errors(cyradm: Cyradm) -> None:
    out = cyradm.ok("sam", "user.carol.*", "bob", "lr")
    assert "Setting ACL on user.carol.Sent...OK." in out.splitlines()
    listing = cyradm.ok("lam", "user.carol.*")
    assert "user.carol.Trash:\n  carol lrswipkxtecda\n  bob lr\n" in listing
    assert "Deleting acl on user.carol.Junk...OK." in cyradm.ok("dam", "user.carol.*", "bob")
    assert "bob" not in cyradm.ok("lam", "user.carol.*")
    status, _, err = cyradm.run("sam", "user.nobody", "bob", "lr")
    assert status == 1 and err.startswith("setacl: ")
    status, _, err = cyradm.run("sam", "user.bob", "bob", "lrQ")
    assert status == 1 and err.startswith("setacl: ")


def append(server: Server, user: str, size: int) -> str:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.login(user, PASSWORD)
    message = b"Subject: big\r\n\r\n" + b"x" * size + b"\r\n"
    status, data = client.append("INBOX", None, None, message)
    client.logout()
    return f"{status} {data[0]!r}"


@pytest.mark.parametrize(
    "setquota, listquota, listquotaroot",
    [("setquota", "listquota", "listquotaroot"), ("sq", "lq", "lqr"), ("sq", "lq", "lqm")],
)
def test_quota_commands(cyradm: Cyradm, setquota: str, listquota: str, listquotaroot: str) -> None:
    assert cyradm.ok(setquota, "user.bob", "STORAGE", "2") == ""
    assert cyradm.ok(listquota, "user.bob") == " STORAGE 0/2 (0%)\n"
    assert append(cyradm.server, "bob", 1500).startswith("OK")  # 1 KB used (rounded down)
    assert cyradm.ok(listquota, "user.bob") == " STORAGE 1/2 (50%)\n"
    assert cyradm.ok(listquotaroot, "user.bob.Sent") == "user.bob STORAGE 1/2 (50%)\n"
    assert "OVERQUOTA" in append(cyradm.server, "bob", 3000)
    assert cyradm.ok(setquota, "user.bob", "STORAGE", "none") == ""  # removes the root
    assert append(cyradm.server, "bob", 3000).startswith("OK")
    status, _, err = cyradm.run(listquota, "user.bob")
    assert status == 1 and err.startswith("listquota: ")
    assert cyradm.ok(listquotaroot, "user.bob") == "\n"  # no root, as Cyrus prints it


def test_setquota_short_forms_and_errors(cyradm: Cyradm) -> None:
    assert cyradm.ok("sq", "user.carol", "300") == "quota:300\n"
    assert cyradm.ok("lq", "user.carol") == " STORAGE 0/300 (0%)\n"
    assert cyradm.ok("sq", "user.carol", "none") == "remove quota\n"
    status, _, err = cyradm.run("sq", "user.carol", "STORAGE", "lots")
    assert status == 1 and err == "setquota: STORAGE: lots: not a number\n"
    status, _, err = cyradm.as_user("alice").run("sq", "user.alice", "STORAGE", "9", local=False)
    assert status == 1 and err.startswith("setquota: ") and "admin" in err


def test_reconstruct_finds_a_message_file_added_by_hand(cyradm: Cyradm) -> None:
    client = imaplib.IMAP4("127.0.0.1", cyradm.server.ports["imap"], timeout=30)
    client.login("bob", PASSWORD)
    assert client.append("INBOX", None, None, b"Subject: 1\r\n\r\nx\r\n")[0] == "OK"
    store = mail_store_for(load_settings(cyradm.server.config_path))
    backend = store.backend
    assert isinstance(backend, FsBackend)
    record = asyncio.run(backend.get_mailbox("user.bob"))
    assert record is not None
    folder = backend.layout.mailbox_dir(record.partition, record.id)
    shutil.copy(folder / "1.", folder / "9.")
    out = cyradm.ok("reconstruct", "user.bob")
    assert "user.bob: 2 messages, 1 added, 0 dropped" in out
    assert "user.bob.Sent" not in out
    assert client.select("INBOX")[0] == "OK"
    assert client.uid("SEARCH", "ALL")[1] == [b"1 9"]
    client.logout()
    out = cyradm.ok("-c", "reconstruct -r user.bob")
    assert "user.bob.Sent: 0 messages" in out  # -r: the folders below too
    status, _, err = cyradm.run("reconstruct", "user.nobody")
    assert status == 1 and err.startswith("reconstruct: ")
    status, _, err = cyradm.as_user("bob").run("reconstruct", "user.bob", local=False)
    assert status == 1 and "NOPERM" in err


def test_deletemailbox_of_a_pattern_deletes_each_match(cyradm: Cyradm) -> None:
    cyradm.ok("-c", "cm user.carol.tmp1; cm user.carol.tmp2; cm user.carol.keep")
    out = cyradm.ok("dm", "user.carol.tmp%")
    assert out.splitlines() == [
        "Deleting mailbox user.carol.tmp1...OK.",
        "Deleting mailbox user.carol.tmp2...OK.",
    ]
    names = names_over_imap(cyradm.server, "carol")
    assert "INBOX.keep" in names and not {"INBOX.tmp1", "INBOX.tmp2"} & names
