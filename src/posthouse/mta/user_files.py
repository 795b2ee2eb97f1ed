"""The daemon's source of ``.forward`` and ``:include:`` files, and who their destinations run as.

This module joins :mod:`posthouse.mta.trusted_files` (sendmail's safety rules, applied to
an open descriptor) to recipient expansion (:class:`~posthouse.mta.expand.FileSource`) and
to delivery.  An identity travels from the file that named a program or file destination to
the agent that runs it as a short token kept in the queue file (``run_as``):

* ``""``: the aliases file's default user (``[aliases] default_user``, sendmail's
  ``DefaultUser``), resolved at delivery by
  :func:`~posthouse.mta.agents.program.aliases_identity`;
* a user name: that account (a ``.forward``'s user, an include file's owner that has a
  passwd entry); its login shell must be in ``/etc/shells``;
* ``#UID:GID``: an include file's owner without a passwd entry (it may run nothing: no
  shell is valid for it).
"""

from __future__ import annotations

import pwd
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from posthouse.mta.agents.program import aliases_identity
from posthouse.mta.errors import MailError
from posthouse.mta.expand import Refused, TrustedText
from posthouse.mta.identity import Identity
from posthouse.mta.trusted_files import Refusal, TrustedFile, read_forward, read_include

__all__ = ["CheckedFiles", "IdentityResolver", "identity_token"]

# The parent identity handed to read_include: only used when the include file is owned by
# root, and then replaced by the parent's own token (see CheckedFiles.read_include).
_ROOT_OWNED = Identity(0, 0, "root", "/", "")


def identity_token(identity: Identity) -> str:
    """The ``run_as`` token for *identity* (module docstring)."""
    try:
        if pwd.getpwnam(identity.user).pw_uid == identity.uid:
            return identity.user
    except KeyError:
        pass
    return f"#{identity.uid}:{identity.gid}"


@dataclass(frozen=True)
class CheckedFiles:
    """``.forward`` files of system accounts and ``:include:`` files, each honoured only
    when it passes the safety rules (refusals are logged by :mod:`trusted_files`).

    ``account_of(user)`` gives the system account whose ``.forward`` may be read (None for
    users without one, e.g. posthouse's own users, or when ``.forward`` files are off)."""

    account_of: Callable[[str], Identity | None]
    top: Path = Path("/")

    def read_forward(self, user: str) -> TrustedText | Refused | None:
        identity = self.account_of(user)
        if identity is None or not identity.home:
            return None
        found = read_forward(Path(identity.home) / ".forward", identity, top=self.top)
        if found is None:
            return None
        return _result(found, identity.user if isinstance(found, TrustedFile) else "")

    def read_include(self, path: Path, parent_run_as: str) -> TrustedText | Refused:
        found = read_include(path, parent=_ROOT_OWNED, top=self.top)
        if isinstance(found, TrustedFile) and found.owner == 0:
            return TrustedText(found.text, parent_run_as)
        return _result(found, "")


def _result(found: TrustedFile | Refusal, run_as: str) -> TrustedText | Refused:
    if isinstance(found, Refusal):
        return Refused(found.reason, found.temporary)
    return TrustedText(found.text, run_as or identity_token(found.identity))


@dataclass(frozen=True)
class IdentityResolver:
    """Turns a ``run_as`` token back into the identity a program or file runs as.

    ``default_user``/``daemon_user``/``may_run_as_self``: see
    :func:`~posthouse.mta.agents.program.aliases_identity`."""

    default_user: str
    daemon_user: str = ""
    may_run_as_self: bool = True

    def __call__(self, run_as: str) -> Identity | MailError:
        if not run_as:
            return aliases_identity(
                self.default_user,
                may_run_as_self=self.may_run_as_self,
                daemon_user=self.daemon_user,
            )
        if run_as.startswith("#"):
            uid, _, gid = run_as[1:].partition(":")
            if not (uid.isdigit() and gid.isdigit()):
                return MailError("5.3.0", f"bad account {run_as!r} in the queue file")
            return Identity.for_uid(int(uid), int(gid))
        identity = Identity.for_user(run_as)
        if identity is None:
            return MailError("5.3.0", f"account {run_as!r} no longer exists")
        if identity.uid == 0:
            return MailError("5.3.0", "programs and files never run as root")
        return identity
