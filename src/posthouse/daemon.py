"""The daemon's life: start-up, serving, reload by rebuilding the application, stop.

``prepare_daemon`` binds every listener and the control socket and gives up root;
``run_daemon`` writes the pid file and serves in this process or in forked workers;
each worker runs a :class:`Runtime`.

A runtime keeps what lasts for the whole life of the process: the listening sockets and their
accept loops, the connection limiter and records, the delivery scheduler and the control socket.
Everything built from the configuration is one :class:`~posthouse.app.Application`.  A reload
(SIGHUP, or ``posthouse reload`` over the control socket) re-reads the configuration file and
builds a whole new application from it, the same way start-up does, and swaps it in: new
sessions and new deliveries use it at once, sessions already running finish with the one they
started with, which is closed after them.  So every option takes effect (routes, role, mail
server, pseudodomains, aliases, users, TLS certificate, limits, logging...) without dropping a
connection.  Listeners are restarted gracefully: a daemon of one process binds the new ones
and stops accepting on the ones taken out, whose sessions go on.  What cannot change in a
running process (:data:`RESTART_ONLY`: the data directory, the account, the worker count, the
event loop; listeners when workers share them or a port needs the root given up) is named in
the reply and the log as needing ``posthouse restart``, and the rest still applies.

The control socket (:mod:`posthouse.server.control`) serves, beside reload: stop (root),
status (anyone), a user's own mail password change, and the queue listing for ordinary users.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pwd
import signal
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from posthouse.app import (
    Application,
    build_application,
    check_mailbox_directory,
    engine_settings,
    identity_resolver,
    imap_settings_for,
    login_limiter_for,
    open_maildrop_for,
    pop3_settings_for,
    refresh_aliases,
    smtp_services_for,
)
from posthouse.auth import mail_password
from posthouse.auth.authenticator import Outcome, VerifiedCache
from posthouse.auth.failure_limits import LoginLimiter
from posthouse.config.load import DEFAULTS_SOURCE, ConfigError, load_settings, located_error
from posthouse.config.schema import Config, ListenerSection, Settings
from posthouse.imap_layout import imap_config_dir, prepare_store_directories
from posthouse.logsetup import setup_logging
from posthouse.mta.agents.local_runner import DirectRunner, LocalRunner, start_helper
from posthouse.mta.aliases import AliasSyntaxError
from posthouse.mta.queue.listing import list_queue
from posthouse.mta.queue.scheduler import DeliveryScheduler
from posthouse.mta.stats import Statistics
from posthouse.protocols.imap import engine as imap_engine
from posthouse.protocols.pop3 import engine as pop3_engine
from posthouse.protocols.smtp import engine as smtp_engine
from posthouse.server.connection import Connection, Deadlines
from posthouse.server.control import Caller, ControlServer, Operation, Reply, bind_control_socket
from posthouse.server.imap.session import IMAPServices, IMAPSession
from posthouse.server.limits import ConnectionLimiter
from posthouse.server.listener import (
    BindError,
    ListenerGroup,
    ServiceSpec,
    SessionHandler,
    bind_socket,
)
from posthouse.server.pop3 import POP3Services, POP3Session
from posthouse.server.privileges import HandOverError, PrivilegeError, drop_privileges
from posthouse.server.records import ConnectionRegistry, remove_stale_records
from posthouse.server.smtp import SMTPSession
from posthouse.server.supervisor import WorkerSet, run_workers
from posthouse.server.telemetry import TelemetryDirectory
from posthouse.server.tls import TLSConfigError, server_context
from posthouse.store.maildrop import Maildrop

__all__ = [
    "RESTART_ONLY",
    "ConfigurationProblem",
    "Daemon",
    "ListenProblem",
    "ReloadResult",
    "Runtime",
    "StartupError",
    "SystemProblem",
    "check_startup",
    "prepare_daemon",
    "restart_needed",
    "run_daemon",
    "worker_count",
]

log = logging.getLogger("posthouse")

VERIFIED_LOGIN_SECONDS = 300.0  # a verified password is trusted again for five minutes

#: Options only a restart applies: the daemon's files, account and event loop, and the number
#: of workers of a daemon of one process (a supervisor replaces its workers instead).  Changed
#: listeners are rebound by a reload (:func:`rebind`) unless a port cannot be bound any more.
RESTART_ONLY = ("server.data_dir", "server.run_as", "server.workers", "server.event_loop")


def restart_needed(old: Config, new: Config) -> list[str]:
    """The options changed from *old* to *new* that only a restart applies (a reload applies
    every other option)."""
    changed = [
        name
        for name in RESTART_ONLY
        if getattr(old.server, name.split(".")[1]) != getattr(new.server, name.split(".")[1])
    ]
    if old.listener != new.listener:
        changed.append("listener")
    return changed


# -- start-up ---------------------------------------------------------------------------------


class StartupError(Exception):
    """The daemon cannot start; the message says why."""


class ConfigurationProblem(StartupError):
    """The configuration (or a file it names, such as the TLS certificate) is unusable."""


class ListenProblem(StartupError):
    """A listener's address cannot be bound, or another daemon serves the data directory."""


