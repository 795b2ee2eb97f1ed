"""The one place where concrete classes are wired together.

``build_application(settings)`` turns a loaded configuration into the objects
every entry point needs (users, aliases, queue, delivery, policy), and the
protocol services and settings sessions are made with; the daemon's life (listeners,
workers, reload by rebuilding the application) is :mod:`posthouse.daemon`'s.
``serve_stdio`` runs one SMTP session on standard input and output
(``sendmail -bs``).  Nothing registers itself at import time and there are no
module-level singletons.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from posthouse.auth.authenticator import Authenticator, UserDirectory, VerifiedCache
from posthouse.auth.credentials import CredentialChecker
from posthouse.auth.failure_limits import LoginLimiter
from posthouse.auth.groups import GroupDirectory
from posthouse.auth.mailauth import MailAuthDatabase
from posthouse.auth.users import ServiceType, UserDatabase
from posthouse.config.load import located_error
from posthouse.config.schema import ListenerSection, Settings
from posthouse.imap_layout import store_layout
from posthouse.mta.agents.local_runner import DirectRunner, LocalRunner
from posthouse.mta.agents.mbox import MailboxWriter
from posthouse.mta.agents.smtp import SMTPClientAgent
from posthouse.mta.agents.store import StoreDelivery
from posthouse.mta.aliasdb import AliasDatabase, build_alias_database
from posthouse.mta.bounce import BounceMaker
from posthouse.mta.delivery import MailboxSettings, QueueDelivery, RetryPolicy
from posthouse.mta.direct import CutThrough, DirectDelivery
from posthouse.mta.dns import DNSBackend, DnspythonBackend, LookupFailed, Resolver
from posthouse.mta.expand import Expander, FileSource
from posthouse.mta.full_mailbox import AliasesOnly, FullMailboxCheck, Lookup
from posthouse.mta.identity import Identity
from posthouse.mta.local_mail import LocalMail
from posthouse.mta.policy import LocalDomains, RecipientPolicy
from posthouse.mta.pseudodomains import DEFAULT_NAMES, AddressMapper, Pseudodomain
from posthouse.mta.pseudodomains import Protocol as GatewayProtocol
from posthouse.mta.queue.groupcommit import GroupCommitter
from posthouse.mta.queue.scheduler import DeliveryScheduler
from posthouse.mta.queue.store import QueueStore
from posthouse.mta.rewrite import MasqueradeSettings, masquerade_domain
from posthouse.mta.routing import RoutingSettings
from posthouse.mta.stats import Statistics
from posthouse.mta.transport import RemoteTransport
from posthouse.mta.user_files import CheckedFiles, IdentityResolver
from posthouse.protocols.imap import engine as imap_engine
from posthouse.protocols.imap.reader import ReaderLimits
from posthouse.protocols.pop3 import engine as pop3_engine
from posthouse.protocols.smtp import engine as smtp_engine
from posthouse.server.connection import Connection, Peer
from posthouse.server.imap.views import prepared
from posthouse.server.pop3 import apop_timestamp
from posthouse.server.records import ConnectionRecord
from posthouse.server.smtp import SMTPServices, SMTPSession
from posthouse.store.acl import Acl, AclError
from posthouse.store.fs.backend import FsBackend
from posthouse.store.inbox_maildrop import InboxMaildrop
from posthouse.store.maildrop import Maildrop
from posthouse.store.mbox.locking import LockMethod, LockSettings
from posthouse.store.mbox.maildrop import MboxMaildrop
from posthouse.store.mbox.mounts import read_mounts, spool_problem
from posthouse.store.policy import CyrusAccess
from posthouse.store.service import MailStore

log = logging.getLogger("posthouse")

#: The native address syntaxes every host understands (12.1.6), configured or not.
UNIVERSAL_GATEWAYS: tuple[GatewayProtocol, ...] = ("decnet", "decnet-osi", "uucp")


@dataclass
class Application:
    """Everything a posthouse process works with, built from one configuration."""

    settings: Settings
    users: UserDirectory
    authenticator: Authenticator
    aliases: AliasDatabase
    expander: Expander
    committer: GroupCommitter
    queue: QueueStore  # the mail queue (queue/)
    delivery: QueueDelivery
    local_domains: LocalDomains
    policy: RecipientPolicy
    direct: DirectDelivery
    mailauth: MailAuthDatabase
    credentials: CredentialChecker
    transport: RemoteTransport
    stats: Statistics
    locking: LockSettings  # how mailboxes are locked: by delivery and the POP3 maildrop alike
    full_mailbox: FullMailboxCheck  # RCPT-time 452 4.2.2 for a store user over quota
    _mail_store: MailStore | None = field(default=None, init=False, repr=False)

    @property
    def mail_store(self) -> MailStore:
        """The IMAP mail store (12.5), opened on first use: tools that never touch it
        (sendmail, mailq) open none of its files."""
        if self._mail_store is None:
            self._mail_store = mail_store_for(self.settings)
        return self._mail_store

    async def close_mail_store(self) -> None:
        store, self._mail_store = self._mail_store, None
        if store is not None:
            await store.backend.close()

    def close(self) -> None:
        self.committer.close()
        self.stats.close()
        self.mailauth.close()
        self.aliases.close()
        self.users.database.close()


def prepare_data_dir(settings: Settings) -> None:
    """Create the data directory layout (idempotent)."""
    paths = settings.paths
    for directory in (paths.data_dir, paths.users_db.parent, paths.aliases_file.parent):
        directory.mkdir(parents=True, exist_ok=True)
    paths.queue_dir.mkdir(parents=True, exist_ok=True, mode=0o775)
    paths.spool_dir.mkdir(parents=True, exist_ok=True)
    paths.proc_dir.mkdir(parents=True, exist_ok=True)


def mailbox_directory_problem(settings: Settings) -> str | None:
    """What is wrong with an NFS client's spool, which must be its mailbox server's export
    (12.3.1 step 4; see :mod:`posthouse.store.mbox.mounts`); None if nothing."""
    mail = settings.config.mail
    if mail.mailbox_directory != "nfs-client":
        return None
    return spool_problem(settings.paths.spool_dir.resolve(), mail.mailbox_server, read_mounts())


def check_mailbox_directory(settings: Settings) -> None:
    """:func:`mailbox_directory_problem` as a ConfigError naming ``mailbox_server``."""
    problem = mailbox_directory_problem(settings)
    if problem is not None:
        raise located_error(settings.source, "mail.mailbox_server", problem)


def local_domains_of(settings: Settings) -> LocalDomains:
    """The domains delivered here: a client (12.3.2) keeps only its own names."""
    config = settings.config
    names = [config.server.hostname, "localhost", *config.mail.host_aliases]
    if config.mail.role != "client":
        names += config.mail.local_domains
    return LocalDomains(names)


def _dns_backend() -> DNSBackend | None:
    try:
        return DnspythonBackend()
    except Exception as exc:  # no resolv.conf: DNS lookups then fail as temporary errors
        log.warning("DNS resolver unavailable (%s); only static routes will work", exc)
        return _NoDNS()


class _NoDNS:
    """A DNS backend for machines without a resolver configuration."""

    async def mx(self, name: str) -> list[tuple[int, str]]:
        raise LookupFailed("no DNS resolver configured")

    async def addresses(self, name: str, family: int) -> list[str]:
        raise LookupFailed("no DNS resolver configured")


def build_transport(settings: Settings, domains: LocalDomains) -> RemoteTransport:
    """Routing (12.2.3), gateways (12.1.6) and the SMTP client agent, from the configuration."""
    config = settings.config
    mail = config.mail
    host_names = frozenset(
        n.lower() for n in (config.server.hostname, "localhost", *mail.host_aliases)
    )
    routing = RoutingSettings(
        role=mail.role,
        mail_server=mail.mail_server,
        top_domain=mail.top_domain,
        local_domains=frozenset(d.lower() for d in mail.local_domains),
        forwarding=mail.forwarding,
        relay_host=mail.relay_host,
        static_routes={r.domain: r.to for r in config.route},
        host_names=host_names,
    )
    mapper = gateway_mapper(settings)
    masquerade = None
    if mail.masquerade:
        masquerade = MasqueradeSettings(
            top_domain=mail.top_domain,
            domain=masquerade_domain(
                config.server.hostname, mail.top_domain, mail.local_domains, mail.masquerade_as
            ),
            host_names=tuple(host_names),
            exceptions=mail.masquerade_exceptions,
        )
    agent = SMTPClientAgent(
        hostname=config.server.hostname,
        resolver=Resolver(_dns_backend(), local_names=host_names),
        timeout=config.queue.command_timeout_seconds,
        max_connections_per_destination=config.queue.max_connections_per_destination,
    )
    default_domain = mail.local_domains[0] if mail.local_domains else config.server.hostname
    return RemoteTransport(
        agent=agent,
        routing=routing,
        mapper=mapper,
        masquerade=masquerade,
        local_domains=mail.local_domains,
        default_domain=default_domain,
        hostname=config.server.hostname,
    )


def gateway_mapper(settings: Settings) -> AddressMapper:
    """The pseudodomains of the Mail Protocol Worksheet (12.1.6, 12.2.3.2).  Every host
    knows the DECnet, DECnet/OSI and UUCP syntaxes: a protocol the configuration does not
    list gets its usual pseudodomain (DNET, DNA, UUCP) routed like any domain -- on a
    client, to its mail server, whose gateway takes it from there."""
    mail = settings.config.mail
    configured = [
        Pseudodomain(
            protocol=p.protocol,
            name=p.name,
            aliases=p.aliases,
            # user@host.UUCP has no top domain (RFC 976); the others end in it (12.1.6).
            top_domain="" if p.protocol == "uucp" else mail.top_domain,
            routing=p.routing,
            relay_host=p.relay_host,
            relay_protocol=p.relay_protocol if p.routing == "relay" else "",
            transport=p.transport,
        )
        for p in settings.config.pseudodomain
    ]
    taken = {name for p in configured for name in (p.name.lower(), *map(str.lower, p.aliases))}
    listed = {p.protocol for p in configured}
    defaults = [
        Pseudodomain(protocol, top_domain="" if protocol == "uucp" else mail.top_domain)
        for protocol in UNIVERSAL_GATEWAYS
        if protocol not in listed and DEFAULT_NAMES[protocol].lower() not in taken
    ]
    return AddressMapper([*configured, *defaults])


def login_limiter_for(settings: Settings) -> LoginLimiter:
    """The failed-login limits of the configuration (make it before forking: it is shared)."""
    smtp = settings.config.smtp
    return LoginLimiter(
        per_client=smtp.auth_failures_per_client,
        per_user=smtp.auth_failures_per_user,
        window=smtp.auth_failure_window_seconds,
    )


def daemon_account_uids(run_as: str) -> tuple[int, ...]:
    """The daemon's own account (``server.run_as``): mailboxes it created are its to write,
    also in a queue run started by root."""
    try:
        return (pwd.getpwnam(run_as).pw_uid,) if run_as else ()
    except KeyError:
        return ()


def identity_resolver(settings: Settings) -> IdentityResolver:
    """Who program and file destinations run as (see :mod:`posthouse.mta.user_files`).

    A process that is not root may act as itself only when it is not the daemon's account
    (``server.run_as``, which holds the keys): an unprivileged install, or a user's own run."""
    server = settings.config.server
    try:
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        me = ""
    return IdentityResolver(
        default_user=settings.config.aliases.default_user,
        daemon_user=server.run_as,
        may_run_as_self=os.geteuid() != 0 and me != server.run_as,
    )


