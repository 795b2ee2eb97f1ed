"""``posthouse start | stop | restart | status | reload``: the daemon as an init script runs it.

::

    posthouse start      start ``posthouse serve`` in the background; wait until it answers
    posthouse stop       stop it, waiting while it finishes the sessions in flight
    posthouse restart    stop, then start (a new configuration file applies as a whole; one
                         whose NFS mailbox directory is not mounted leaves it running)
    posthouse status     say whether it runs; with --connections, list the live connections
                         (process, protocol, client, user, selected IMAP mailbox: 12.5.5)
    posthouse reload     re-read the configuration (as SIGHUP does); says what needs a restart

The chapter's ``/sbin/init.d/sendmail start|stop|restart`` (12.8).  The exit codes are those
of LSB init scripts: ``status`` 0 running, 1 dead but the pid file exists, 3 not running,
4 unknown; the others 0 done (start when running and stop when stopped included), 1 failed,
4 not permitted (stop and reload are for root and the daemon's account), 6 not configured,
7 not running (reload).  ``contrib/posthouse.service`` runs the daemon under systemd instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from posthouse.admin.daemon import (
    LSB_NOT_CONFIGURED,
    LSB_NOT_PERMITTED,
    Result,
    connection_listing,
    daemon_status,
    reload_daemon,
    restart_daemon,
    start_daemon,
    stop_daemon,
)
from posthouse.admin.errors import NotPermitted
from posthouse.config.load import ConfigError, load_settings
from posthouse.config.schema import Settings

ACTIONS: dict[str, tuple[str, Callable[[Settings, argparse.Namespace], Result]]] = {
    "start": ("start the daemon in the background", lambda s, a: start_daemon(s)),
    "stop": (
        "stop the daemon, letting sessions in flight finish",
        lambda s, a: stop_daemon(s, timeout=a.timeout),
    ),
    "restart": ("stop and start the daemon", lambda s, a: restart_daemon(s, timeout=a.timeout)),
    "status": ("whether the daemon is running (LSB status codes)", lambda s, a: daemon_status(s)),
    "reload": ("have the daemon re-read its configuration", lambda s, a: reload_daemon(s)),
}


def add_parser(subparsers: Any) -> None:
    for name, (summary, _action) in ACTIONS.items():
        parser = subparsers.add_parser(name, help=summary, description=summary)
        if name in ("stop", "restart"):
            parser.add_argument(
                "--timeout",
                type=float,
                metavar="SECONDS",
                help="how long to wait for the daemon to exit "
                "(default: server.shutdown_grace_seconds + 30)",
            )
        if name == "status":
            parser.add_argument(
                "-c",
                "--connections",
                action="store_true",
                help="also list the live connections: process, protocol, client, user and "
                "selected IMAP mailbox (root and the daemon's account)",
            )
        parser.set_defaults(func=run, daemon_action=name)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"posthouse {args.daemon_action}: configuration error: {exc}", file=sys.stderr)
        return LSB_NOT_CONFIGURED
    result = ACTIONS[args.daemon_action][1](settings, args)
    stream = sys.stdout if result.code == 0 else sys.stderr
    print(f"posthouse {args.daemon_action}: {result.message}", file=stream)
    if result.code == 0 and getattr(args, "connections", False):
        try:
            print(connection_listing(settings))
        except NotPermitted as exc:
            print(f"posthouse status: {exc}", file=sys.stderr)
            return LSB_NOT_PERMITTED
    return result.code