class SystemProblem(StartupError):
    """The account to run as, or the data directory, cannot be used."""


def check_startup(settings: Settings) -> None:
    """What ``load_settings`` cannot check: the TLS certificate and key load together, and
    an NFS client's mailbox directory is its server's."""
    check_mailbox_directory(settings)
    tls = settings.config.tls
    if tls.cert_file:
        try:
            server_context(tls.cert_file, tls.key_file)
        except TLSConfigError as exc:
            raise ConfigurationProblem(str(exc)) from exc


@dataclass
class Daemon:
    """A daemon ready to serve: its listeners and control socket bound, root given up."""

    settings: Settings
    sockets: list[tuple[ListenerSection, socket.socket]]
    control: socket.socket
    runner: LocalRunner | None  # the root helper, when started as root
    switched_to: str | None  # the account it became, when started as root

    def listening(self) -> list[tuple[str, str]]:
        """(protocol, where) of each listener: a socket path or ``address:port``."""
        return [(listener.protocol, where(sock)) for listener, sock in self.sockets]


def where(sock: socket.socket) -> str:
    """A listening socket's path, or ``address:port``."""
    name = sock.getsockname()
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return str(name)


def prepare_daemon(settings: Settings) -> Daemon:
    """Bind every listener and the control socket and, started as root, become
    ``server.run_as``.

    Started as root with an account to drop to, programs and files are run by a helper
    that keeps root (never the daemon's account, which holds the keys; see local_runner),
    and the data directory is handed to that account, with every store directory the
    configuration puts outside it (made here first; see prepare_store_directories)."""
    run_as = settings.config.server.run_as
    try:
        control = bind_control_socket(settings.paths.control_socket)
    except OSError as exc:
        raise ListenProblem(f"control socket {settings.paths.control_socket}: {exc}") from exc
    runner: LocalRunner | None = None
    if os.geteuid() == 0 and run_as:
        runner = start_helper(DirectRunner(identity_resolver(settings)))
    try:
        sockets = [
            (item, bind_socket(item.address, item.port, item.path))
            for item in settings.config.listener
        ]
    except BindError as exc:
        control.close()
        raise ListenProblem(str(exc)) from exc
    try:
        outside = prepare_store_directories(settings)
        switched_to = drop_privileges(run_as, [settings.paths.data_dir, *outside])
    except ConfigError as exc:
        raise ConfigurationProblem(str(exc)) from exc
    except HandOverError as exc:
        option = outside.get(exc.directory)
        if option is None:
            raise SystemProblem(str(exc)) from exc
        raise ConfigurationProblem(str(located_error(settings.source, option, str(exc)))) from exc
    except (PrivilegeError, OSError) as exc:
        raise SystemProblem(str(exc)) from exc
    return Daemon(settings, sockets, control, runner, switched_to)