def build_application(
    settings: Settings,
    *,
    verified_logins: VerifiedCache | None = None,
    login_limiter: LoginLimiter | None = None,
    local_runner: LocalRunner | None = None,
) -> Application:
    """Wire the domain objects for ``settings`` (no sockets, no event loop).

    ``local_runner``: where program and file destinations run (the root helper a daemon
    started as root made before dropping privileges); default: in this process.

    ``verified_logins`` and ``login_limiter``: the cache of verified passwords and the
    failed-login limits to use, e.g. ones made before the worker processes were forked, so
    that they share them."""
    config = settings.config
    paths = settings.paths
    check_mailbox_directory(settings)
    prepare_data_dir(settings)
    users = UserDirectory(
        UserDatabase(paths.users_db),
        system_accounts=config.users.system_accounts,
        min_uid=config.users.system_min_uid,
    )
    authenticator = Authenticator(
        users,
        base_delay=config.smtp.auth_failure_delay_seconds,
        verified_cache=verified_logins,
        limiter=login_limiter or login_limiter_for(settings),
        hash_threads=config.smtp.auth_hash_threads,
    )
    aliases = AliasDatabase(paths.aliases_db)
    domains = local_domains_of(settings)

    def account_of(user: str) -> Identity | None:
        """The system account whose ~/.forward is honoured, if any."""
        if not config.aliases.forward_files:
            return None
        found = users.get(user)
        if found is None or found.source != "system":
            return None
        return Identity.for_user(found.name)

    default_domain = (
        config.mail.local_domains[0] if config.mail.local_domains else config.server.hostname
    )
    forwards_local_mail = config.mail.forwarding == "local" and config.mail.role != "client"

    def expander_over(files: FileSource, lookup_alias: Lookup = aliases.lookup) -> Expander:
        return Expander(
            lookup_alias=lookup_alias,
            is_local_domain=domains.__contains__,
            user_exists=users.exists,
            files=files,
            default_domain=default_domain,
            relay_unknown_to=default_domain if forwards_local_mail else None,
        )

    expander = expander_over(CheckedFiles(account_of))
    committer = GroupCommitter()
    store = QueueStore(paths.queue_dir, committer)

    def owner_of(user: str) -> tuple[int, int] | None:
        found = users.get(user)
        if found is None or found.uid is None or found.gid is None:
            return None
        return (found.uid, found.gid)

    bounces = BounceMaker(store, hostname=config.server.hostname)
    stats = Statistics(paths.stats_file)
    transport = build_transport(settings, domains)
    daemon_uids = daemon_account_uids(config.server.run_as)
    locking = lock_settings_for(settings)
    writer = MailboxWriter(
        locking=locking,
        owner_of=lambda path: owner_of(path.name),
        trusted_uids=daemon_uids,
    )
    relay = None
    if config.queue.cut_through != "none":
        relay = CutThrough(
            transport,
            timeout=config.queue.cut_through_timeout_seconds,
            any_hop=config.queue.cut_through == "all",
        )

    def mail_store() -> MailStore:  # the application's, opened on first delivery into it
        return application.mail_store

    store_agent = store_delivery_for(mail_store)

    def uses_store(user: str) -> bool:
        found = users.get(user)
        return found is not None and found.service_type.uses_imap_store

    local_mail = LocalMail(
        paths.spool_dir,
        transport.default_domain if transport.forwards_local_mail else None,
        uses_store=uses_store,
    )
    direct = DirectDelivery(
        expander=expander,
        writer=writer,
        local_mail=local_mail,
        stats=stats,
        relay=relay,
        store=store_agent,
    )
    delivery = QueueDelivery(
        store=store,
        expander=expander,
        mailboxes=MailboxSettings(
            spool_dir=paths.spool_dir,
            locking=locking,
            owner_of=owner_of,
            trusted_uids=daemon_uids,
        ),
        retry=RetryPolicy(
            first=config.queue.retry_seconds,
            maximum=config.queue.max_retry_seconds,
            lifetime=config.queue.lifetime_seconds,
        ),
        on_bounce=bounces.bounce,
        transport=transport,
        stats=stats,
        on_delay=bounces.delay_warning,
        warn_after=config.queue.delay_warning_seconds,
        runner=local_runner or DirectRunner(identity_resolver(settings)),
        local_mail=local_mail,
        mbox=writer,
        store_agent=store_agent,
    )
    policy = RecipientPolicy(
        local_domains=domains,
        trusted_networks=config.mail.trusted_networks,
        is_deliverable=expander.is_deliverable,
    )
    mailauth = MailAuthDatabase(paths.mailauth_db, paths.mailauth_key)
    credentials = CredentialChecker(users, authenticator, mailauth)
    application = Application(
        settings=settings,
        users=users,
        authenticator=authenticator,
        aliases=aliases,
        expander=expander,
        committer=committer,
        queue=store,
        delivery=delivery,
        local_domains=domains,
        policy=policy,
        direct=direct,
        mailauth=mailauth,
        credentials=credentials,
        transport=transport,
        stats=stats,
        locking=locking,
        full_mailbox=FullMailboxCheck(
            aliases.lookup,
            lambda lookup: expander_over(AliasesOnly(), lookup),
            local_mail,
            store_agent,
        ),
    )
    return application


