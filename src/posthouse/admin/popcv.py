"""Moving POP subscribers from an MH POP file to the mailauth database (§12.4.2.1 step 4).

The file is MH's POP database, pop(4): one subscriber per line, colon-separated fields in
the BBoards layout (``mrose::mrose:9X5/m4yWHvhCc::mrose@nrtc-isc::::0``).  Only the name
(field 1) and the password (field 4) are used.  The password is a ``crypt(3)`` hash (made
by popwrd); it is stored as a legacy hash that USER/PASS logins are checked against, and
the first good login replaces it with posthouse's own hash and encrypted secret.  With
``clear`` field 4 is taken as the clear password.  An empty password ("no password is
valid") or ``*`` (pick-up disabled) skips the subscriber; blank lines and ``#`` lines are
ignored; bad lines are reported and skipped.

Each subscriber missing from posthouse's users is added with no login password of its own
and service type ``pop-mailpass``; an existing ``unix`` or ``pop`` user is switched to
``pop-mailpass``, so POP logins keep using the POP file's password as under MH popd; other
types are left alone.  The mailauth database must exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from posthouse.admin.errors import InputMissing, translated
from posthouse.admin.mailauth import MailAuthFiles, hand_to_daemon
from posthouse.auth.mailauth import MailAuthDatabase
from posthouse.auth.users import InvalidUserName, ServiceType, UserDatabase, normalize_name

__all__ = ["DEFAULT_POP_FILE", "PopcvReport", "convert_pop_file", "import_pop_file"]

DEFAULT_POP_FILE = "/usr/spool/pop/POP"

_SWITCHED_TYPES = (ServiceType.UNIX, ServiceType.POP)


@dataclass
class PopcvReport:
    """What a conversion did."""

    imported: int = 0
    created: int = 0
    switched: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    handed_to: str | None = None  # the account the mailauth files now belong to


def import_pop_file(files: MailAuthFiles, source: Path, *, clear: bool = False) -> PopcvReport:
    """Import every subscriber of the POP file *source* (see the module docstring)."""
    with translated(), files.open_mailauth() as mailauth, UserDatabase(files.users_db) as users:
        mailauth.check()
        try:
            with open(source, encoding="utf-8", errors="surrogateescape") as text:
                report = convert_pop_file(text, mailauth, users, clear=clear)
        except FileNotFoundError as exc:
            raise InputMissing(f"{source}: no such file") from exc
        report.handed_to = hand_to_daemon(files, mailauth)
    return report


def convert_pop_file(
    lines: Iterable[str], mailauth: MailAuthDatabase, users: UserDatabase, *, clear: bool = False
) -> PopcvReport:
    """Import every subscriber of the lines of an MH POP file into open databases."""
    report = PopcvReport()
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        fields = text.split(":")
        if len(fields) < 4:
            report.skipped.append((number, "fewer than 4 colon-separated fields"))
            continue
        try:
            name = normalize_name(fields[0].strip())
        except InvalidUserName as exc:
            report.skipped.append((number, str(exc)))
            continue
        password = fields[3] if clear else fields[3].strip()
        if not password:
            report.skipped.append((number, f"{name}: empty password (no password is valid)"))
            continue
        if password == "*":
            report.skipped.append((number, f"{name}: password '*' (pick-up disabled)"))
            continue
        if clear:
            mailauth.set_password(name, password)
        else:
            mailauth.set_legacy_crypt(name, password)
        existing = users.get(name)
        if existing is None:
            users.add(name, None, ServiceType.POP_MAILPASS)
            report.created += 1
        elif existing.service_type in _SWITCHED_TYPES:
            users.set_service_type(name, ServiceType.POP_MAILPASS)
            report.switched += 1
        report.imported += 1
    return report