def worker_count(configured: int | str) -> int:
    """Worker processes to run: ``configured``, or one per CPU for ``"auto"`` (nginx's)."""
    return configured if isinstance(configured, int) else os.cpu_count() or 1


@dataclass(frozen=True)
class Shared:
    """What every worker and every generation of the application share: made before the
    workers fork (the verified-password cache and the login limits), and the root helper."""

    main_pid: int  # the daemon's first process (the one in the pid file)
    verified_logins: VerifiedCache
    login_limiter: LoginLimiter
    runner: LocalRunner | None


def run_daemon(daemon: Daemon, workers: int, *, workers_fixed: bool = False) -> int:
    """Serve until SIGTERM in this process (one worker) or in *workers* forked ones, with
    the process id in ``Paths.pid_file`` meanwhile.

    With workers, a reload that changes the listeners or (unless *workers_fixed*, given on
    the command line) their number replaces the workers gracefully: the sockets are bound
    here, new workers start with the new configuration and the old ones finish their
    sessions."""
    settings = daemon.settings
    pid_file = settings.paths.pid_file
    pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
    shared = Shared(
        main_pid=os.getpid(),
        verified_logins=VerifiedCache(ttl=VERIFIED_LOGIN_SECONDS),
        login_limiter=login_limiter_for(settings),
        runner=daemon.runner,
    )
    notify_systemd(f"READY=1\nMAINPID={os.getpid()}")

    def serve_with(
        settings: Settings, sockets: list[tuple[ListenerSection, socket.socket]]
    ) -> Callable[[], int]:
        return lambda: serve_in_process(settings, sockets, daemon.control, shared)

    current = WorkerSet(workers, serve_with(settings, daemon.sockets))
    plan = (settings, daemon.sockets)

    def reconfigure() -> WorkerSet | None:
        nonlocal current, plan
        old, bound = plan
        try:
            fresh = load_settings(config_file(old))
            check_startup(fresh)
        except (ConfigError, ConfigurationProblem):
            return None  # the workers refuse it too, and log why
        count = current.count if workers_fixed else worker_count(fresh.config.server.workers)
        if fresh.config.listener == old.config.listener and count == current.count:
            return None  # the workers reload in place
        try:
            sockets = rebind(bound, fresh.config.listener)
        except BindError as exc:
            log.error("workers kept as they are: %s", exc)
            return None
        for _listener, sock in bound:
            if all(sock is not kept for _listener, kept in sockets):
                sock.close()  # the old workers keep their copies until they finish
        if fresh.paths.data_dir != old.paths.data_dir:
            fresh = dataclasses.replace(fresh, paths=old.paths)
        for listener, sock in sockets:
            log.info("listening %s on %s", listener.protocol, where(sock))
        plan = (fresh, sockets)
        current = WorkerSet(count, serve_with(fresh, sockets))
        return current

    try:
        if workers <= 1:
            return current.serve()
        return run_workers(workers, current.serve, reconfigure)
    finally:
        with contextlib.suppress(OSError, ValueError):
            if int(pid_file.read_text()) == os.getpid():
                pid_file.unlink()


def rebind(
    bound: list[tuple[ListenerSection, socket.socket]], listeners: tuple[ListenerSection, ...]
) -> list[tuple[ListenerSection, socket.socket]]:
    """The sockets for *listeners*: the *bound* ones that are still configured, new ones for
    the rest (:class:`BindError`, with nothing changed, when one cannot be bound: e.g. a
    privileged port once root is given up)."""
    kept = list(bound)
    result: list[tuple[ListenerSection, socket.socket]] = []
    opened: list[socket.socket] = []
    try:
        for listener in listeners:
            same = next((pair for pair in kept if pair[0] == listener), None)
            if same is not None:
                kept.remove(same)
                result.append(same)
                continue
            sock = bind_socket(listener.address, listener.port, listener.path)
            opened.append(sock)
            result.append((listener, sock))
    except BindError:
        for sock in opened:
            sock.close()
        raise
    return result


