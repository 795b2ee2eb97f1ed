"""``posthouse serve``: the all-in-one daemon.

Loads and validates the configuration (a bad file stops start-up with the
file, the line and the problem), prepares the data directory (on first run
with a demo user and a default aliases file), binds every listener, drops root
privileges, and then serves in this process or in ``--workers N`` forked
processes sharing the listening sockets.  SIGTERM drains sessions in flight;
SIGHUP reloads the configuration and the aliases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import socket
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from posthouse.app import (
    Application,
    build_application,
    identity_resolver,
    login_limiter_for,
    prepare_data_dir,
    serve_forever,
)
from posthouse.auth.authenticator import VerifiedCache
from posthouse.auth.failure_limits import LoginLimiter
from posthouse.auth.users import UserDatabase
from posthouse.config.load import ConfigError, load_settings
from posthouse.config.schema import ListenerSection, Settings
from posthouse.logsetup import setup_logging
from posthouse.mta.agents.local_runner import DirectRunner, LocalRunner, start_helper
from posthouse.mta.aliasdb import build_alias_database
from posthouse.mta.aliases import AliasSyntaxError
from posthouse.server.listener import BindError, bind_socket, socket_port
from posthouse.server.privileges import PrivilegeError, drop_privileges
from posthouse.server.supervisor import run_workers
from posthouse.server.tls import TLSConfigError, server_context

EX_CONFIG = 78
EX_OSERR = 71
EX_UNAVAILABLE = 69

DEMO_USER = "demo"
VERIFIED_LOGIN_SECONDS = 300.0  # a verified password is trusted again for five minutes
DEFAULT_ALIASES = """\
# aliases(5) for posthouse: "name: address, address, ..."
# Run `posthouse newaliases` after editing (the running daemon picks it up at once).
postmaster: {demo}
MAILER-DAEMON: postmaster
abuse: postmaster
"""

log = logging.getLogger("posthouse")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run the mail server")
    parser.add_argument("--workers", type=int, help="number of worker processes")
    parser.set_defaults(func=run)


def bootstrap(settings: Settings) -> str | None:
    """First run on a fresh data directory: a demo user and default aliases.

    Returns the demo user's password when the demo user exists (it is kept in
    ``etc/demo-password``, readable by the server only, so it can be shown).
    """
    paths = settings.paths
    prepare_data_dir(settings)
    secret_file = paths.users_db.parent / "demo-password"
    with UserDatabase(paths.users_db) as users:
        if not users.list():
            password = secrets.token_urlsafe(12)
            users.add(DEMO_USER, password)
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
    if not paths.aliases_file.exists():
        paths.aliases_file.write_text(DEFAULT_ALIASES.format(demo=DEMO_USER), encoding="utf-8")
    refresh_aliases(settings)
    if secret_file.exists():
        return secret_file.read_text(encoding="utf-8").strip()
    return None


def refresh_aliases(settings: Settings) -> None:
    """Rebuild the aliases database when the aliases file is newer (or it is missing)."""
    paths = settings.paths
    if not paths.aliases_file.exists():
        return
    db = paths.aliases_db
    if not db.exists() or db.stat().st_mtime_ns < paths.aliases_file.stat().st_mtime_ns:
        count = build_alias_database(paths.aliases_file, db)
        log.info("aliases: %d entries from %s", count, paths.aliases_file)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        if settings.config.tls.cert_file:
            server_context(settings.config.tls.cert_file, settings.config.tls.key_file)
    except (ConfigError, TLSConfigError) as exc:
        print(f"posthouse: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    setup_logging(settings.config.server)
    try:
        demo_password = bootstrap(settings)
    except AliasSyntaxError as exc:
        print(f"posthouse: aliases error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except OSError as exc:
        print(f"posthouse: cannot prepare {settings.paths.data_dir}: {exc}", file=sys.stderr)
        return EX_OSERR
    # Started as root with an account to drop to: programs and files are run by a helper
    # that keeps root (never the daemon's account, which holds the keys; see local_runner).
    runner: LocalRunner | None = None
    if os.geteuid() == 0 and settings.config.server.run_as:
        runner = start_helper(DirectRunner(identity_resolver(settings)))
    try:
        sockets = [
            (item, bind_socket(item.address, item.port, item.path))
            for item in settings.config.listener
        ]
    except BindError as exc:
        print(f"posthouse: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    try:
        drop_privileges(settings.config.server.run_as, [settings.paths.data_dir])
    except (PrivilegeError, OSError) as exc:
        print(f"posthouse: {exc}", file=sys.stderr)
        return EX_OSERR
    announce(settings, sockets, demo_password)
    workers = args.workers if args.workers is not None else settings.config.server.workers
    pid_file = pid_file_of(settings)
    pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
    # Made here, before the fork: all workers share them.
    verified_logins = VerifiedCache(ttl=VERIFIED_LOGIN_SECONDS)
    login_limiter = login_limiter_for(settings)
    try:
        if workers <= 1:
            return serve_in_process(settings, sockets, verified_logins, login_limiter, runner)
        return run_workers(
            workers,
            lambda: serve_in_process(settings, sockets, verified_logins, login_limiter, runner),
        )
    finally:
        with contextlib.suppress(OSError, ValueError):
            if int(pid_file.read_text()) == os.getpid():
                pid_file.unlink()


def pid_file_of(settings: Settings) -> Path:
    """Where the daemon records its process id (for ``posthouse setup`` to offer a reload)."""
    return settings.paths.data_dir / "posthouse.pid"


def announce(
    settings: Settings, sockets: list[tuple[ListenerSection, socket.socket]], password: str | None
) -> None:
    config = settings.config
    print(f"posthouse: data directory {settings.paths.data_dir} (configuration: {settings.source})")
    for listener, sock in sockets:
        where = listener.path or f"{listener.address}:{socket_port(sock)}"
        print(f"posthouse: listening {listener.protocol} on {where}")
    if password is not None:
        domain = (
            config.mail.local_domains[0] if config.mail.local_domains else config.server.hostname
        )
        print(f"posthouse: demo user {DEMO_USER}@{domain} password {password}")
    sys.stdout.flush()


def serve_in_process(
    settings: Settings,
    sockets: list[tuple[ListenerSection, socket.socket]],
    verified_logins: VerifiedCache | None = None,
    login_limiter: LoginLimiter | None = None,
    runner: LocalRunner | None = None,
) -> int:
    app = build_application(
        settings,
        verified_logins=verified_logins,
        login_limiter=login_limiter,
        local_runner=runner,
    )
    try:
        run_loop(settings, serve_forever(app, sockets, on_reload=lambda: reload(app)))
    finally:
        app.close()
    return 0


def run_loop(settings: Settings, main: Coroutine[Any, Any, None]) -> None:
    """Run the daemon's coroutine on the configured event loop."""
    if settings.config.server.event_loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def reload(app: Application) -> None:
    """SIGHUP: re-read the configuration and the aliases; keep the old ones on error."""
    try:
        fresh = load_settings(None if app.settings.source.startswith("(") else app.settings.source)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        return
    mail = fresh.config.mail
    app.local_domains.replace(
        [fresh.config.server.hostname, "localhost", *mail.local_domains, *mail.host_aliases]
    )
    app.policy.set_trusted_networks(mail.trusted_networks)
    try:
        refresh_aliases(fresh)
    except (AliasSyntaxError, OSError) as exc:
        log.error("aliases not rebuilt: %s", exc)
    log.info("configuration reloaded from %s", fresh.source)
