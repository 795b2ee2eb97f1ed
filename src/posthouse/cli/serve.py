"""``posthouse serve``: the all-in-one daemon.

Loads and validates the configuration (a bad file stops start-up with the
file, the line and the problem), prepares the data directory (on first run
a default aliases file, and without a configuration file a demo user), binds every
listener and the control socket, drops root
privileges (saying so: which account it becomes and that the data directory is
handed to it), and then serves in this process or in ``--workers N`` forked
processes sharing the listening sockets (default: ``[server] workers``, ``"auto"``:
one per CPU).  SIGTERM drains sessions in flight; SIGHUP (or ``posthouse reload``) rebuilds
the application from the configuration file.  The wiring is :mod:`posthouse.app`'s and the
daemon's life :mod:`posthouse.daemon`'s; this module parses the command line, prints and
chooses the exit status.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from posthouse.admin.data import DEMO_USER, first_run
from posthouse.admin.errors import AdminError, NotConfigured
from posthouse.cli.exits import EX_CONFIG
from posthouse.config.load import ConfigError, load_settings
from posthouse.daemon import (
    ConfigurationProblem,
    Daemon,
    ListenProblem,
    StartupError,
    check_startup,
    prepare_daemon,
    run_daemon,
    worker_count,
)
from posthouse.logsetup import setup_logging

EX_OSERR = 71
EX_UNAVAILABLE = 69


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run the mail server")
    parser.add_argument(
        "--workers", type=_workers, metavar="N", help='worker processes ("auto": one per CPU)'
    )
    parser.set_defaults(func=run)


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number or 'auto'")
    return int(text)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        check_startup(settings)
    except (ConfigError, ConfigurationProblem) as exc:
        print(f"posthouse: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    setup_logging(settings.config.server)
    try:
        demo_password = first_run(settings)
        daemon = prepare_daemon(settings)
    except AdminError as exc:
        print(f"posthouse: {exc}", file=sys.stderr)
        return EX_CONFIG if isinstance(exc, NotConfigured) else EX_OSERR
    except StartupError as exc:
        print(f"posthouse: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE if isinstance(exc, ListenProblem) else EX_OSERR
    announce(daemon, demo_password)
    configured = args.workers if args.workers is not None else settings.config.server.workers
    return run_daemon(daemon, worker_count(configured), workers_fixed=args.workers is not None)


def announce(daemon: Daemon, password: str | None) -> None:
    """The start-up lines: data directory, account, listeners, demo user."""
    settings = daemon.settings
    config = settings.config
    print(f"posthouse: data directory {settings.paths.data_dir} (configuration: {settings.source})")
    if daemon.switched_to is not None:
        print(
            f"posthouse: started as root: running as {daemon.switched_to}, "
            f"which now owns {settings.paths.data_dir} (server.run_as)"
        )
    for protocol, where in daemon.listening():
        print(f"posthouse: listening {protocol} on {where}")
    if password is not None:
        domain = (
            config.mail.local_domains[0] if config.mail.local_domains else config.server.hostname
        )
        print(f"posthouse: demo user {DEMO_USER}@{domain} password {password}")
    sys.stdout.flush()
