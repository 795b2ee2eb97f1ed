"""``sendmail`` (``posthouse-sendmail``, ``posthouse sendmail``): local submission.

The command line cron, mail(1) and scripts use::

    sendmail [-t] [-i|-oi] [-f sender] [-F "Full Name"] [-C config] [recipient ...] < message
    sendmail -bs          SMTP conversation on standard input/output
    sendmail -bi          rebuild the aliases database (newaliases)
    sendmail -bv address  show how each address resolves
    sendmail --help       this usage (``--config FILE`` is ``-C FILE``)

The message is queued durably, then delivered at once by this process (the
daemon's queue runs pick it up if that is interrupted); both are logged in the daemon's log
file or syslog, as an SMTP submission is.  Run by the link names ``mailq`` and ``newaliases``
it is those commands.  Exit codes follow
sysexits(3).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from email.parser import BytesHeaderParser
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, BinaryIO

from posthouse.app import Application, build_application, serve_stdio
from posthouse.cli.configured import settings_for
from posthouse.config.load import ConfigError
from posthouse.config.schema import Settings
from posthouse.logsetup import SYSLOG_SOCKET, setup_logging
from posthouse.mta.address_fields import addresses_in, rewrite_header_section
from posthouse.mta.destinations import (
    FileDestination,
    LocalMailbox,
    ProgramDestination,
    RemoteAddress,
)
from posthouse.mta.logline import received_line
from posthouse.mta.queue.run import BATCH, QueueRunSummary, Selector, run_queue
from posthouse.mta.routing import SMTP_PORT
from posthouse.mta.transport import AddressError, LocalRoute, PipeRoute, SMTPRoute

log = logging.getLogger("posthouse.sendmail")

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_TEMPFAIL = 75
EX_CONFIG = 78

MAX_HEADER_BYTES = 1024 * 1024

USAGE = """\
usage: sendmail [-t] [-i|-oi] [-f SENDER] [-F "FULL NAME"] [-C FILE] [RECIPIENT ...] < MESSAGE
       sendmail -bs | -bi | -bp | -bv ADDRESS ...
       sendmail -q | -qR<substr> | -qI<substr> | -qS<substr> [-oQDIR]

