"""The configuration schema: every option, its type, default and allowed values.

Sections are frozen dataclasses; the loader (``posthouse.config.load``) walks
their fields generically, so adding an option means adding one field here.
Option names follow the chapter's worksheets (role, mail server, top domain,
host aliases, mailbox directory, locking, forwarding, relay) so an
administrator recognises them.

A limit that a lower layer also has keeps its default there, once: the protocol
engines' settings (``posthouse.protocols.*.settings``) and the mbox lock
settings (``posthouse.store.mbox.locking``); the options below take theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from posthouse.protocols.pop3.settings import POP3Settings as POP3Engine
from posthouse.protocols.smtp.settings import SMTPSettings as SMTPEngine
from posthouse.store.mbox.locking import LockSettings

Role = Literal["standalone", "client", "server"]
MailboxDirectory = Literal["local", "nfs-client", "nfs-server", "server"]
Locking = Literal["lockf", "lockfile", "both"]
Forwarding = Literal["none", "internet", "nonlocal", "local"]
ListenerProtocol = Literal["smtp", "submission", "smtps", "lmtp", "pop3", "pop3s", "imap", "imaps"]


@dataclass(frozen=True)
class ServerSection:
    """Process-level settings of ``posthouse serve``."""

    hostname: str = "mail.example.test"
    data_dir: str = ""  # empty: $POSTHOUSE_HOME or ./posthouse-data
    workers: int | Literal["auto"] = "auto"  # worker processes; "auto": one per CPU
    run_as: str = "mail"  # unprivileged account to drop to when started as root
    log_file: str = ""  # empty: standard error (or syslog when syslog = true)
    syslog: bool = False  # log to syslog, facility below, in sendmail's one-line style
    syslog_facility: str = "mail"
    log_level: Literal["debug", "info", "notice", "warning", "error"] = "info"
    shutdown_grace_seconds: float = 30.0
    # uvloop is faster but has shown rare STARTTLS handshake stalls in our tests.
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"


@dataclass(frozen=True)
class MailSection:
    """The chapter's Basic Mail Setup and Mail Protocol worksheets (12.2.3)."""

    role: Role = "standalone"
    mail_server: str = ""  # clients only: host or domain that receives all outgoing mail
    top_domain: str = ""  # servers only
    local_domains: tuple[str, ...] = ("example.test",)
    host_aliases: tuple[str, ...] = ()
    mailbox_directory: MailboxDirectory = "local"
    mailbox_server: str = ""
    locking: Locking = "lockf"
    stale_lock_seconds: float = LockSettings.stale_after
    lock_timeout_seconds: float = LockSettings.timeout
    forwarding: Forwarding = "none"
    relay_host: str = ""
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    spool_directory: str = ""  # empty: DATA_DIR/spool/mail
    masquerade: bool = False  # 12.1.2 domain-based addresses: user@host.sub.top -> user@sub.top
    # The domain this host's own addresses become (sendmail's MASQUERADE_AS); empty: the
    # longest local domain enclosing server.hostname, else the host's own domain
    # (host1.nyc.big.com -> nyc.big.com), else top_domain.
    masquerade_as: str = ""
    masquerade_exceptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class SMTPSection:
    """Limits and policy shared by every SMTP-family listener."""

    max_message_size: int = SMTPEngine.max_message_size
    max_recipients: int = SMTPEngine.max_recipients
    max_command_line: int = SMTPEngine.max_command_line
    max_data_line: int = SMTPEngine.max_data_line
    max_commands: int = SMTPEngine.max_commands
    max_errors: int = SMTPEngine.max_errors
    idle_timeout_seconds: float = 300.0
    max_connections: int = 2000
    max_connections_per_client: int = 50
    allow_plaintext_auth: bool = False  # AUTH without TLS from non-loopback clients
    auth_failure_delay_seconds: float = 0.5
    max_hops: int = 50  # Received: fields before a message is refused as looping (5.4.6)
    # Limits against abusive clients (issue 8); the connection and login ones hold for every
    # listener, POP3 included.  Trusted networks and authenticated clients are exempt from
    # max_connections_per_client (Postfix's smtpd_client_event_limit_exceptions).
    tls_handshake_timeout_seconds: float = 10.0  # implicit TLS and STARTTLS handshakes
    command_timeout_seconds: float = 60.0  # a command line, from its first byte to its end
    data_timeout_seconds: float = 120.0  # DATA/BDAT: this long, plus bytes / min_data_rate
    min_data_rate: int = 1024  # bytes per second a transfer must average (0: no rate floor)
    auth_failures_per_client: int = 10  # failed logins per window per client address
    auth_failures_per_user: int = 30  # failed logins per window per user name
    auth_failure_window_seconds: float = 60.0
    auth_hash_threads: int = 2  # argon2 verifications at once per worker process


