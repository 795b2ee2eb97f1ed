"""The IMAP side of ``posthouse cyradm``: the administrative commands Cyrus's cyradm sends.

:class:`CyradmClient` wraps an :mod:`imaplib` connection (STARTTLS when the server offers it,
or implicit TLS) and sends what Cyrus's ``Cyrus::IMAP::Admin`` sends: ``CREATE name
[partition]`` and ``RENAME old new [partition]`` (Cyrus's extra partition argument),
``DELETE``, ``LIST``, the RFC 4314 ACL commands, the RFC 9208 QUOTA commands and Cyrus's
``RECONSTRUCT``.  A command the server refuses raises :class:`ServerRefused` with the server's
own text: ``NO`` (it would not) or ``BAD`` (it does not know the command or its arguments).
"""

from __future__ import annotations

import ast
import contextlib
import imaplib
import ssl
from dataclasses import dataclass

from posthouse.admin.imap_words import (
    ImapWord,
    WordError,
    quoted,
    response_lines,
    words,
)
from posthouse.protocols.imap import mutf7

__all__ = [
    "ConnectionFailed",
    "CyradmClient",
    "ListedMailbox",
    "QuotaRootInfo",
    "QuotaUsage",
    "ServerRefused",
]


class ServerRefused(Exception):
    """The server answered NO or BAD; the message is the server's text."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class ConnectionFailed(Exception):
    """The server could not be reached, TLS failed, or the connection was lost."""


@dataclass(frozen=True)
class ListedMailbox:
    name: str
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class QuotaUsage:
    """One resource of a quota root (RFC 9208 §5.1): usage and limit (STORAGE: kilobytes)."""

    resource: str
    used: int
    limit: int


@dataclass(frozen=True)
class QuotaRootInfo:
    """GETQUOTAROOT's answer: the mailbox's roots and each root's resources."""

    roots: tuple[str, ...]
    usage: dict[str, tuple[QuotaUsage, ...]]


def _name(mailbox: str) -> str:
    """A mailbox name on the wire: modified UTF-7 (RFC 3501 §5.1.3), then an astring."""
    return quoted(mailbox if mailbox.isascii() else mutf7.encode(mailbox))


