#!/usr/bin/env python3
"""The IMAP side by side of ``imap_vs_peers.py``, without and with ACLs and quotas everywhere.

Issue 13 asks that ACL and quota checks not show in the IMAP figures: this runs the same
imaptest-style session mix (``imap_load.py``) against four servers serving the same users and
mail (``--clients`` users ``user1..userN``, password ``pass``, ``--messages`` messages of
``--size`` body bytes each, and the folders Sent, Drafts, Trash and Junk):

* ``dovecot-hp``: Dovecot in its high-performance login mode, as ``imap_vs_peers.py`` runs it;
* ``dovecot-hp+aq``: the same with its ``acl`` and ``quota`` plugins (and ``imap_acl``,
  ``imap_quota``): ``vfile`` ACLs, a ``dovecot-acl`` file in every mailbox, groups from the
  userdb's ``acl_groups`` field, and the ``count`` quota backend with one limit per user;
* ``posthouse-wN``: posthouse as ``imap_vs_peers.py`` runs it;
* ``posthouse-wN+aq``: the same with every mailbox's ACL and every user's quota root set
  through the store's service (the owner's session for SETACL, an admin's for SETQUOTA, the
  rules IMAP's SETACL and SETQUOTA go through), and a ``groups`` table.

Every mailbox of user ``userK`` gets the same ACL on both servers: the owner's full rights,
``anyone lr``, the group ``staff`` (every user is a member) ``lrs``, and a negative entry
taking ``w`` from the next user, so the rights computation has four entries, a group and a
negative entry to go through.  Every user gets one quota root (its INBOX and the mailboxes
below) of ``--quota-kb`` (default 1 GB, far above the usage: nothing is refused, the checks
run on every APPEND and SELECT).

The runs are interleaved: at each client count every server runs before the next, and
``--rounds`` (default 2) repeats the whole sequence, so that the load of a shared machine
falls on all alike.  Printed: every run's sessions and operations per second, then per client
count the means over the rounds and the ratios posthouse+aq / posthouse (the cost of the
checks), dovecot-hp+aq / dovecot-hp (the same for Dovecot) and posthouse+aq / dovecot-hp+aq.

Needs root (the Dovecot peer script installs packages and chowns its mail).  Example::

    .venv/bin/python benchmarks/imap_acl_quota_vs_peers.py --clients 10,50 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from imap_load import IMAPClient, LoadResult, run_load, user_names  # noqa: E402
from imap_vs_peers import PASSWORD, Dovecot, Posthouse, Server, ratio, warm_up  # noqa: E402

FOLDERS = ("Sent", "Drafts", "Trash", "Junk")
GROUP = "staff"
ADMIN = "benchadmin"
DOVECOT_PLUGINS = """
mail_plugins = $mail_plugins acl quota
protocol imap {
  mail_plugins = $mail_plugins imap_acl imap_quota
}
plugin {
  acl = vfile
  quota = count:User quota
  quota_rule = *:storage=%dK
  quota_vsizes = yes
}
"""


def next_user(user: str, users: Sequence[str]) -> str:
    """The user whose negative entry sits in ``user``'s ACLs (not the owner)."""
    return users[(users.index(user) + 1) % len(users)] if len(users) > 1 else "nobody"


class DovecotAclQuota(Dovecot):
    """Dovecot in high-performance login mode with the folders of posthouse's users; with
    ``aclquota``, its ACL and quota plugins on every mailbox and user."""

    def __init__(self, root: Path, aclquota: bool, quota_kb: int, passwords: str) -> None:
        super().__init__(root / ("aclquota" if aclquota else "plain"), True, passwords)
        self.aclquota = aclquota
        self.quota_kb = quota_kb
        self.users: list[str] = []
        if aclquota:
            self.name += "+aq"

    def start(self, users: Sequence[str], messages: int, size: int) -> None:
        self.users = list(users)
        super().start(users, messages, size)

    def _write(self, user: str, count: int, size: int) -> None:
        super()._write(user, count, size)
        maildir = self._maildir(user)
        for folder in FOLDERS:
            for sub in ("cur", "new", "tmp"):
                (maildir / f".{folder}" / sub).mkdir(parents=True, exist_ok=True)
        if self.aclquota:
            # One ACL per mailbox (vfile: the maildir's root, then each .Folder).
            acl = (
                f"user={user} lrwstipekxa\nanyone lr\ngroup={GROUP} lrs\n"
                f"-user={next_user(user, self.users)} w\n"
            )
            for directory in (maildir, *(maildir / f".{folder}" for folder in FOLDERS)):
                (directory / "dovecot-acl").write_text(acl)

    def _start(self) -> None:
        conf = self.dir / "dovecot.conf"
        text = conf.read_text()
        if self.aclquota and "imap_quota" not in text:
            text = text.replace("allow_all_users=no", f"allow_all_users=no acl_groups={GROUP}")
            conf.write_text(text + DOVECOT_PLUGINS % self.quota_kb)
        super()._start()