Submit a message from standard input (a line with a single '.' ends it unless -i).
  -t            also send to the To:, Cc: and Bcc: addresses (Bcc: is removed)
  -i, -oi       a line with a single '.' does not end the message
  -f, -r SENDER envelope sender (default: you@this host)
  -F NAME       full name for a From: field added by sendmail
  -C, --config FILE  configuration file (default: $POSTHOUSE_CONFIG or the data directory's)
  -bs           an SMTP conversation on standard input and output
  -bi           rebuild the aliases database (newaliases)
  -bp           list the queue (mailq)
  -bv ADDRESS   show how each address resolves, without delivering
  -q[RIS]STR    run the queue now (all, or messages whose recipient, id or sender contains STR)
  -oQDIR        use the queue directory DIR (an archived queue, 12.8)
  --help        show this help and exit
Exit status: sysexits(3) (0 ok, 64 usage, 65 data, 67 no such user, 75 try later, 78 config).
"""


class SendmailUsageError(Exception):
    """A command line sendmail does not understand."""


@dataclass
class Options:
    mode: str = "m"  # -bm deliver (default), -bs, -bi, -bv, or "help" (--help)
    extract_recipients: bool = False  # -t
    ignore_dots: bool = False  # -i / -oi
    sender: str | None = None  # -f / -r
    full_name: str | None = None  # -F
    config: str | None = None  # -C
    queue_dir: str | None = None  # -oQDIR
    queue_selector: Selector = "all"  # -qR / -qI / -qS
    queue_needle: str = ""
    recipients: list[str] = field(default_factory=list)


def parse_options(argv: Sequence[str]) -> Options:
    """Parse sendmail's traditional command line (options glued or separate)."""
    options = Options()
    args = list(argv)
    index = 0

    def value(flag: str, rest: str) -> str:
        nonlocal index
        if rest:
            return rest
        index += 1
        if index >= len(args):
            raise SendmailUsageError(f"option -{flag} requires an argument")
        return args[index]

    while index < len(args):
        arg = args[index]
        if arg == "--":
            options.recipients.extend(args[index + 1 :])
            break
        if arg == "--help":
            options.mode = "help"
            break
        if arg == "--config" or arg.startswith("--config="):
            options.config = arg.partition("=")[2] if "=" in arg else value("-config", "")
            index += 1
            continue
        if not arg.startswith("-") or arg == "-":
            options.recipients.append(arg)
            index += 1
            continue
        flag, rest = arg[1:2], arg[2:]
        match flag:
            case "t":
                options.extract_recipients = True
            case "i":
                options.ignore_dots = True
            case "f" | "r":
                options.sender = value(flag, rest)
            case "F":
                options.full_name = value(flag, rest)
            case "C":
                options.config = value(flag, rest)
            case "b":
                if rest not in ("m", "s", "i", "v", "p"):
                    raise SendmailUsageError(f"unsupported mode -b{rest}")
                options.mode = rest
            case "q":
                options.mode = "q"
                kinds: dict[str, Selector] = {"R": "recipient", "I": "id", "S": "sender"}
                if rest[:1] in kinds:
                    options.queue_selector = kinds[rest[0]]
                    options.queue_needle = rest[1:] or value(flag, "")
                elif rest:
                    raise SendmailUsageError(f"-q{rest}: periodic queue runs are the daemon's job")
            case "o":
                if rest == "i":
                    options.ignore_dots = True
                elif rest.startswith("Q"):
                    options.queue_dir = rest[1:] or value(flag, "")
                elif rest[:1] not in ("e", "m", "d", "O"):  # accepted and ignored, like sendmail
                    raise SendmailUsageError(f"unsupported option -o{rest}")
            case "v" | "U" | "n" | "m" | "e":
                pass  # verbose / initial submission / no aliasing / metoo: harmless to ignore
            case "N" | "R" | "V" | "X" | "O" | "B" | "L":
                value(flag, rest)  # options with arguments that do not change local delivery
            case _:
                raise SendmailUsageError(f"unknown option {arg}")
        index += 1
    return options


def add_parser(subparsers: Any) -> None:
    # Listed for `posthouse --help`; `posthouse.cli.main` hands the raw arguments to sendmail().
    subparsers.add_parser("sendmail", help="submit a message (sendmail-compatible options)")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``posthouse-sendmail`` command; linked as ``mailq`` or ``newaliases`` (the name it
    is run by, ``argv[0]``), it is that command, as sendmail is."""
    if argv is None:
        link_name = os.path.basename(sys.argv[0])
        if link_name == "mailq":
            from posthouse.cli.mailq import main as mailq_main

            return mailq_main(sys.argv[1:])
        if link_name == "newaliases":
            from posthouse.cli.newaliases import main as newaliases_main

            return newaliases_main(sys.argv[1:])
    return sendmail(sys.argv[1:] if argv is None else list(argv))


def sendmail(argv: Sequence[str], *, default_config: str | None = None) -> int:
    try:
        options = parse_options(argv)
    except SendmailUsageError as exc:
        print(f"sendmail: {exc}\n(sendmail --help for the usage)", file=sys.stderr)
        return EX_USAGE
    if options.mode == "help":
        sys.stdout.write(USAGE)
        return EX_OK
    settings = settings_for("sendmail", options.config or default_config)
    if settings is None:
        return EX_CONFIG
    log_like_the_daemon(settings)
    if options.queue_dir:
        queue_dir = Path(options.queue_dir).resolve()
        settings = replace(settings, paths=replace(settings.paths, queue_dir=queue_dir))
    if options.mode == "i":
        from posthouse.cli.newaliases import rebuild

        return rebuild(settings)
    try:
        app = build_application(settings)
    except ConfigError as exc:
        print(f"sendmail: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        match options.mode:
            case "v":
                return verify(app, options.recipients)
            case "s":
                return smtp_on_stdio(app)
            case "q":
                return run_queue_now(app, options)
            case "p":
                from posthouse.cli.mailq import print_queue

                return print_queue(app.settings)
            case _:
                return submit(app, options, sys.stdin.buffer)
    finally:
        app.close()


def run_queue_now(app: Application, options: Options) -> int:
    """-q: deliver the (selected) queue now, showing progress on long runs."""
    started = time.monotonic()

    def progress(summary: QueueRunSummary) -> None:
        done = summary.finished + summary.waiting + summary.busy
        if summary.selected > BATCH:
            print(f"sendmail: queue run {done}/{summary.selected}", file=sys.stderr)

    summary = run_queue(
        app.queue,
        app.delivery,
        selector=options.queue_selector,
        needle=options.queue_needle,
        progress=progress,
    )
    elapsed = time.monotonic() - started
    print(f"sendmail: queue {app.queue.directory}: {summary.describe()} in {elapsed:.1f}s")
    return EX_OK


def verify(app: Application, addresses: list[str]) -> int:
    """-bv: print how each address resolves, without delivering anything: for each final
    destination the mailer, host and user, as sendmail's ``-bv`` does."""
    if not addresses:
        print("sendmail: -bv needs at least one address", file=sys.stderr)
        return EX_USAGE
    status = EX_OK
    for given in addresses:
        address = internet_form(app, given)
        expansion = app.expander.expand(address)
        for delivery in expansion.deliveries:
            print(f"{address}... {describe(app, delivery.destination)}")
        for error in expansion.errors:
            print(f"{error.address}... {error.message}")
            status = EX_NOUSER if error.permanent else EX_TEMPFAIL
    return status


def internet_form(app: Application, address: str) -> str:
    """A native gateway address (node::user, host!user) in its pseudodomain form (12.1.6),
    a pseudodomain alias in the pseudodomain's own name."""
    return app.transport.rewriter.internet(address)


def describe(app: Application, destination: object) -> str:
    """sendmail's ``-bv`` line for one destination: ``deliverable: mailer M, host H, user U``."""
    match destination:
        case LocalMailbox(user=user):
            return f"deliverable: mailer local, user {user}"
        case FileDestination(path=path):
            return f"deliverable: mailer *file*, file {path}"
        case ProgramDestination(command=command):
            return f"deliverable: mailer prog, command {command}"
        case RemoteAddress(address=address):
            return _describe_remote(app, address)
    return repr(destination)


def _describe_remote(app: Application, address: str) -> str:
    try:
        where = app.transport.plan(address)
    except AddressError as exc:
        return f"undeliverable: {exc}"
    match where:
        case SMTPRoute(hop=hop, address=wire):
            host = hop.host if hop.use_mx else f"[{hop.host}]"
            port = "" if hop.port == SMTP_PORT else f":{hop.port}"
            return f"deliverable: mailer esmtp, host {host}{port}, user {wire}"
        case PipeRoute(native=native):
            return (
                f"deliverable: mailer {native.protocol}, host {native.next_hop}, user {native.user}"
            )
        case LocalRoute(user=user):
            return f"deliverable: mailer local, user {user}"
    return repr(where)


def read_message(stream: BinaryIO, ignore_dots: bool) -> bytes:
    """The message from standard input, with CRLF line ends; '.' alone ends it unless -i."""
    lines = []
    for raw in stream:
        line = raw.rstrip(b"\r\n")
        if not ignore_dots and line == b".":
            break
        lines.append(line)
    return b"\r\n".join(lines) + b"\r\n" if lines else b""


def split_message(message: bytes) -> tuple[bytes, bytes]:
    end = message.find(b"\r\n\r\n")
    if end < 0:
        return message, b""
    return message[: end + 2], message[end + 4 :]


def submit(app: Application, options: Options, stream: BinaryIO) -> int:
    """The default mode: read, complete the headers, queue durably, deliver."""
    message = read_message(stream, options.ignore_dots)
    header_bytes, body = split_message(message)
    if len(header_bytes) > MAX_HEADER_BYTES:
        print("sendmail: header section too large", file=sys.stderr)
        return EX_DATAERR
    headers = BytesHeaderParser(policy=SMTP_POLICY).parsebytes(header_bytes)
    login = _login_name()
    hostname = app.settings.config.server.hostname
    # sendmail's $j: "-f joe" (and a bare "joe" in the address fields) is joe@this host.
    rewriter = app.transport.rewriter
    sender = rewriter.qualify(options.sender if options.sender is not None else login)
    recipients = [internet_form(app, r) for r in options.recipients]
    if options.extract_recipients:
        found = addresses_in(header_bytes, ("to", "cc", "bcc"))
        recipients += [internet_form(app, address) for address in found]
    if not recipients:
        print("sendmail: no recipients given", file=sys.stderr)
        return EX_USAGE
    for recipient in recipients:
        domain = recipient.rpartition("@")[2] if "@" in recipient else ""
        if domain in app.local_domains and not app.expander.is_deliverable(recipient):
            print(f"sendmail: {recipient}... User unknown", file=sys.stderr)
            return EX_NOUSER
    added = []
    if headers.get("From") is None:
        name = options.full_name
        added.append(f"From: {name} <{sender}>" if name else f"From: {sender}")
    if headers.get("Date") is None:
        added.append(f"Date: {formatdate(localtime=True)}")
    if headers.get("Message-ID") is None:
        added.append(f"Message-ID: {make_msgid(domain=hostname)}")
    if options.extract_recipients and headers.get("Bcc") is not None:
        header_bytes = _without_header(header_bytes, b"bcc")
    received = (
        f"Received: by {hostname} (posthouse sendmail, from userid {os.getuid()})\r\n"
        f"\tid {int(time.time())}; {formatdate(localtime=True)}\r\n"
    )
    head = "".join(h + "\r\n" for h in added).encode("utf-8") + header_bytes
    head = rewrite_header_section(head, rewriter.header_rewrites(qualify=True))
    content = received.encode("utf-8") + head + b"\r\n" + body
    incoming = app.queue.new_message(sender, recipients, protocol="local", auth_user=login)
    try:
        incoming.write(content)
        queue_id = incoming.commit_blocking()
    except OSError as exc:
        incoming.abort()
        print(f"sendmail: cannot queue message: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    log.info(
        "%s",
        received_line(
            queue_id, sender, incoming.size, len(recipients), "local", f"{login}@localhost"
        ),
    )
    app.delivery.run_batch([queue_id])
    return EX_OK


def log_like_the_daemon(settings: Settings) -> None:
    """Log where the daemon logs, so that submissions from the command line (and their
    deliveries) appear in the mail log as SMTP ones do: to the log file or syslog, never to
    standard error (the user's terminal), and not at all when the file may not be opened."""
    server = settings.config.server
    if not (server.log_file or (server.syslog and os.path.exists(SYSLOG_SOCKET))):
        return
    with contextlib.suppress(OSError):
        setup_logging(server)


def _without_header(header_bytes: bytes, name: bytes) -> bytes:
    kept: list[bytes] = []
    skipping = False
    for line in header_bytes.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.split(b":", 1)[0].strip().lower() == name
        if not skipping:
            kept.append(line)
    return b"\r\n".join(kept)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def smtp_on_stdio(app: Application) -> int:
    """-bs: an SMTP session on standard input and output, as a trusted local client."""
    asyncio.run(serve_stdio(app))
    return EX_OK
