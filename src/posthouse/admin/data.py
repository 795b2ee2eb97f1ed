"""The data directory on a daemon's first start: its layout, default aliases and, in the Quick
start's unconfigured mode only, a demo user.

``posthouse serve`` runs :func:`first_run` before binding its listeners; it does nothing
that is already done, so every start runs it.  Without a configuration file (the built-in
defaults: the README's Quick start) a fresh data directory gets the demo user, with a
password it prints, and ``postmaster: demo``; a configured server gets no user at all and
``postmaster: root``, for its administrator to point at someone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets

from posthouse.admin.errors import NotConfigured, StorageFailure
from posthouse.app import mail_store_for, prepare_data_dir, refresh_aliases
from posthouse.auth.users import UserDatabase
from posthouse.config.load import DEFAULTS_SOURCE
from posthouse.config.schema import Settings
from posthouse.mta.aliases import AliasSyntaxError
from posthouse.server.imap.views import prepared
from posthouse.store.errors import StoreError
from posthouse.store.names import user_inbox

__all__ = ["DEMO_USER", "first_run"]

DEMO_USER = "demo"
DEFAULT_ALIASES = """\
# aliases(5) for posthouse: "name: address, address, ..."
# Run `posthouse newaliases` after editing (the running daemon picks it up at once).
postmaster: {postmaster}
MAILER-DAEMON: postmaster
abuse: postmaster
"""


WELCOME = (
    "From: posthouse <postmaster@localhost>\r\n"
    "To: demo\r\n"
    "Subject: Welcome to posthouse\r\n"
    "\r\n"
    "This message is in your INBOX in the IMAP mail store; read it with any IMAP client.\r\n"
)


def _demo_inbox(settings: Settings) -> None:
    """Give the demo user an INBOX in the IMAP store (with a welcome message) once."""
    store = mail_store_for(settings)

    async def create() -> None:
        try:
            if await store.backend.get_mailbox(user_inbox(DEMO_USER)) is None:
                await store.create_user(DEMO_USER)
                now = dt.datetime.now(dt.UTC).astimezone()
                await store.deliver(DEMO_USER, [prepared(WELCOME.encode(), now, frozenset())])
        finally:
            await store.backend.close()

    try:
        asyncio.run(create())
    except (StoreError, OSError) as exc:
        raise StorageFailure(f"cannot create the demo user's IMAP INBOX: {exc}") from exc


def first_run(settings: Settings) -> str | None:
    """Prepare the data directory: on a fresh one default aliases, and a demo user when
    there is no configuration file.

    Returns the demo user's password when the demo user exists (it is kept in
    ``etc/demo-password``, readable by the server only, so it can be shown).  Raises
    :class:`NotConfigured` for a bad aliases file, :class:`StorageFailure` when the
    directory cannot be prepared.
    """
    try:
        return _first_run(settings)
    except AliasSyntaxError as exc:
        raise NotConfigured(f"aliases error: {exc}") from exc
    except OSError as exc:
        raise StorageFailure(f"cannot prepare {settings.paths.data_dir}: {exc}") from exc


def _first_run(settings: Settings) -> str | None:
    paths = settings.paths
    prepare_data_dir(settings)
    secret_file = paths.users_db.parent / "demo-password"
    unconfigured = settings.source == DEFAULTS_SOURCE
    with UserDatabase(paths.users_db) as users:
        if unconfigured and not users.list():
            password = secrets.token_urlsafe(12)
            users.add(DEMO_USER, password)
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
    if not paths.aliases_file.exists():
        postmaster = DEMO_USER if unconfigured else "root"
        paths.aliases_file.write_text(
            DEFAULT_ALIASES.format(postmaster=postmaster), encoding="utf-8"
        )
    refresh_aliases(settings)
    if secret_file.exists():
        _demo_inbox(settings)
        return secret_file.read_text(encoding="utf-8").strip()
    return None