class PosthouseAclQuota(Posthouse):
    """posthouse as ``imap_vs_peers.py`` runs it (plus an admin); with ``aclquota``, every
    mailbox's ACL and every user's quota root set through the store's service."""

    def __init__(self, root: Path, workers: int, aclquota: bool, quota_kb: int) -> None:
        super().__init__(root / ("aclquota" if aclquota else "plain"), workers)
        self.aclquota = aclquota
        self.quota_kb = quota_kb
        if aclquota:
            self.name += "+aq"
        with self.config.open("a", encoding="utf-8") as config:
            config.write(f'\n[imap]\nadmins = "{ADMIN}"\n')

    def start(self, users: Sequence[str], messages: int, size: int) -> None:
        self._fill(users, messages, size)
        if self.aclquota:
            self._set_acls_and_quotas(users)
        self._start()

    def _set_acls_and_quotas(self, users: Sequence[str]) -> None:
        from posthouse.admin.mailstore import run_with_store
        from posthouse.config.load import load_settings
        from posthouse.imap_layout import imap_config_dir
        from posthouse.store.service import MailStore
        from posthouse.store.user_quota import UserQuotas

        settings = load_settings(self.config)
        groups = imap_config_dir(settings) / "groups"
        groups.write_text(f"{GROUP}: {' '.join(users)}\n", encoding="utf-8")

        async def configure(store: MailStore) -> None:
            admin = UserQuotas(store.session(ADMIN))
            for user in users:
                owner = store.session(user)
                for mailbox in ("INBOX", *(f"INBOX.{folder}" for folder in FOLDERS)):
                    await owner.set_acl(mailbox, "anyone", "lr")
                    await owner.set_acl(mailbox, f"group:{GROUP}", "lrs")
                    await owner.set_acl(mailbox, f"-{next_user(user, users)}", "w")
                await admin.set(f"user.{user}", self.quota_kb)

        run_with_store(settings, configure)


async def shown_setup(port: int, user: str, timeout: float) -> str:
    """What ``user`` sees of the set-up over IMAP (GETACL, MYRIGHTS, GETQUOTAROOT on its
    INBOX), printed so that a run shows the ACLs and quotas were in effect."""
    client = await IMAPClient.connect("127.0.0.1", port, timeout)
    try:
        await client.command(f'LOGIN {user} "{PASSWORD}"')
        lines = [
            *await client.command("GETACL INBOX"),
            *await client.command("MYRIGHTS INBOX"),
            *await client.command("GETQUOTAROOT INBOX"),
        ]
        await client.command("LOGOUT")
    finally:
        await client.close()
    return " | ".join(line.decode().strip() for line in lines)


def mean(values: Sequence[float]) -> float:
    return round(statistics.fmean(values), 1) if values else 0.0


