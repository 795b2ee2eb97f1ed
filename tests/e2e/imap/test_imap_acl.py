"""Access control lists over IMAP on a real server (RFC 4314, chapter 12.5.7): the rights
matrix (each right held and not held, against every command it governs), the ACL commands
with imaplib and imapclient, groups from posthouse's table and the system, and mbsync
syncing a folder shared read-only."""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import imapclient
import pytest

from posthouse.auth.users import UserDatabase
from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.imap.mailbox import CLIENT_TIMEOUT, append, connect, message, server_view
from tests.e2e.imap.test_client_mbsync import local_view, set_local_flags

Probe = Callable[[Server, str], tuple[str, ...]]


def outcome(result: tuple[str, list[object]]) -> str:
    """``OK``, or the status with its response code (``NO [NOPERM]``)."""
    status, data = result
    if status == "OK":
        return "OK"
    text = data[0].decode() if data and isinstance(data[0], bytes) else str(data)
    code = re.match(r"\[([A-Z-]+)", text)
    return f"{status} [{code.group(1)}]" if code else status


def command(client: imaplib.IMAP4, line: str) -> tuple[str, list[bytes]]:
    """Send ``line`` as one tagged command; (status, untagged lines + the tagged text)."""
    tag = client._new_tag().decode()  # type: ignore[attr-defined]
    client.send(f"{tag} {line}\r\n".encode())
    lines: list[bytes] = []
    while True:
        got = client.readline().rstrip(b"\r\n")
        if got.startswith(tag.encode() + b" "):
            status, _, text = got[len(tag) + 1 :].decode().partition(" ")
            return status, [*lines, text.encode()]
        lines.append(got)


def flags_of_first(client: imaplib.IMAP4, mailbox: str) -> set[str]:
    assert client.select(mailbox, readonly=True)[0] == "OK"
    status, data = client.fetch("1", "(FLAGS)")
    assert status == "OK", data
    found = re.search(rb"FLAGS \(([^)]*)\)", data[0])  # type: ignore[arg-type]
    assert found, data
    return set(found.group(1).decode().split())


# -- one probe per right: what a user does with the commands the right governs, each user in
# a mailbox of its own (INBOX.m_RIGHT_USER of bob's, two messages m1 and m2) --


def shared(right: str, user: str) -> str:
    return f"user.bob.m_{right}_{user}"


def probe_l(server: Server, user: str) -> tuple[str, ...]:
    client = connect(server, user)
    status, data = client.list('""', "user.bob.*")
    names = b" ".join(line for line in data if isinstance(line, bytes))
    client.logout()
    return (status, "listed" if shared("l", user).encode() in names else "not listed")


def probe_r(server: Server, user: str) -> tuple[str, ...]:
    client = connect(server, user)
    name = shared("r", user)
    results = tuple(
        outcome(command(client, line))  # type: ignore[arg-type]
        for line in (f"SELECT {name}", f"EXAMINE {name}", f"STATUS {name} (MESSAGES)")
    )
    client.logout()
    return results


def probe_flag(flag: str, right: str) -> Probe:
    def probe(server: Server, user: str) -> tuple[str, ...]:
        name = shared(right, user)
        client = connect(server, user)
        assert client.select(name)[0] == "OK"
        stored = outcome(client.store("1", "+FLAGS", f"({flag})"))
        kept = flag in flags_of_first(client, name)
        client.logout()
        owner_sees = flag in server_view(server, f"INBOX.m_{right}_{user}")["m1"]
        return (stored, "kept" if kept else "not kept", "stored" if owner_sees else "not stored")

    return probe


def probe_seen_by_fetch(server: Server, user: str) -> tuple[str, ...]:
    """FETCH BODY[] sets \\Seen only with s (RFC 4314 §4 FETCH)."""
    client = connect(server, user)
    assert client.select(shared("s", user))[0] == "OK"
    assert client.fetch("2", "(BODY[])")[0] == "OK"
    _, data = client.fetch("2", "(FLAGS)")
    client.logout()
    return ("seen" if b"\\Seen" in data[0] else "unseen",)  # type: ignore[operator]


def probe_i(server: Server, user: str) -> tuple[str, ...]:
    client = connect(server, user)
    appended = outcome(client.append(shared("i", user), None, None, message(f"by {user}")))
    assert client.select("INBOX")[0] == "OK"
    copied = outcome(client.copy("1", shared("i", user)))
    moved = outcome(command(client, f"MOVE 1 {shared('i', user)}"))  # type: ignore[arg-type]
    client.logout()
    return (appended, copied, moved)