def engine_settings(
    app: Application, listener: ListenerSection, tls: bool
) -> Callable[[Connection], smtp_engine.SMTPSettings]:
    """Per-connection engine settings for one listener."""
    smtp = app.settings.config.smtp
    hostname = app.settings.config.server.hostname
    mode = {"smtp": "smtp", "submission": "submission", "smtps": "submission", "lmtp": "lmtp"}[
        listener.protocol
    ]

    def settings_for(connection: Connection) -> smtp_engine.SMTPSettings:
        return smtp_engine.SMTPSettings(
            hostname=hostname,
            mode=mode,  # type: ignore[arg-type]
            max_message_size=smtp.max_message_size,
            max_recipients=smtp.max_recipients,
            max_command_line=smtp.max_command_line,
            max_data_line=smtp.max_data_line,
            max_commands=smtp.max_commands,
            max_errors=smtp.max_errors,
            starttls_available=tls and not connection.tls_active,
            tls_active=connection.tls_active,
            auth_allowed_without_tls=smtp.allow_plaintext_auth or connection.peer.is_loopback,
        )

    return settings_for


def smtp_services_for(
    app: Application, scheduler: DeliveryScheduler, tls_context: ssl.SSLContext | None
) -> SMTPServices:
    """What SMTP sessions use, for the daemon and for ``sendmail -bs``."""
    config = app.settings.config
    return SMTPServices(
        hostname=config.server.hostname,
        policy=app.policy,
        queue=app.queue,
        authenticator=app.authenticator,
        scheduler=scheduler,
        tls_context=tls_context,
        allow_plaintext_auth=config.smtp.allow_plaintext_auth,
        # forwarding = local: every message goes to the relay, none into local mailboxes.
        direct=None if app.transport.forwards_local_mail else app.direct,
        stats=app.stats,
        max_hops=config.smtp.max_hops,
        credentials=app.credentials,
        rewriter=app.transport.rewriter,
        full_mailbox=None if app.transport.forwards_local_mail else app.full_mailbox,
    )


