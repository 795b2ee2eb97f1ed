"""Changing a user's mail password: the rules the tools and the daemon share (§12.4.4 step 7).

The current password proves who asks: the mail password, or the login password while the user
has none yet.  The new one must not be empty and must differ from the login password, which
the mail password exists to protect.  ``posthouse mailauth`` applies these rules itself when it
can write the database (root), and the daemon applies them for an ordinary user who asks over
the control socket.
"""

from __future__ import annotations

from posthouse.auth.authenticator import Authenticator
from posthouse.auth.mailauth import MailAuthDatabase
from posthouse.auth.users import normalize_name

__all__ = ["MailPasswordRefused", "set_mail_password", "verify_current"]


class MailPasswordRefused(ValueError):
    """The new mail password breaks a rule; the message says which."""


def verify_current(
    mailauth: MailAuthDatabase, authenticator: Authenticator, name: str, current: str
) -> bool:
    """Whether *current* is *name*'s mail password, or login password while there is no mail
    password.  Blocking (a password hash)."""
    key = normalize_name(name)
    if mailauth.has(key):
        return mailauth.verify(key, current)
    return authenticator.verify(key, current)


def set_mail_password(
    mailauth: MailAuthDatabase, authenticator: Authenticator, name: str, new: str
) -> None:
    """Store *new* as *name*'s mail password (:class:`MailPasswordRefused` when it may not be
    one).  Blocking."""
    if not new:
        raise MailPasswordRefused("empty password refused")
    key = normalize_name(name)
    if authenticator.verify(key, new):
        raise MailPasswordRefused("the mail password must differ from the login password")
    mailauth.set_password(key, new)