@dataclass(frozen=True)
class POP3Section:
    """The POP3 server (12.4)."""

    idle_timeout_seconds: float = 600.0  # RFC 1939 §3: an autologout timer of at least 10 min
    allow_plaintext_auth: bool = False  # USER/PASS without TLS (always allowed from loopback)
    # Offer APOP (the greeting carries the timestamp); "auto": while some user's service
    # type is apop-mailpass, the only type that can use it (as Dovecot offers it only when
    # its password database can).
    apop: bool | Literal["auto"] = "auto"
    max_errors: int = POP3Engine.max_errors
    max_commands: int = POP3Engine.max_commands
    expire: str = ""  # RFC 2449 EXPIRE capability value, e.g. "NEVER"; empty: not announced
    login_delay: int = 0  # RFC 2449 LOGIN-DELAY seconds; 0: not announced
    command_timeout_seconds: float = 60.0  # a command line, from its first byte to its end


@dataclass(frozen=True)
class IMAPSection:
    """The IMAP server and its mail store (12.5), with imapd.conf's option names.

    ``partition-default`` is written with its dash, as in imapd.conf."""

    configdirectory: str = ""  # the store's mailboxes list, indexes of users; default DATA/imap
    partition_default: str = field(default="", metadata={"key": "partition-default"})
    defaultpartition: str = "default"
    admins: str = ""  # space-separated user names (imapd.conf admins)
    defaultacl: str = "anyone lrs"  # a new top-level mailbox's ACL: "ID RIGHTS ID RIGHTS ..."
    quotawarn: int = 90  # percent of a quota root that draws a warning
    allowplaintext: bool = False  # LOGIN/AUTHENTICATE without TLS (always from loopback)
    maxmessagesize: int = 64 * 1024 * 1024  # one APPEND message (APPENDLIMIT), octets
    timeout: int = 30  # minutes: the autologout timer (RFC 3501 §5.4: at least 30)
    max_errors: int = 50
    max_commands: int = 1_000_000
    command_timeout_seconds: float = 60.0  # a command line, first byte to end
    min_data_rate: float = 1024.0  # octets/s a literal (APPEND) must keep up after the timeout


@dataclass(frozen=True)
class ListenerSection:
    """One ``[[listener]]`` table."""

    protocol: ListenerProtocol = "smtp"
    address: str = "127.0.0.1"
    port: int = 2525
    path: str = ""  # unix socket path (LMTP); when set, address and port are ignored


@dataclass(frozen=True)
class TLSSection:
    """Certificate for STARTTLS and implicit TLS; empty means TLS is not offered."""

    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class AliasesSection:
    """The aliases(5) file and the database ``newaliases`` builds from it."""

    file: str = ""  # empty: DATA_DIR/etc/aliases
    database: str = ""  # empty: DATA_DIR/etc/aliases.db
    forward_files: bool = True  # honour ~/.forward of system users
    # Account that programs and files named in the aliases file (and in root-owned include
    # files) run as: sendmail's DefaultUser.  Never root, never server.run_as.
    default_user: str = "nobody"


@dataclass(frozen=True)
class UsersSection:
    """Where users come from."""

    database: str = ""  # empty: DATA_DIR/etc/users.db
    system_accounts: bool = False  # also accept the system's passwd accounts (PAM passwords)
    system_min_uid: int = 1000