def notify_systemd(state: str) -> None:
    """Tell systemd (``Type=notify``) about the daemon's state, when it started us."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify,
    ):
        notify.sendto(state.encode(), address)


def serve_in_process(
    settings: Settings,
    sockets: list[tuple[ListenerSection, socket.socket]],
    control: socket.socket | None,
    shared: Shared,
) -> int:
    """One worker: build the application and serve the listeners until SIGTERM."""
    app = build_for(settings, shared)
    runtime = Runtime(app, sockets, control, shared)
    try:
        run_loop(settings, runtime.serve())
    finally:
        runtime.close()
        for handler in logging.getLogger().handlers:
            handler.flush()  # a worker ends with os._exit: no line may stay queued
    return 0


def build_for(settings: Settings, shared: Shared) -> Application:
    """The application for *settings*, sharing the worker's caches and root helper."""
    return build_application(
        settings,
        verified_logins=shared.verified_logins,
        login_limiter=shared.login_limiter,
        local_runner=shared.runner,
    )


def run_loop(settings: Settings, main: Coroutine[Any, Any, None]) -> None:
    """Run the daemon's coroutine on the configured event loop."""
    if settings.config.server.event_loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def config_file(settings: Settings) -> str | None:
    """The file *settings* were read from (``None``: the built-in defaults)."""
    return None if settings.source == DEFAULTS_SOURCE else settings.source