def probe_k(server: Server, user: str) -> tuple[str, ...]:
    """CREATE under the mailbox; RENAME of a child (x on it) to another name under it."""
    client = connect(server, user)
    parent = shared("k", user)
    created = outcome(client.create(f"{parent}.new"))
    renamed = outcome(client.rename(f"{parent}.one", f"{parent}.moved"))
    client.logout()
    return (created, renamed)


def probe_x(server: Server, user: str) -> tuple[str, ...]:
    """RENAME and DELETE of children (the parent grants k to both users)."""
    client = connect(server, user)
    parent = shared("x", user)
    renamed = outcome(client.rename(f"{parent}.one", f"{parent}.renamed"))
    deleted = outcome(client.delete(f"{parent}.two"))
    client.logout()
    return (renamed, deleted)


def probe_e(server: Server, user: str) -> tuple[str, ...]:
    client = connect(server, user)
    name = shared("e", user)
    assert client.select(name)[0] == "OK"
    assert client.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    expunged = outcome(client.expunge())
    _, data = client.select(name)
    left = f"{data[0].decode()} left"  # type: ignore[union-attr]
    moved = outcome(command(client, "MOVE 1 INBOX"))  # type: ignore[arg-type]  # RFC 6851: t e
    client.logout()
    return (expunged, left, moved)


def probe_a(server: Server, user: str) -> tuple[str, ...]:
    client = connect(server, user)
    name = shared("a", user)
    results = (
        outcome(client.getacl(name)),
        outcome(client.setacl(name, "dave", "lr")),
        outcome(client.deleteacl(name, "dave")),
        outcome(command(client, f"LISTRIGHTS {name} dave")),  # type: ignore[arg-type]
        outcome(client.myrights(name)),
    )
    client.logout()
    return results


# right -> (the rights both users hold besides it, probe, with it, without it).
# RFC 4314 §4: LIST l; SELECT/EXAMINE/STATUS r; STORE \Seen and FETCH's implicit \Seen s
# (kept for that user alone: the owner's seen state is the owner's); STORE of other flags w;
# STORE \Deleted t; APPEND/COPY/MOVE into i (RFC 6851 MOVE also t e on the source);
# CREATE, and RENAME into, k on the parent; DELETE and RENAME from x; EXPUNGE e;
# SETACL/DELETEACL/GETACL/LISTRIGHTS a, MYRIGHTS any right.  A refused flag is left alone
# and the STORE answers OK (PERMANENTFLAGS told the client which it may change).  p governs
# no IMAP command: the delivery tests cover it.
NOPERM = "NO [NOPERM]"
MATRIX: dict[str, tuple[str, Probe, tuple[str, ...], tuple[str, ...]]] = {
    "l": ("r", probe_l, ("OK", "listed"), ("OK", "not listed")),
    "r": ("l", probe_r, ("OK", "OK", "OK"), (NOPERM,) * 3),
    "s": (
        "lrw",
        probe_flag("\\Seen", "s"),
        ("OK", "kept", "not stored"),
        ("OK", "not kept", "not stored"),
    ),
    "w": (
        "lrs",
        probe_flag("\\Flagged", "w"),
        ("OK", "kept", "stored"),
        ("OK", "not kept", "not stored"),
    ),
    "t": (
        "lrs",
        probe_flag("\\Deleted", "t"),
        ("OK", "kept", "stored"),
        ("OK", "not kept", "not stored"),
    ),
    "i": ("lr", probe_i, ("OK", "OK", "OK"), (NOPERM,) * 3),
    "k": ("lrx", probe_k, ("OK", "OK"), (NOPERM, NOPERM)),
    "x": ("lrk", probe_x, ("OK", "OK"), (NOPERM, NOPERM)),
    "e": ("lrst", probe_e, ("OK", "1 left", "OK"), (NOPERM, "2 left", NOPERM)),
    "a": ("lr", probe_a, ("OK",) * 5, (NOPERM,) * 4 + ("OK",)),
}


def test_each_right_allows_exactly_the_commands_rfc_4314_ties_to_it(imap_server: Server) -> None:
    bob = connect(imap_server, "bob")
    for right, (base, _, _, _) in MATRIX.items():
        for user, rights in (("alice", base + right), ("carol", base)):
            name = f"INBOX.m_{right}_{user}"
            assert bob.create(name)[0] == "OK"
            for n in (1, 2):
                assert bob.append(name, None, None, message(f"m{n}"))[0] == "OK"
            children = [f"{name}.one", f"{name}.two"] if right in "kx" else []
            for child in children:  # what k and x work on, with the same rights
                assert bob.create(child)[0] == "OK"
                assert bob.setacl(child, user, rights)[0] == "OK"
            assert bob.setacl(name, user, rights)[0] == "OK"
    bob.logout()
    for user in ("alice", "carol"):  # something of their own to COPY from
        append(imap_server, "INBOX", message(f"own of {user}"), user=user)

    observed, expected = {}, {}
    for right, (_, probe, with_it, without_it) in MATRIX.items():
        observed[right] = (probe(imap_server, "alice"), probe(imap_server, "carol"))
        expected[right] = (with_it, without_it)
    observed["s (FETCH)"] = (
        probe_seen_by_fetch(imap_server, "alice"),
        probe_seen_by_fetch(imap_server, "carol"),
    )
    expected["s (FETCH)"] = (("seen",), ("unseen",))
    assert observed == expected