class CyradmClient:
    """One logged-in administrative IMAP connection."""

    def __init__(self, imap: imaplib.IMAP4) -> None:
        self.imap = imap

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        implicit_tls: bool,
        context: ssl.SSLContext,
        starttls: bool = True,
        timeout: float = 60.0,
    ) -> CyradmClient:
        """Connect; with ``starttls``, upgrade the connection when the server offers it."""
        try:
            if implicit_tls:
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=context, timeout=timeout
                )
            else:
                imap = imaplib.IMAP4(host, port, timeout=timeout)
                if starttls and "STARTTLS" in imap.capabilities:  # RFC 3501 §6.2.1
                    imap.starttls(context)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ConnectionFailed(f"{host} port {port}: {exc}") from exc
        return cls(imap)

    @property
    def encrypted(self) -> bool:
        return isinstance(self.imap.sock, ssl.SSLSocket)

    def login(self, user: str, password: str) -> None:
        try:
            self.imap.login(quoted(user), password)
        except imaplib.IMAP4.abort as exc:
            raise ConnectionFailed(str(exc)) from exc
        except imaplib.IMAP4.error as exc:
            raise ServerRefused("NO", _text(exc.args[0] if exc.args else exc)) from exc

    def logout(self) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):  # leaving anyway
            self.imap.logout()

    # --- the commands -------------------------------------------------------------------

    def create(self, mailbox: str, partition: str | None = None) -> None:
        """CREATE, with Cyrus's partition argument when one is named."""
        args = [_name(mailbox)] + ([quoted(partition)] if partition else [])
        self._run("CREATE", *args)

    def delete(self, mailbox: str) -> None:
        self._run("DELETE", _name(mailbox))

    def rename(self, old: str, new: str, partition: str | None = None) -> None:
        args = [_name(old), _name(new)] + ([quoted(partition)] if partition else [])
        self._run("RENAME", *args)

    def list_mailboxes(self, pattern: str = "*", reference: str = "") -> list[ListedMailbox]:
        """LIST (RFC 3501 §6.3.8): the mailboxes matching *pattern*."""
        lines = self._run("LIST", quoted(reference), quoted(pattern, pattern=True), want="LIST")
        listed = []
        for line in lines:
            parts = words(line)
            if len(parts) < 3 or not isinstance(parts[0], list):
                raise ServerRefused("BAD", f"unreadable LIST response: {line!r}")
            name = _string(parts[2])
            listed.append(ListedMailbox(name, tuple(_string(a) for a in parts[0])))
        return listed

    def setacl(self, mailbox: str, identifier: str, rights: str) -> None:
        self._run("SETACL", _name(mailbox), quoted(identifier), quoted(rights))  # RFC 4314 §3.1

    def deleteacl(self, mailbox: str, identifier: str) -> None:
        self._run("DELETEACL", _name(mailbox), quoted(identifier))  # RFC 4314 §3.2

    def getacl(self, mailbox: str) -> list[tuple[str, str]]:
        """GETACL (RFC 4314 §3.3): the (identifier, rights) entries, in the server's order."""
        entries: list[tuple[str, str]] = []
        for line in self._run("GETACL", _name(mailbox), want="ACL"):
            parts = [_string(word) for word in words(line)]
            pairs = parts[1:]  # RFC 4314 §3.6: mailbox, then identifier rights pairs
            if len(pairs) % 2:
                raise ServerRefused("BAD", f"unreadable ACL response: {line!r}")
            entries += list(zip(pairs[::2], pairs[1::2], strict=True))
        return entries

    def setquota(self, root: str, limits: dict[str, int]) -> None:
        """SETQUOTA (RFC 9208 §4.3); an empty *limits* removes the root's limits."""
        listed = " ".join(f"{resource} {limit}" for resource, limit in limits.items())
        self._run("SETQUOTA", quoted(root), f"({listed})")

    def getquota(self, root: str) -> list[QuotaUsage]:
        """GETQUOTA (RFC 9208 §4.1)."""
        usage: list[QuotaUsage] = []
        for line in self._run("GETQUOTA", quoted(root), want="QUOTA"):
            usage += _quota_usage(words(line))[1]
        return usage

    def getquotaroot(self, mailbox: str) -> QuotaRootInfo:
        """GETQUOTAROOT (RFC 9208 §4.2): the mailbox's quota roots and their usage."""
        self._run("GETQUOTAROOT", _name(mailbox))
        roots: list[str] = []
        for line in self._untagged("QUOTAROOT"):
            roots += [_string(word) for word in words(line)[1:]]  # RFC 9208 §5.2
        usage: dict[str, tuple[QuotaUsage, ...]] = {}
        for line in self._untagged("QUOTA"):
            root, resources = _quota_usage(words(line))
            usage[root] = resources
        return QuotaRootInfo(tuple(roots), usage)

    def reconstruct(self, mailbox: str, *, recursive: bool = False) -> list[str]:
        """Cyrus's ``RECONSTRUCT mailbox [RECURSIVE]``: rebuild the mailbox's index on the
        server; the server's untagged OK lines (posthouse reports each mailbox rebuilt)."""
        args = [_name(mailbox)] + (["RECURSIVE"] if recursive else [])
        lines = self._run("RECONSTRUCT", *args, want="OK")
        return [line.decode("utf-8", "replace") for line in lines]

    # --- the exchange -------------------------------------------------------------------

    def _run(self, command: str, *args: str, want: str | None = None) -> list[bytes]:
        """Send *command*; the untagged *want* responses, or :class:`ServerRefused`."""
        for code in ("LIST", "ACL", "QUOTA", "QUOTAROOT"):
            self.imap.untagged_responses.pop(code, None)  # nothing left from before
        try:
            status, data = self.imap.xatom(command, *args)
        except imaplib.IMAP4.abort as exc:
            raise ConnectionFailed(f"connection lost: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            raise ServerRefused("BAD", _bad_text(command, str(exc))) from exc
        except OSError as exc:
            raise ConnectionFailed(f"connection lost: {exc}") from exc
        if status != "OK":
            raise ServerRefused(status, _text(data[-1] if data else b""))
        return self._untagged(want) if want else []

    def _untagged(self, code: str) -> list[bytes]:
        return response_lines(self.imap.untagged_responses.pop(code, []))


def _string(word: ImapWord) -> str:
    if isinstance(word, list):
        raise WordError(f"a list where a string was expected: {word!r}")
    return word


def _quota_usage(parts: list[ImapWord]) -> tuple[str, tuple[QuotaUsage, ...]]:
    """RFC 9208 §5.1: ``QUOTA root (resource usage limit ...)``."""
    if len(parts) != 2 or not isinstance(parts[1], list) or len(parts[1]) % 3:
        raise ServerRefused("BAD", f"unreadable QUOTA response: {parts!r}")
    triples = [_string(word) for word in parts[1]]
    try:
        resources = tuple(
            QuotaUsage(triples[i].upper(), int(triples[i + 1]), int(triples[i + 2]))
            for i in range(0, len(triples), 3)
        )
    except ValueError as exc:
        raise ServerRefused("BAD", f"unreadable QUOTA response: {parts!r}") from exc
    return _string(parts[0]), resources


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _bad_text(command: str, message: str) -> str:
    """The server's text out of imaplib's ``"NAME command error: BAD [b'text']"``."""
    prefix = f"{command} command error: BAD "
    if message.startswith(prefix):
        try:
            data = ast.literal_eval(message[len(prefix) :])
        except (ValueError, SyntaxError):
            return message
        if isinstance(data, list) and data and isinstance(data[-1], bytes):
            return data[-1].decode("utf-8", "replace")
    return message