def lock_settings_for(settings: Settings) -> LockSettings:
    """How mailboxes are locked: by delivery, the POP3 maildrop and the conversion tools."""
    mail = settings.config.mail
    return LockSettings(
        LockMethod(mail.locking),
        timeout=mail.lock_timeout_seconds,
        stale_after=mail.stale_lock_seconds,
    )


def mail_store_for(settings: Settings) -> MailStore:
    """The IMAP mail store (12.5) at :func:`store_layout`."""
    imap = settings.config.imap
    layout = store_layout(settings)
    config_dir = layout.config_dir
    try:
        default_acl = str(Acl.from_pairs(imap.defaultacl))
    except AclError as error:
        raise located_error(settings.source, "imap.defaultacl", f"defaultacl: {error}") from error
    return MailStore(
        FsBackend(layout),
        access=CyrusAccess(
            admins=frozenset(imap.admins.split()), groups=GroupDirectory(config_dir / "groups")
        ),
        default_partition=imap.defaultpartition,
        default_acl=default_acl,
        max_message_size=imap.maxmessagesize,
        quota_warn=imap.quotawarn,
    )


def store_delivery_for(
    store: Callable[[], MailStore], poster: str = "anonymous", *, ignore_quota: bool = False
) -> StoreDelivery:
    """The store delivery agent, with the caches built by the IMAP server's own function;
    ``poster``: whose ``p`` right admits mail to a folder (``deliver -a``); ``ignore_quota``:
    ``deliver -q``."""
    return StoreDelivery(store, prepared, poster=poster, ignore_quota=ignore_quota)