# -- serving and reloading ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: whether the new configuration is in use, and what still needs a
    restart."""

    ok: bool
    message: str
    restart_needed: tuple[str, ...] = ()


class Runtime:
    """One serving process: its lasting parts and the application new work uses."""

    def __init__(
        self,
        app: Application,
        sockets: list[tuple[ListenerSection, socket.socket]],
        control: socket.socket | None,
        shared: Shared,
    ) -> None:
        self.app = app
        self.generation = 1
        self.started = time.time()
        self.sockets = sockets
        self.shared = shared
        self._control_sock = control
        self._retiring: set[asyncio.Task[Any]] = set()  # retiring apps, signalled reloads
        self._stop = asyncio.Event()
        config = app.settings.config
        self.limiter = ConnectionLimiter(
            config.smtp.max_connections,
            config.smtp.max_connections_per_client,
            exempt=app.policy.is_trusted,  # smtpd_client_event_limit_exceptions = $mynetworks
        )
        self.registry = ConnectionRegistry(app.settings.paths.proc_dir)
        self.group = ListenerGroup(self.limiter, self.registry)
        self.scheduler = DeliveryScheduler(app.delivery, app.queue)

    @property
    def settings(self) -> Settings:
        return self.app.settings

    async def serve(self) -> None:
        """Serve the listeners and the control socket and run deliveries until SIGTERM or
        SIGINT (or ``stop``); SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        remove_stale_records(self.settings.paths.proc_dir)
        for spec in service_specs(self.app, self.sockets, self.scheduler, self.group.stopping):
            await self.group.start(spec)
        self.app.transport.bind_loop(asyncio.get_running_loop())
        control = None
        if self._control_sock is not None:
            control = ControlServer(self._control_sock, self.operations())
            await control.start()
        scheduler_task = asyncio.create_task(self.scheduler.run())
        stats_task = asyncio.create_task(self._flush_statistics())
        await self._stop.wait()
        # Stopping already: a second SIGTERM (an impatient init script) must not kill the
        # process while it finishes the sessions and closes its files, nor after the loop
        # (which would reset the handler to the default) has ended.
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.info("shutting down: finishing %d session(s) in flight", self.group.session_count)
        if control is not None:
            await control.close()
        await self.group.shutdown(self.settings.config.server.shutdown_grace_seconds)
        await self.scheduler.stop()
        await self.app.close_mail_store()
        await self.app.transport.agent.close_idle()
        scheduler_task.cancel()
        stats_task.cancel()
        await asyncio.gather(scheduler_task, stats_task, *self._retiring, return_exceptions=True)
        self.app.stats.flush()
        self.registry.close()
        log.info("stopped")

    def close(self) -> None:
        self.app.close()

    def _reload_on_signal(self) -> None:
        task = asyncio.create_task(self.reload())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def reload(self) -> ReloadResult:
        """Re-read the configuration file and swap in an application built from it (see the
        module docstring); on any error the running one stays and the error is logged."""
        old = self.settings
        try:
            fresh = load_settings(config_file(old))
            check_startup(fresh)
        except (ConfigError, ConfigurationProblem) as exc:
            return self._logged(ReloadResult(False, f"reload refused: {exc}"))
        pending = restart_needed(old.config, fresh.config)
        if fresh.paths.data_dir != old.paths.data_dir:
            # The pid file, the control socket and the records stay where they are.
            fresh = dataclasses.replace(fresh, paths=old.paths)
        try:
            refresh_aliases(fresh)
        except (AliasSyntaxError, OSError) as exc:
            log.error("aliases not rebuilt, the previous aliases database stays: %s", exc)
        try:
            setup_logging(fresh.config.server)  # a new log file applies; a rotated one reopens
            app = build_for(fresh, self.shared)
        except (OSError, ValueError) as exc:
            return self._logged(ReloadResult(False, f"reload failed: {exc}"))
        sockets = self.sockets
        if "listener" in pending and self.shared.main_pid == os.getpid():
            try:
                sockets = rebind(self.sockets, fresh.config.listener)
                pending.remove("listener")
            except BindError as exc:
                log.error("listeners kept as they are: %s", exc)
        await self._swap(app, sockets)
        message = f"configuration reloaded from {fresh.source} (generation {self.generation})"
        if pending:
            message += "; not applied until a restart: " + ", ".join(pending)
        return self._logged(ReloadResult(True, message, tuple(pending)))

    async def _swap(
        self, app: Application, sockets: list[tuple[ListenerSection, socket.socket]]
    ) -> None:
        """New sessions and deliveries use *app*, new connections *sockets* (listeners no
        longer in it stop accepting; their sessions go on); the old application closes after
        the sessions and delivery batches running now."""
        old = self.app
        running = self.group.sessions_now()
        self.app = app
        self.generation += 1
        config = app.settings.config
        self.limiter.max_total = config.smtp.max_connections
        self.limiter.max_per_client = config.smtp.max_connections_per_client
        self.limiter.is_exempt = app.policy.is_trusted
        self.scheduler.delivery = app.delivery
        self.scheduler.store = app.queue
        serving = {sock.fileno() for _listener, sock in self.sockets}
        for spec in service_specs(app, sockets, self.scheduler, self.group.stopping):
            if spec.sock.fileno() in serving:
                self.group.replace(spec)
            else:
                await self.group.start(spec)
                log.info("listening %s on %s", spec.name, where(spec.sock))
        remaining = {sock.fileno() for _listener, sock in sockets}
        for listener, sock in self.sockets:
            if sock.fileno() not in remaining:
                await self.group.stop_serving(sock)
                log.info("no longer listening %s", listener.protocol)
        self.sockets = sockets
        app.transport.bind_loop(asyncio.get_running_loop())
        task = asyncio.create_task(self._retire(old, running))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, app: Application, sessions: set[asyncio.Task[None]]) -> None:
        if sessions:
            await asyncio.wait(sessions)
        await self.scheduler.settle()
        await app.close_mail_store()
        await app.transport.agent.close_idle()
        await asyncio.to_thread(app.stats.flush)
        app.close()

    @staticmethod
    def _logged(result: ReloadResult) -> ReloadResult:
        if result.ok and result.restart_needed:
            log.warning("%s", result.message)
        elif result.ok:
            log.info("%s", result.message)
        else:
            log.error("%s; keeping the running configuration", result.message)
        return result

    async def _flush_statistics(self, interval: float = 1.0) -> None:
        """Write the mailstats counters at least once a second (off the event loop)."""
        while True:
            await asyncio.sleep(interval)
            stats: Statistics = self.app.stats
            if stats.pending_events:
                await asyncio.to_thread(stats.flush)

    # -- the control socket's operations ----------------------------------------------------

    def operations(self) -> dict[str, Operation]:
        return {
            "status": Operation(self._status),
            "reload": Operation(self._reload, privileged=True),
            "stop": Operation(self._stop_request, privileged=True),
            "mailauth": Operation(self._mailauth),
            "mailq": Operation(self._mailq),
        }

    async def _status(self, _caller: Caller, _request: dict[str, Any]) -> Reply:
        fields = {
            "pid": self.shared.main_pid,
            "worker": os.getpid(),
            "config": self.settings.source,
            "generation": self.generation,
            "sessions": self.group.session_count,
            "started": self.started,
        }
        return Reply(True, f"posthouse is running (pid {self.shared.main_pid})", fields)

    async def _reload(self, _caller: Caller, _request: dict[str, Any]) -> Reply:
        if self.shared.main_pid == os.getpid():
            result = await self.reload()
            return Reply(result.ok, result.message, {"restart_needed": result.restart_needed})
        # Workers: check the file here; the supervisor then replaces the workers (listeners
        # or their number changed) or forwards the SIGHUP to every one.
        try:
            fresh = load_settings(config_file(self.settings))
            check_startup(fresh)
        except (ConfigError, ConfigurationProblem) as exc:
            return Reply(False, f"reload refused: {exc}")
        os.kill(self.shared.main_pid, signal.SIGHUP)
        pending = [
            name
            for name in restart_needed(self.settings.config, fresh.config)
            if name not in ("listener", "server.workers")  # new workers apply those
        ]
        message = f"reloading {fresh.source} in the workers (see the log)"
        if pending:
            message += "; not applied until a restart: " + ", ".join(pending)
        return Reply(True, message, {"restart_needed": pending})

    async def _stop_request(self, _caller: Caller, _request: dict[str, Any]) -> Reply:
        os.kill(self.shared.main_pid, signal.SIGTERM)
        sessions = self.group.session_count
        return Reply(
            True,
            f"stopping: finishing {sessions} session(s) in flight",
            {"pid": self.shared.main_pid, "sessions": sessions},
        )

    async def _mailauth(self, caller: Caller, request: dict[str, Any]) -> Reply:
        """A user changes their own mail password: the user is the caller's account."""
        try:
            name = pwd.getpwuid(caller.uid).pw_name
        except KeyError:
            return Reply(False, f"uid {caller.uid} has no account name")
        current, new = request.get("current"), request.get("new")
        if not isinstance(current, str) or not isinstance(new, str):
            return Reply(False, 'mailauth needs "current" and "new" passwords')
        app = self.app
        # Counted and slowed down like any login: a guesser at a user's terminal gains nothing.
        outcome, _ok = await app.authenticator.guarded(
            name,
            f"uid:{caller.uid}",
            lambda: mail_password.verify_current(app.mailauth, app.authenticator, name, current),
        )
        if outcome is not Outcome.OK:
            log.warning("mail password change for %s (uid %d): wrong password", name, caller.uid)
            return Reply(False, "authentication failed")
        try:
            await asyncio.to_thread(
                mail_password.set_mail_password, app.mailauth, app.authenticator, name, new
            )
        except mail_password.MailPasswordRefused as exc:
            return Reply(False, str(exc))
        log.info("mail password changed for %s (uid %d)", name, caller.uid)
        return Reply(True, f"mail password changed for {name}", {"user": name})

    async def _mailq(self, _caller: Caller, request: dict[str, Any]) -> Reply:
        verbose = bool(request.get("verbose"))
        return Reply(True, "", lines=list_queue(self.app.queue, verbose=verbose))


