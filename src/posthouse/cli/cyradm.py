"""``posthouse cyradm``: the IMAP administration shell, as Cyrus's cyradm (chapter 12.5).

::

    posthouse cyradm [--user NAME] [--password-file FILE] [--server HOST] [--port N]
                     [--imaps] [--notls] [--cafile FILE] [-c COMMANDS] [COMMAND [ARG ...]]

It logs in to an IMAP server (by default this posthouse's own, from the configuration's
``imap`` or ``imaps`` listener) as an administrator and runs cyradm's commands
(``help`` lists them: createmailbox/cm, deletemailbox/dm, renamemailbox/renm,
listmailbox/lm, setacl/sam, deleteacl/dam, listacl/lam, setquota/sq, listquota/lq,
listquotaroot/lqr, reconstruct).  With a COMMAND on the command line, ``-c`` (commands
separated by ``;`` or new lines), or commands on standard input when it is not a terminal,
it runs them one after the other and stops at the first that fails, with status 1; with
none on a terminal it is an interactive shell (:mod:`posthouse.cli.cyradm_shell`).

The password comes from ``--password-file`` (its first line) or is asked on the terminal.
STARTTLS is used when the server offers it (``--notls``: never); the certificate is checked
against ``--cafile``, the system's authorities, or, for this posthouse's own server, the
configuration's ``[tls] cert_file`` itself.  A user not in ``[imap] admins`` is refused
before connecting to the local server; any server refuses them the administrative commands.

Exit codes: 0 ok, 1 a command failed, 64 usage, 66 password file missing, 69 server
unreachable or connection lost, 77 not an administrator or login refused, 78 configuration.
"""

from __future__ import annotations

import argparse
import getpass
import shlex
import ssl
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from posthouse.admin.cyradm_client import ConnectionFailed, CyradmClient, ServerRefused
from posthouse.admin.cyradm_commands import CommandFailed, Quit, execute
from posthouse.admin.imap_words import WordError
from posthouse.cli.configured import settings_for
from posthouse.cli.exits import (
    EX_CONFIG,
    EX_NOINPUT,
    EX_NOPERM,
    EX_OK,
    EX_UNAVAILABLE,
    EX_USAGE,
)
from posthouse.config.schema import Settings

__all__ = ["add_parser", "command_lines", "run_commands"]

TOOL = "posthouse cyradm"
EX_FAILED = 1
MAX_PASSWORD = 1024


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``cyradm`` sub-command."""
    parser = subparsers.add_parser(
        "cyradm",
        help="IMAP administration shell (Cyrus cyradm): mailboxes, ACLs, quotas",
        description="Log in to the IMAP server as an administrator and run cyradm commands: "
        "the COMMAND given, the -c commands, those on standard input when it is not a "
        "terminal, or an interactive shell ('help' lists the commands). A command whose "
        "words start with '-' goes after '--': posthouse cyradm -- sam box -anonymous s",
    )
    parser.add_argument(
        "--user", "-u", metavar="NAME", help="administrator to log in as (default: you)"
    )
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        type=Path,
        help="read the password from FILE's first line (default: ask on the terminal)",
    )
    parser.add_argument(
        "--server", "-s", metavar="HOST", help="IMAP server (default: this posthouse's own)"
    )
    parser.add_argument("--port", "-p", metavar="N", type=int, help="IMAP port")
    parser.add_argument(
        "--imaps", action="store_true", help="implicit TLS (port 993 style) instead of STARTTLS"
    )
    parser.add_argument("--notls", action="store_true", help="do not use STARTTLS")
    parser.add_argument(
        "--cafile", metavar="FILE", help="CA certificates to check the server's certificate"
    )
    parser.add_argument(
        "-c",
        dest="commands",
        metavar="COMMANDS",
        action="append",
        default=[],
        help="commands to run, separated by ';' or new lines (may be repeated)",
    )
    parser.add_argument("command", metavar="COMMAND", nargs="*", help="one command to run")
    parser.set_defaults(func=main)


@dataclass(frozen=True)
class Target:
    """Where to connect and how to check the server's certificate."""

    host: str
    port: int
    implicit_tls: bool
    context: ssl.SSLContext
    local: bool  # this posthouse's own server (its admins are known from the configuration)


class TargetError(Exception):
    pass


def main(args: argparse.Namespace) -> int:
    """Entry point set as ``func``."""
    settings = settings_for(TOOL, args.config)
    if settings is None:
        return EX_CONFIG
    try:
        target = resolve_target(settings, args)
    except TargetError as exc:
        print(f"{TOOL}: {exc}", file=sys.stderr)
        return EX_USAGE
    except (OSError, ssl.SSLError) as exc:
        print(f"{TOOL}: certificate: {exc}", file=sys.stderr)
        return EX_CONFIG
    user = args.user or getpass.getuser()
    admins = settings.config.imap.admins.split()
    if target.local and user not in admins:
        print(
            f"{TOOL}: {user} is not an IMAP administrator (not in [imap] admins of "
            f"{settings.source}); "
            "cyradm is for the administrators the configuration names",
            file=sys.stderr,
        )
        return EX_NOPERM
    lines = command_lines(args.commands, args.command)
    interactive = lines is None and sys.stdin.isatty()
    if lines is None and not interactive:
        lines = list(sys.stdin)
    password = read_password(args.password_file, user)
    if isinstance(password, int):
        return password
    client = connect(target, user, password, starttls=not args.notls)
    if isinstance(client, int):
        return client
    try:
        if interactive:
            from posthouse.cli.cyradm_shell import run_shell

            return run_shell(client, target.host)
        assert lines is not None
        return run_commands(client, lines, sys.stdout, sys.stderr)
    finally:
        client.logout()