def imap_settings_for(
    app: Application, tls: ssl.SSLContext | None
) -> Callable[[Connection], imap_engine.IMAPSettings]:
    """Per-connection IMAP engine settings."""
    config = app.settings.config
    imap = config.imap
    limits = ReaderLimits(append=imap.maxmessagesize)

    def settings_for(connection: Connection) -> imap_engine.IMAPSettings:
        secure = connection.tls_active
        return imap_engine.IMAPSettings(
            hostname=config.server.hostname,
            tls_active=secure,
            starttls_available=tls is not None and not secure,
            plaintext_login_allowed=imap.allowplaintext or connection.peer.is_loopback,
            max_commands=imap.max_commands,
            max_errors=imap.max_errors,
            reader=limits,
        )

    return settings_for


def pop3_settings_for(
    app: Application, tls: ssl.SSLContext | None
) -> Callable[[Connection], pop3_engine.POP3Settings]:
    """Per-connection POP3 engine settings."""
    config = app.settings.config
    pop3 = config.pop3
    hostname = config.server.hostname
    offer_apop = apop_offered(app)

    def settings_for(connection: Connection) -> pop3_engine.POP3Settings:
        secure = connection.tls_active
        return pop3_engine.POP3Settings(
            hostname=hostname,
            apop_timestamp=apop_timestamp(hostname) if offer_apop() else None,
            stls_available=tls is not None and not secure,
            tls_active=secure,
            plaintext_login_allowed=pop3.allow_plaintext_auth or connection.peer.is_loopback,
            max_commands=pop3.max_commands,
            max_errors=pop3.max_errors,
            expire=pop3.expire or None,
            login_delay=pop3.login_delay or None,
        )

    return settings_for