def service_specs(
    app: Application,
    sockets: list[tuple[ListenerSection, socket.socket]],
    scheduler: DeliveryScheduler,
    stopping: asyncio.Event,
) -> list[ServiceSpec]:
    """How to serve each bound socket with *app*: one spec per listener."""
    config = app.settings.config
    tls_context: ssl.SSLContext | None = None
    if config.tls.cert_file:
        tls_context = server_context(config.tls.cert_file, config.tls.key_file)
    smtp_deadlines = Deadlines(
        command_timeout=config.smtp.command_timeout_seconds,
        data_timeout=config.smtp.data_timeout_seconds,
        min_rate=config.smtp.min_data_rate,
        handshake_timeout=config.smtp.tls_handshake_timeout_seconds,
    )
    pop3_deadlines = Deadlines(
        command_timeout=config.pop3.command_timeout_seconds,
        handshake_timeout=config.smtp.tls_handshake_timeout_seconds,
    )
    smtp_services = smtp_services_for(app, scheduler, tls_context)
    open_maildrop: Callable[[str], Maildrop] = open_maildrop_for(app)
    telemetry = TelemetryDirectory(imap_config_dir(app.settings) / "log")  # IMAP and POP3
    pop3_services = POP3Services(
        hostname=config.server.hostname,
        credentials=app.credentials,
        open_maildrop=open_maildrop,
        tls_context=tls_context,
        local_domains=app.local_domains.__contains__,
        telemetry=telemetry,
    )
    imap_deadlines = Deadlines(
        command_timeout=config.imap.command_timeout_seconds,
        data_timeout=config.imap.command_timeout_seconds,
        min_rate=config.imap.min_data_rate,
        handshake_timeout=config.smtp.tls_handshake_timeout_seconds,
    )
    specs = []
    for listener, sock in sockets:
        implicit = tls_context if listener.protocol in ("smtps", "pop3s", "imaps") else None
        handler: SessionHandler
        if listener.protocol in ("imap", "imaps"):
            imap_services = IMAPServices(
                hostname=config.server.hostname,
                credentials=app.credentials,
                store=app.mail_store,
                tls_context=tls_context,
                local_domains=app.local_domains.__contains__,
                telemetry=telemetry,
            )
            imap_for = imap_settings_for(app, None if implicit else tls_context)
            handler = _serve(IMAPSession, imap_services, imap_for, stopping)
            refusal = _imap_refusal
            idle, deadlines = config.imap.timeout * 60.0, imap_deadlines
        elif listener.protocol in ("pop3", "pop3s"):
            pop3_for = pop3_settings_for(app, None if implicit else tls_context)
            handler = _serve(POP3Session, pop3_services, pop3_for, stopping)
            refusal = _pop3_refusal
            idle, deadlines = config.pop3.idle_timeout_seconds, pop3_deadlines
        else:
            smtp_for = engine_settings(app, listener, tls_context is not None and not implicit)
            handler = _serve(SMTPSession, smtp_services, smtp_for, stopping)
            refusal = _smtp_refusal
            idle, deadlines = config.smtp.idle_timeout_seconds, smtp_deadlines
        specs.append(
            ServiceSpec(
                name=listener.protocol,
                sock=sock,
                handler=handler,
                idle_timeout=idle,
                refusal=refusal,
                implicit_tls=implicit,
                deadlines=deadlines,
            )
        )
    return specs


def _smtp_refusal(reason: str) -> bytes:
    return smtp_engine.refusal(reason).to_bytes()


def _imap_refusal(reason: str) -> bytes:
    return imap_engine.refusal(reason).to_bytes()


def _pop3_refusal(reason: str) -> bytes:
    return pop3_engine.refusal(reason).to_bytes()


class _Session(Protocol):
    async def run(self) -> None: ...


_Services = TypeVar("_Services")
_EngineSettings = TypeVar("_EngineSettings")


def _serve(
    session: Callable[[Connection, _Services, _EngineSettings, asyncio.Event], _Session],
    services: _Services,
    settings_for: Callable[[Connection], _EngineSettings],
    stopping: asyncio.Event,
) -> SessionHandler:
    """The handler that runs a protocol's session on each admitted connection."""

    async def handler(connection: Connection) -> None:
        await session(connection, services, settings_for(connection), stopping).run()

    return handler