def command_lines(scripts: list[str], command: list[str]) -> list[str] | None:
    """The commands given on the command line (``-c`` scripts, then the COMMAND words),
    or None when there are none."""
    lines = [line for script in scripts for line in script.splitlines()]
    if command:
        lines.append(shlex.join(command))
    return lines or None


def resolve_target(settings: Settings, args: argparse.Namespace) -> Target:
    """The server to talk to: ``--server``/``--port``, else the configuration's listener."""
    if args.server:
        port = args.port or (993 if args.imaps else 143)
        return Target(args.server, port, args.imaps, _context(args.cafile, None), False)
    listeners = [
        listener
        for listener in settings.config.listener
        if listener.protocol in ("imap", "imaps") and not listener.path
    ]
    chosen = next((item for item in listeners if item.port == args.port), None)
    if chosen is None:
        chosen = next(iter(sorted(listeners, key=lambda item: item.protocol != "imap")), None)
    if chosen is None:
        raise TargetError("the configuration has no imap or imaps listener: give --server")
    port = args.port or chosen.port
    if not port:
        raise TargetError(f"the {chosen.protocol} listener's port is chosen at start: give --port")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        chosen.address, chosen.address
    )
    implicit = args.imaps or (chosen.port == port and chosen.protocol == "imaps")
    own_certificate = settings.config.tls.cert_file or None
    return Target(host, port, implicit, _context(args.cafile, own_certificate), True)


def _context(cafile: str | None, own_certificate: str | None) -> ssl.SSLContext:
    """A client TLS context: ``--cafile``, else posthouse's own certificate (pinned: it is
    the one the local server presents, so its name need not match the address), else the
    system's certificate authorities."""
    if cafile or not own_certificate:
        return ssl.create_default_context(cafile=cafile)
    context = ssl.create_default_context(cafile=own_certificate)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf itself is the anchor
    context.check_hostname = False
    return context


def read_password(password_file: Path | None, user: str) -> str | int:
    """The password, or the exit status when there is none to be had."""
    if password_file is not None:
        try:
            with password_file.open(encoding="utf-8") as source:
                password = source.readline(MAX_PASSWORD + 1).rstrip("\r\n")
        except FileNotFoundError:
            print(f"{TOOL}: {password_file}: no such file", file=sys.stderr)
            return EX_NOINPUT
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{TOOL}: {password_file}: {exc}", file=sys.stderr)
            return EX_NOINPUT
        if not password or len(password) > MAX_PASSWORD:
            print(
                f"{TOOL}: {password_file}: the first line must hold the password", file=sys.stderr
            )
            return EX_USAGE
        return password
    if not sys.stdin.isatty():
        print(
            f"{TOOL}: standard input is not a terminal: give the password with --password-file",
            file=sys.stderr,
        )
        return EX_USAGE
    return getpass.getpass(f"IMAP Password for {user}: ")


def connect(target: Target, user: str, password: str, *, starttls: bool) -> CyradmClient | int:
    """A logged-in client, or the exit status after saying why there is none."""
    try:
        client = CyradmClient.connect(
            target.host,
            target.port,
            implicit_tls=target.implicit_tls,
            context=target.context,
            starttls=starttls,
        )
    except ConnectionFailed as exc:
        print(f"{TOOL}: cannot connect to server: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    try:
        client.login(user, password)
    except ServerRefused as exc:
        client.logout()
        print(f"{TOOL}: cannot authenticate to server as {user}: {exc.text}", file=sys.stderr)
        return EX_NOPERM
    except (ConnectionFailed, WordError) as exc:
        print(f"{TOOL}: cannot authenticate to server as {user}: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    return client


def split_line(line: str) -> list[list[str]]:
    """One input line's commands (``;`` separates them, quotes and ``\\`` as in sh)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    lexer.commenters = ""
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word and set(word) == {";"}:
            commands.append([])
        else:
            commands[-1].append(word)
    return [words for words in commands if words]


def run_line(client: CyradmClient, line: str, out: TextIO, err: TextIO) -> bool:
    """Run one input line; False if a command in it failed (the reason is on *err*).
    :class:`Quit` and :class:`ConnectionFailed` pass through."""
    try:
        commands = split_line(line)
    except ValueError as exc:
        print(f"syntax error: {exc}", file=err)
        return False
    for words in commands:
        try:
            execute(client, words, out)
        except CommandFailed as exc:
            out.flush()
            print(exc, file=err)
            return False
    return True


def run_commands(client: CyradmClient, lines: Iterable[str], out: TextIO, err: TextIO) -> int:
    """One-shot mode: run *lines* until one fails (status 1) or ``quit`` (its status)."""
    try:
        for line in lines:
            if not run_line(client, line, out, err):
                return EX_FAILED
    except Quit as leave:
        return leave.status
    except ConnectionFailed as exc:
        print(f"{TOOL}: {exc}", file=err)
        return EX_UNAVAILABLE
    return EX_OK