def apop_offered(app: Application) -> Callable[[], bool]:
    """Whether a new POP3 connection's greeting offers APOP (carries the timestamp).

    ``apop = "auto"``: only while some user can use it, i.e. has the service type
    apop-mailpass (the only one whose secret is kept recoverable), as Dovecot offers APOP
    only when its password database can answer it: clients that try APOP whenever it is
    offered would otherwise fail where USER/PASS works."""
    setting = app.settings.config.pop3.apop
    if setting != "auto":
        return lambda: bool(setting)
    database = app.users.database
    return lambda: database.has_service_type(ServiceType.APOP_MAILPASS)


def open_maildrop_for(app: Application) -> Callable[[str], Maildrop]:
    """The maildrop a POP3 user's mail is in: their INBOX in the IMAP store for IMAP-type
    users (12.5.2), else their mbox spool file (12.4)."""
    settings = app.settings
    pop3_dir = settings.paths.data_dir / "pop3"

    def open_maildrop(user: str) -> Maildrop:
        if app.delivery.local_mail.uses_store(user):  # the MTA's own decision
            lock = pop3_dir / "locks" / f"{user}.imap"
            return InboxMaildrop.open(app.mail_store, user, session_lock=lock)
        return MboxMaildrop.open(
            settings.paths.spool_dir / user,
            user=user,
            locking=app.locking,
            index_dir=pop3_dir / "index",
            session_lock_dir=pop3_dir / "locks",
        )

    return open_maildrop


def refresh_aliases(settings: Settings) -> None:
    """Rebuild the aliases database when the aliases file is newer (or it is missing)."""
    paths = settings.paths
    if not paths.aliases_file.exists():
        return
    db = paths.aliases_db
    if not db.exists() or db.stat().st_mtime_ns < paths.aliases_file.stat().st_mtime_ns:
        count = build_alias_database(paths.aliases_file, db)
        log.info("aliases: %d entries from %s", count, paths.aliases_file)


async def serve_stdio(app: Application) -> None:
    """One SMTP session on standard input and output, as a trusted local client
    (``sendmail -bs``); returns when it ends and its deliveries are done."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout.buffer
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    connection = Connection(
        reader,
        writer,
        peer=Peer("", 0),
        idle_timeout=app.settings.config.smtp.idle_timeout_seconds,
        record=ConnectionRecord("smtp-stdio", "local"),
    )
    scheduler = DeliveryScheduler(app.delivery, app.queue)
    services = smtp_services_for(app, scheduler, None)
    settings_for = engine_settings(app, ListenerSection(protocol="smtp"), tls=False)
    session = SMTPSession(connection, services, settings_for(connection), asyncio.Event())
    await session.run()
    await scheduler.drain_submitted()
    transport.close()
