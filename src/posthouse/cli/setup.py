"""``posthouse setup``: the chapter's Mail Configuration application (mailsetup, 12.3).

Creates or updates the configuration file from the answers of the Basic Mail Setup and Mail
Protocol worksheets (12.2.3).  The file is ``--config FILE``, else ``$POSTHOUSE_CONFIG``, else
``./posthouse.toml``; an existing file supplies the current answers and every option that
setup does not ask about is kept.

**Interactive mode** (the default when standard input is a terminal and no answer is given
as a flag; ``--interactive`` forces it) asks in the worksheets' order, showing the current
value as the default and asking again, with the reason, after an invalid answer:

* the role: standalone (12.3.1), client (12.3.2) or server (12.3.3);
* client: the mail server, preferably the domain ("your mail service cannot be interrupted
  by a single mail server that becomes unavailable"), then the mailbox directory (local,
  NFS client, NFS server), the mailbox server for an NFS client, and the locking;
* server: the top domain, the local domains, the mailbox directory (local, server, or NFS
  client) and the locking;
* standalone: the local domains, the mailbox directory (local, NFS client, NFS server), the
  mailbox server and the locking;
* the locking defaults by the worksheet's rule: local -> lockf, NFS client -> lockfile,
  server / NFS server -> both (the current value when the mailbox directory is unchanged);
* standalone and server: the SMTP forwarding mode and, unless it is ``none``, the relay host;
* every role: the host aliases;
* server: the gateway protocols (DECnet, DECnet/OSI, UUCP, MTS, X.25), and per protocol the
  routing (direct, relay, internet), the relay's host name and protocol, the program for
  direct routing, the pseudodomain (DECnet, DECnet/OSI, MTS), its aliases, the DECnet node
  address and the DECnet/OSI DNS name space.

**Scripted mode** takes the answers as flags (``--role``, ``--mail-server``, ...); answers not
given keep their current values.  Repeatable list flags (``--host-alias``, ``--local-domain``)
replace the list; a single empty value (``--host-alias=``) empties it.  ``--pseudodomain
PROTOCOL:NAME[:ROUTING[:RELAY_HOST]]`` adds or updates the entry of one protocol (other
protocols are kept; ``--remove-pseudodomain PROTOCOL`` drops one).

Answers that only make sense with others are cleared when those change: the mail server
unless the role is client, the mailbox server unless the mailbox directory is an NFS client,
the relay host when forwarding is ``none``, a pseudodomain's relay host unless its routing is
``relay``.

An existing file is edited in place: only the options whose values change are rewritten,
missing ones added to their table, and everything else (comments, order, blank lines) kept
byte for byte (:mod:`posthouse.config.edit`); a new file is written whole from the values
(:mod:`posthouse.config.render`), as is, with a notice, a file in a form the editor does not
follow (dotted keys or inline tables for the tables setup changes).

Before anything is written the whole result is checked: ``parse_config`` on the text to be
written, then the checks the daemon makes when it starts (host specifications of the mail
server and relay, pseudodomain names unique across protocols).  Setup then shows the
difference from the current file, asks ``Write this configuration? [y/N]`` (not with
``--yes``), writes through a temporary file and a rename, keeping the old file as
``FILE.bak``, and, as the chapter's last step (12.3.1 step 8), asks whether to restart a
running daemon now or let the changes apply at the next boot; the restart stops the daemon
(letting sessions finish) and starts it with the new file, as ``posthouse restart`` does.
When no daemon runs, the interactive question is whether to start it now (the chapter's
Restart starts sendmail), No being the default.  In scripted mode it restarts a running
daemon unless ``--no-restart``, and never starts one.

Exit status: 0 done (or nothing to change), 1 declined or aborted, 64 usage error, 69 the
file was written but the daemon did not restart, 73 the file cannot be written, 78 invalid
answers or an invalid existing/new configuration.

This module owns the command (``add_parser``, :func:`run_setup`, :func:`main`) and showing
the difference.  Checking and writing the file are :mod:`posthouse.admin.setup`'s, restarting
the daemon :mod:`posthouse.admin.daemon`'s; the answers' choices, checks and draft are in
:mod:`posthouse.admin.setup_answers`, the interactive questions in
:mod:`posthouse.cli.setup_questions` and the scripted flags in :mod:`posthouse.cli.setup_flags`;
their public names are re-exported here.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from posthouse.admin.daemon import (
    LSB_OK,
    STATUS_DEAD_WITH_PID_FILE,
    STATUS_NOT_RUNNING,
    daemon_status,
    restart_daemon,
    start_daemon,
)
from posthouse.admin.errors import AdminError, NotConfigured
from posthouse.admin.setup import (
    InvalidConfiguration,
    check_configuration,
    settings_of,
    write_atomically,
)
from posthouse.admin.setup_answers import (
    FORWARDINGS,
    LOCKINGS,
    MAILBOX_CHOICES,
    MAILBOX_EQUIVALENT,
    NAMED_PROTOCOLS,
    PROTOCOL_TITLES,
    PROTOCOLS,
    ROLES,
    ROUTINGS,
    AnswerError,
    Draft,
    GatewayProtocol,
    check_choice,
    check_config,
    check_domain,
    check_host_spec,
    check_namespace,
    check_node_address,
    check_pseudodomain_name,
    default_locking,
    split_list,
)
from posthouse.cli.exits import EX_CANTCREAT, EX_CONFIG, EX_OK, EX_USAGE, exit_status
from posthouse.cli.setup_flags import ANSWER_FLAGS, any_answer_flags, apply_flags, configure_parser
from posthouse.cli.setup_questions import Ask, Dialogue, interview
from posthouse.config.edit import edit_config
from posthouse.config.load import ConfigError, parse_config
from posthouse.config.render import render_config
from posthouse.config.schema import Config

__all__ = [
    "ANSWER_FLAGS",
    "DEFAULT_FILE",
    "EX_CANTCREAT",
    "EX_CONFIG",
    "EX_DECLINED",
    "EX_OK",
    "EX_USAGE",
    "FORWARDINGS",
    "LOCKINGS",
    "MAILBOX_CHOICES",
    "MAILBOX_EQUIVALENT",
    "NAMED_PROTOCOLS",
    "PROTOCOLS",
    "PROTOCOL_TITLES",
    "ROLES",
    "ROUTINGS",
    "AnswerError",
    "Ask",
    "Dialogue",
    "Draft",
    "GatewayProtocol",
    "add_parser",
    "any_answer_flags",
    "apply_flags",
    "check_choice",
    "check_config",
    "check_domain",
    "check_host_spec",
    "check_namespace",
    "check_node_address",
    "check_pseudodomain_name",
    "config_path",
    "configure_parser",
    "default_locking",
    "interview",
    "main",
    "run_setup",
    "show_diff",
    "split_list",
    "write_atomically",
]

EX_DECLINED = 1
EX_RESTART_FAILED = 69  # EX_UNAVAILABLE: written, but the daemon did not come back

DEFAULT_FILE = "posthouse.toml"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "setup",
        help="create or update the configuration (the Mail Configuration application)",
        description="Configure mail from the worksheet answers (chapter 12.3).",
    )
    configure_parser(parser)
    parser.set_defaults(func=lambda args: run_setup(args))


def config_path(option: str | None) -> Path:
    """``--config``, else ``$POSTHOUSE_CONFIG``, else ``./posthouse.toml``."""
    return Path(option or os.environ.get("POSTHOUSE_CONFIG") or DEFAULT_FILE)


def show_diff(old_text: str, new_text: str, path: Path, out: TextIO) -> None:
    """Write the unified diff from the current file to the new text."""
    had = bool(old_text)
    diff = difflib.unified_diff(
        old_text.splitlines(keepends=True),
        new_text.splitlines(keepends=True),
        fromfile=f"{path} (current)" if had else "/dev/null",
        tofile=f"{path} (new)",
    )
    for line in diff:
        out.write(line if line.endswith("\n") else line + "\n")
    out.flush()


# -- the command ----------------------------------------------------------------------------


def _stdin_ask(stdin: TextIO, stdout: TextIO) -> Ask:
    def ask(prompt: str) -> str:
        stdout.write(prompt)
        stdout.flush()
        line = stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    return ask


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def run_setup(
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    ask: Ask | None = None,
) -> int:
    """``posthouse setup`` with the parsed ``args``; returns the exit status.

    ``ask(prompt) -> answer`` asks one question (raising EOFError when there is no more
    input); by default it writes the prompt to ``stdout`` and reads a line of ``stdin``.
    """
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    dialogue = Dialogue(ask if ask is not None else _stdin_ask(stdin, out), out)

    def fail(status: int, message: str) -> int:
        err.write(f"setup: {message}\n")
        err.flush()
        return status

    if args.interactive:
        interactive = True
    elif args.batch or args.yes or any_answer_flags(args):
        interactive = False
    else:
        interactive = ask is not None or _isatty(stdin)
    path = config_path(getattr(args, "config", None))
    try:
        old_text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        return fail(EX_CONFIG, f"{path}: cannot read: {exc}")
    had_file = path.exists()
    try:
        old = parse_config(old_text, str(path)) if had_file else Config()
    except ConfigError as exc:
        return fail(EX_CONFIG, f"the current file is invalid, fix or move it first: {exc}")
    draft = Draft.of(old)
    try:
        apply_flags(draft, args)
        if interactive:
            interview(draft, dialogue, had_file=had_file)
    except AdminError as exc:
        return fail(exit_status(exc), str(exc))
    except (EOFError, KeyboardInterrupt):
        dialogue.say("")
        return fail(EX_DECLINED, "aborted, nothing written")
    draft.tidy()
    new = draft.apply(old)
    edited = edit_config(old_text, old, new) if old_text.strip() else None
    if old_text.strip() and edited is None:
        dialogue.say(
            f"{path} is written in a form setup cannot edit in place: it is written anew"
            " from its values (its comments are not kept; the old file is kept as .bak)."
        )
    new_text = render_config(new) if edited is None else edited
    try:
        check_configuration(new_text, path)
    except InvalidConfiguration as exc:
        for problem in exc.problems:
            err.write(f"setup: {problem}\n")
        return fail(EX_CONFIG, "invalid answers; nothing written")
    except NotConfigured as exc:
        return fail(EX_CONFIG, f"the new configuration would be invalid: {exc}; nothing written")
    if new_text == old_text:
        dialogue.say(f"{path} is up to date; nothing to change.")
        return EX_OK
    show_diff(old_text, new_text, path, out)
    if not args.yes:
        try:
            accepted = dialogue.yes_no("Write this configuration?", default=False)
        except (EOFError, KeyboardInterrupt):
            accepted = False
        if not accepted:
            dialogue.say("Nothing written.")
            return EX_DECLINED
    try:
        backup = write_atomically(path, new_text)
    except AdminError as exc:
        return fail(exit_status(exc), str(exc))
    dialogue.say(f"Wrote {path}" + (f" (previous version in {backup})." if backup else "."))
    return _offer_restart(args, new, path, dialogue, interactive=interactive, err=err)


def _offer_restart(
    args: argparse.Namespace,
    new: Config,
    path: Path,
    dialogue: Dialogue,
    *,
    interactive: bool,
    err: TextIO,
) -> int:
    """The chapter's last step (12.3.1 step 8): restart the daemon now, or let the changes
    apply at the next boot."""
    settings = settings_of(new, path)
    running = daemon_status(settings)
    if running.code == LSB_OK:
        later = f"the running daemon (pid {running.pid}) keeps the old configuration until "
        later += "the next boot or `posthouse restart`."
        question, verb = "Restart", "restarted"
    elif interactive and running.code in (STATUS_NOT_RUNNING, STATUS_DEAD_WITH_PID_FILE):
        # On a new system the chapter's Restart starts the daemon; an Enter does not.
        later = "the configuration applies when the daemon starts (at the next boot or "
        later += "`posthouse start`)."
        question, verb = "Start", "started"
    else:
        dialogue.say("No running daemon found; the configuration applies when it starts.")
        return EX_OK
    if args.no_restart:
        dialogue.say(f"Not {verb}: {later}")
        return EX_OK
    if interactive:
        try:
            accepted = dialogue.yes_no(
                f"{question} the mail daemon now to apply the changes (No: at the next boot)?",
                default=verb == "restarted",
            )
        except (EOFError, KeyboardInterrupt):
            accepted = False
        if not accepted:
            dialogue.say(f"Not {verb}: {later}")
            return EX_OK
    result = restart_daemon(settings) if verb == "restarted" else start_daemon(settings)
    if result.code != LSB_OK:
        err.write(f"setup: {question.lower()} failed: {result.message}\n")
        return EX_RESTART_FAILED
    dialogue.say(f"The mail daemon has been {verb} with {path}: {result.message}.")
    return EX_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    ask: Ask | None = None,
) -> int:
    """``setup`` as a stand-alone command (``--config FILE`` plus the setup options)."""
    parser = argparse.ArgumentParser(prog="posthouse setup")
    parser.add_argument("--config", metavar="FILE")
    configure_parser(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EX_OK if exc.code == 0 else EX_USAGE
    return run_setup(args, stdin=stdin, stdout=stdout, stderr=stderr, ask=ask)