def test_the_chapter_s_example_and_the_acl_commands_with_imaplib(imap_server: Server) -> None:
    append(imap_server, "INBOX.shared", message("shared one"))
    bob = connect(imap_server, "bob")
    capabilities = bob.capability()[1][0].split()
    assert b"ACL" in capabilities and b"RIGHTS=kxte" in capabilities
    for who, rights in (("anyone", "lrsp"), ("alice", "lwi"), ("-carol", "s")):
        assert bob.setacl("INBOX.shared", who, rights)[0] == "OK"
    status, data = bob.getacl("INBOX.shared")
    assert status == "OK"
    assert data == [b'"INBOX.shared" bob lrswipkxtecda anyone lrsp alice lwi -carol s']
    status, data = command(bob, "LISTRIGHTS INBOX.shared alice")
    assert status == "OK"
    assert data[0] == (
        b'* LISTRIGHTS "INBOX.shared" alice "" l r s w i p k x t e c d a 0 1 2 3 4 5 6 7 8 9'
    )
    status, data = command(bob, "LISTRIGHTS INBOX bob")
    assert data[0] == b'* LISTRIGHTS "INBOX" bob la r s w i p k x t e c d 0 1 2 3 4 5 6 7 8 9'
    assert command(bob, "SETACL INBOX.shared alice lrq")[0] == "BAD"  # RFC 4314 §3.1
    assert command(bob, 'SETACL INBOX.shared "" lr')[0] == "NO"
    bob.logout()

    alice, carol = connect(imap_server, "alice"), connect(imap_server, "carol")
    assert alice.myrights("user.bob.shared") == ("OK", [b'"user.bob.shared" lrswip'])
    assert carol.myrights("user.bob.shared") == ("OK", [b'"user.bob.shared" lrp'])
    for client in (alice, carol):
        assert outcome(client.getacl("user.bob.shared")) == "NO [NOPERM]"
        missing = [outcome(client.myrights(n)) for n in ("user.bob.Sent", "user.bob.nothing")]
        assert missing == ["NO [NONEXISTENT]"] * 2
        client.logout()


def test_imapclient_reads_and_changes_acls(imap_server: Server) -> None:
    append(imap_server, "INBOX.team", message("team news"))
    with imapclient.IMAPClient("127.0.0.1", imap_server.ports["imap"], ssl=False) as bob:
        bob.login("bob", PASSWORD)
        bob.setacl("INBOX.team", "alice", "lrs")
        bob.setacl("INBOX.team", "carol", "+lrc")
        assert bob.getacl("INBOX.team") == [
            (b"bob", b"lrswipkxtecda"),
            (b"alice", b"lrs"),
            (b"carol", b"lrkxc"),
        ]
        bob.setacl("INBOX.team", "carol", "-lrc")  # no rights left: the entry goes
        assert [who for who, _ in bob.getacl("INBOX.team")] == [b"bob", b"alice"]
        with pytest.raises(imapclient.exceptions.IMAPClientError):
            bob.setacl("INBOX.team", "alice", "lrz")
    with imapclient.IMAPClient("127.0.0.1", imap_server.ports["imap"], ssl=False) as alice:
        alice.login("alice", PASSWORD)
        assert alice.select_folder("user.bob.team", readonly=True)[b"EXISTS"] == 1
        with pytest.raises(imapclient.exceptions.IMAPClientError, match="NOPERM"):
            alice.setacl("user.bob.team", "alice", "lrswi")


def test_groups_from_posthouse_s_table_and_the_system(imap_server: Server) -> None:
    # a system account and one of its groups (a group listing it, else its primary group)
    members = [(g.gr_name, m) for g in grp.getgrall() for m in g.gr_mem if m.isalnum()]
    system_group, system_user = members[0] if members else ("", "daemon")
    if not members:
        system_group = grp.getgrgid(pwd.getpwnam(system_user).pw_gid).gr_name
    with UserDatabase(imap_server.home / "data" / "etc" / "users.db") as users:
        users.add(system_user, PASSWORD)
    (imap_server.home / "data" / "imap" / "groups").write_text("# team\nteam: alice\n")
    append(imap_server, "INBOX.team", message("team news"))
    bob = connect(imap_server, "bob")
    assert bob.setacl("INBOX.team", "group:team", "lrs")[0] == "OK"
    assert bob.setacl("INBOX.team", f"group:{system_group}", "lr")[0] == "OK"
    bob.logout()
    for user, rights in (("alice", b"lrs"), (system_user, b"lr")):
        client = connect(imap_server, user)
        assert client.myrights("user.bob.team") == ("OK", [b'"user.bob.team" ' + rights])
        assert client.select("user.bob.team", readonly=True) == ("OK", [b"1"])
        client.logout()
    carol = connect(imap_server, "carol")
    assert outcome(carol.select("user.bob.team")) == "NO [NONEXISTENT]"
    carol.logout()