def summary(results: dict[str, dict[int, list[LoadResult]]], dovecot: str, posthouse: str) -> str:
    """Means over the rounds per server and client count, and the three ratios."""
    lines = [f"{'clients':>7} {'server':<20} {'sessions/s':>10} {'ops/s':>9} {'failed':>6}"]
    ratios = []
    for clients in sorted({c for by_clients in results.values() for c in by_clients}):
        means: dict[str, tuple[float, float]] = {}
        for name, by_clients in results.items():
            runs = by_clients.get(clients, [])
            means[name] = (
                mean([r.sessions_per_second for r in runs]),
                mean([r.operations_per_second for r in runs]),
            )
            failed = sum(r.failures for r in runs)
            lines.append(
                f"{clients:>7} {name:<20} {means[name][0]:>10} {means[name][1]:>9} {failed:>6}"
            )
        for label, a, b in (
            ("posthouse+aq / posthouse", posthouse + "+aq", posthouse),
            ("dovecot-hp+aq / dovecot-hp", dovecot + "+aq", dovecot),
            ("posthouse+aq / dovecot-hp+aq", posthouse + "+aq", dovecot + "+aq"),
        ):
            if a in means and b in means:
                ratios.append(
                    f"{clients:>7} {label:<29} sessions {ratio(means[a][0], means[b][0])}"
                    f"  ops {ratio(means[a][1], means[b][1])}"
                )
    return "\n".join([*lines, "", *ratios])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--servers",
        default="dovecot-hp,dovecot-hp+aq,posthouse,posthouse+aq",
        help="which of the four to run, comma-separated, in this order each round",
    )
    p.add_argument("--workers", type=int, default=2, help="posthouse's worker processes")
    p.add_argument("--clients", default="10,50", help="client counts, comma-separated")
    p.add_argument("--messages", type=int, default=100, help="messages per user")
    p.add_argument("--size", type=int, default=5000, help="body bytes per message")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per run")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every run")
    p.add_argument("--quota-kb", type=int, default=1024 * 1024, help="every user's quota limit")
    p.add_argument(
        "--dovecot-passwords",
        choices=("argon2id", "plain"),
        default="argon2id",
        help="Dovecot's scheme: argon2id as posthouse's (default), or plain text",
    )
    p.add_argument("--io-timeout", type=float, default=60.0)
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


def make_server(name: str, root: Path, args: argparse.Namespace) -> Server:
    aclquota = name.endswith("+aq")
    base = name.removesuffix("+aq")
    if base == "dovecot-hp":
        return DovecotAclQuota(root, aclquota, args.quota_kb, args.dovecot_passwords)
    if base == "posthouse":
        return PosthouseAclQuota(root, args.workers, aclquota, args.quota_kb)
    raise SystemExit(f"unknown server {name!r} (dovecot-hp, posthouse, each optionally +aq)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    counts = sorted(int(c) for c in args.clients.split(","))
    users = user_names("user{}", counts[-1], 1)
    root = Path(tempfile.mkdtemp(prefix="imapaclbench-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    results: dict[str, dict[int, list[LoadResult]]] = {}
    servers: list[Server] = []
    try:
        for name in args.servers.split(","):
            server = make_server(name, root, args)
            servers.append(server)
            server.start(users, args.messages, args.size)
            asyncio.run(warm_up(server.port, users, args.io_timeout))
            if server.name.endswith("+aq"):
                shown = asyncio.run(shown_setup(server.port, users[0], args.io_timeout))
                print(f"{server.name} {users[0]}: {shown}", flush=True)
        for round_ in range(args.rounds):
            for clients in counts:
                for server in servers:
                    load = argparse.Namespace(
                        host="127.0.0.1", port=server.port, password=PASSWORD, size=args.size,
                        duration=args.duration, io_timeout=args.io_timeout,
                    )  # fmt: skip
                    result = asyncio.run(run_load(load, users[:clients]))
                    results.setdefault(server.name, {}).setdefault(clients, []).append(result)
                    print(
                        f"round {round_ + 1} {server.name} {clients} clients:"
                        f" sessions/s {result.sessions_per_second}"
                        f" ops/s {result.operations_per_second} failed {result.failures}"
                        f" {result.first_failure}",
                        flush=True,
                    )
        posthouse = next((s.name for s in servers if s.name.startswith("posthouse")), "")
        print()
        print(summary(results, "dovecot-hp", posthouse.removesuffix("+aq")))
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        n: {c: [r.__dict__ for r in rs] for c, rs in v.items()}
                        for n, v in results.items()
                    },
                    indent=2,
                )
            )
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