@dataclass(frozen=True)
class QueueSection:
    """The mail queue."""

    directory: str = ""  # empty: DATA_DIR/queue
    retry_seconds: float = 60.0
    max_retry_seconds: float = 3600.0
    lifetime_seconds: float = 5 * 24 * 3600.0
    delay_warning_seconds: float = 0.0  # 0: no delay warnings (the default, as Postfix)
    max_connections_per_destination: int = 10
    command_timeout_seconds: float = 300.0
    # Relay small messages before answering their final dot: to next hops named in this
    # configuration ("configured": routes, relay host, mail server), to any ("all"), or never.
    cut_through: Literal["configured", "all", "none"] = "configured"
    cut_through_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class RouteSection:
    """One ``[[route]]``: a static next hop that overrides DNS (like Postfix's transport map)."""

    domain: str = ""  # "example.org", ".example.org" (subdomains) or "*" (everything)
    to: str = ""  # "host", "host:port" or "[192.0.2.1]:port"


@dataclass(frozen=True)
class PseudodomainSection:
    """One ``[[pseudodomain]]``: a gateway protocol from the Mail Protocol Worksheet (12.2.3.2)."""

    protocol: Literal["decnet", "decnet-osi", "uucp", "mts", "x25"] = "uucp"
    name: str = ""  # the pseudodomain, e.g. "DNET"
    aliases: tuple[str, ...] = ()
    routing: Literal["direct", "relay", "internet"] = "internet"
    relay_host: str = ""
    relay_protocol: str = "smtp"  # how the relay is reached: posthouse speaks SMTP only
    transport: str = ""  # routing = direct: program run by the pipe agent
    node_address: str = ""  # DECnet: this machine's address, e.g. "1.2"
    namespace: str = ""  # DECnet/OSI: "namespace:.site.nodename"


def default_listeners() -> tuple[ListenerSection, ...]:
    """The embedded setup: unprivileged ports on loopback (25 and 110 need root)."""
    return (
        ListenerSection(protocol="smtp", address="127.0.0.1", port=2525),
        ListenerSection(protocol="pop3", address="127.0.0.1", port=1110),
        ListenerSection(protocol="imap", address="127.0.0.1", port=1143),
    )


@dataclass(frozen=True)
class Config:
    """The whole configuration file."""

    server: ServerSection = field(default_factory=ServerSection)
    mail: MailSection = field(default_factory=MailSection)
    smtp: SMTPSection = field(default_factory=SMTPSection)
    pop3: POP3Section = field(default_factory=POP3Section)
    imap: IMAPSection = field(default_factory=IMAPSection)
    listener: tuple[ListenerSection, ...] = field(default_factory=default_listeners)
    tls: TLSSection = field(default_factory=TLSSection)
    aliases: AliasesSection = field(default_factory=AliasesSection)
    users: UsersSection = field(default_factory=UsersSection)
    queue: QueueSection = field(default_factory=QueueSection)
    route: tuple[RouteSection, ...] = ()
    pseudodomain: tuple[PseudodomainSection, ...] = ()


@dataclass(frozen=True)
class Paths:
    """Every file and directory the system uses, resolved from the configuration."""

    data_dir: Path
    queue_dir: Path
    spool_dir: Path
    users_db: Path
    mailauth_db: Path
    mailauth_key: Path
    aliases_file: Path
    aliases_db: Path
    stats_file: Path
    proc_dir: Path

    @property
    def pid_file(self) -> Path:
        """Where the daemon records its process id (``posthouse setup`` offers a reload)."""
        return self.data_dir / "posthouse.pid"

    @property
    def control_socket(self) -> Path:
        """The daemon's control socket (reload, stop, status, mailauth, mailq)."""
        return self.data_dir / "run" / "control.sock"


@dataclass(frozen=True)
class Settings:
    """A loaded configuration plus its resolved paths and where it came from."""

    config: Config
    paths: Paths
    source: str  # the file it was read from, or "(built-in defaults)"