def test_mbsync_syncs_a_folder_shared_read_only_without_writing_flags_back(
    imap_server: Server, tmp_path: Path
) -> None:
    append(imap_server, "INBOX.ro", message("plain"), message("flagged"))
    bob = connect(imap_server, "bob")
    assert bob.select("INBOX.ro")[0] == "OK"
    assert bob.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK"
    assert bob.setacl("INBOX.ro", "alice", "lrs")[0] == "OK"  # read, seen state; no w t e i
    bob.logout()
    before = server_view(imap_server, "INBOX.ro")
    home, local = tmp_path / "home", tmp_path / "Mail"
    home.mkdir()
    local.mkdir()
    rc = home / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount shared\nHost 127.0.0.1\nPort {imap_server.ports['imap']}\nUser alice\n"
        f"Pass {PASSWORD}\nSSLType None\nAuthMechs LOGIN\n\n"
        "IMAPStore remote\nAccount shared\nPath user.bob.\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel ro\nFar :remote:ro\nNear :local:ro\nCreate Near\nExpunge Both\nSyncState *\n"
    )
    env = {**os.environ, "HOME": str(home)}

    def sync() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mbsync", "--verbose", "-c", str(rc), "ro"],
            env=env,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
        )

    first = sync()
    assert first.returncode == 0, first.stdout + first.stderr
    folder = local / "ro"
    assert local_view(folder) == {"plain": "", "flagged": "F"}, first.stdout
    set_local_flags(folder, "plain", "FS")  # flagged and read here ...
    set_local_flags(folder, "flagged", "T")  # ... and this one deleted
    second = sync()  # mbsync sends the changes; the server keeps what alice may change
    assert second.returncode == 0, second.stdout + second.stderr
    assert server_view(imap_server, "INBOX.ro") == before  # bob's messages and flags as they were
    alice = connect(imap_server, "alice")
    assert flags_of_first(alice, "user.bob.ro") == {"\\Seen"}  # s: alice's own seen state
    alice.logout()
    third = sync()  # mbsync sees \Flagged missing on the server and takes it back here
    assert third.returncode == 0, third.stdout + third.stderr
    # the message alice deleted here stays gone here (mbsync's state remembers the
    # deletion) and stays on the server, which never let her delete it
    assert local_view(folder) == {"plain": "S"}, third.stdout
    assert server_view(imap_server, "INBOX.ro") == before


def test_a_mailbox_alice_may_not_see_answers_as_one_that_does_not_exist(
    imap_server: Server,
) -> None:
    append(imap_server, "INBOX.secret", message("secret"))
    append(imap_server, "INBOX", message("alice's own"), user="alice")
    alice = connect(imap_server, "alice")
    answers: dict[str, list[tuple[str, list[bytes]]]] = {}
    for name in ("user.bob.secret", "user.bob.missing"):
        assert alice.select("INBOX")[0] == "OK"
        answers[name] = [
            command(alice, line.format(name))
            for line in (
                "COPY 1 {}",  # first: a failed SELECT leaves the selected state
                "SELECT {}",
                "EXAMINE {}",
                "STATUS {} (MESSAGES)",
                "APPEND {} {{5+}}\r\nhello",
                "DELETE {}",
                "RENAME {} user.bob.other",
                "GETACL {}",
                "MYRIGHTS {}",
                "LISTRIGHTS {} alice",
                "SETACL {} alice lr",
                "DELETEACL {} alice",
            )
        ]
    alice.logout()
    hidden = [
        (s, [d.replace(b"secret", b"NAME") for d in data]) for s, data in answers["user.bob.secret"]
    ]
    missing = [
        (s, [d.replace(b"missing", b"NAME") for d in data])
        for s, data in answers["user.bob.missing"]
    ]
    assert hidden == missing
    assert {status for status, _ in hidden} == {"NO"}
    assert hidden[0][1][-1] == b"[TRYCREATE] mailbox user.bob.NAME does not exist"  # COPY
    assert hidden[1][1][-1] == b"[NONEXISTENT] mailbox user.bob.NAME does not exist"
