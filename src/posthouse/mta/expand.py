"""Recipient expansion: resolve an envelope recipient to its final destinations.

This module owns sendmail's aliasing rules: alias lookup for local addresses,
``:include:`` files (read at expansion time), ``~/.forward`` files, the
``\\user`` escape, self-references, loop and depth detection, duplicate
suppression and the ``owner-LIST`` envelope sender rule.  All I/O goes through
the callables given to :class:`Expander`, so the rules are testable without a
real system.

Programs (``|cmd``), files (``/path``) and ``:include:`` are only honoured when
they come from an alias, an include file or a ``.forward`` file — never
directly from an envelope recipient, and never from an address's local part,
quoted or not: a remote address keeps its local part quoted as RFC 5321 requires
(:class:`~posthouse.mta.destinations.RemoteAddress`), so ``"|cmd"@example.com``
stays a mailbox at example.com.  Each destination is typed
(:mod:`posthouse.mta.destinations`); programs and files carry the account they
run as: the default user for the aliases file, the user for a ``.forward``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from posthouse.mta.address import (
    join_address,
    normalize_local,
    split_address,
    strip_angle_brackets,
    unquote_local,
)
from posthouse.mta.aliases import INCLUDE_PREFIX, AliasSyntaxError, parse_address_list
from posthouse.mta.destinations import (
    Destination,
    FileDestination,
    LocalMailbox,
    ProgramDestination,
    RemoteAddress,
)

__all__ = [
    "Delivery",
    "Expander",
    "Expansion",
    "ExpansionError",
    "read_text",
]


@dataclass(frozen=True)
class Delivery:
    """One final destination.  *sender* replaces the envelope sender when not None."""

    destination: Destination
    sender: str | None


@dataclass(frozen=True)
class ExpansionError:
    """A branch of the expansion that failed; *permanent* False means try again later."""

    address: str
    message: str
    permanent: bool


@dataclass(frozen=True)
class Expansion:
    deliveries: tuple[Delivery, ...]
    errors: tuple[ExpansionError, ...]


def read_text(path: Path) -> str:
    """Default include/.forward reader: the whole file as UTF-8."""
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class _Context:
    """Where we are in the expansion tree."""

    depth: int
    chain: tuple[str, ...]  # alias names / users with .forward / ":include:PATH" being expanded
    owner: str  # alias or user that controls programs and files ("" at the top level)
    run_as: str  # account programs and files run as ("": the default user)
    sender: str | None  # owner-LIST sender in force
    domain: str  # local domain to qualify owner-LIST addresses with
    trusted: bool  # may programs, files and :include: appear here?


class _Run:
    """Accumulates the result of one :meth:`Expander.expand` call."""

    def __init__(self) -> None:
        self.deliveries: dict[Destination, Delivery] = {}
        self.errors: dict[tuple[str, str, bool], ExpansionError] = {}

    def deliver(self, destination: Destination, ctx: _Context) -> None:
        if destination not in self.deliveries:
            self.deliveries[destination] = Delivery(destination, ctx.sender)

    def fail(self, address: str, message: str, *, permanent: bool) -> None:
        key = (address, message, permanent)
        if key not in self.errors:
            self.errors[key] = ExpansionError(address, message, permanent)


def _loop_message(chain: tuple[str, ...], repeated: str) -> str:
    start = chain.index(repeated)
    return "alias loop: " + " -> ".join((*chain[start:], repeated))


class Expander:
    """Expands envelope recipients using aliases, include files and ``.forward`` files."""

    def __init__(
        self,
        *,
        lookup_alias: Callable[[str], tuple[str, ...] | None],
        is_local_domain: Callable[[str], bool],
        user_exists: Callable[[str], bool],
        forward_file: Callable[[str], Path | None],
        max_depth: int = 20,
        include_reader: Callable[[Path], str] = read_text,
        default_domain: str = "",
    ) -> None:
        self._lookup_alias = lookup_alias
        self._is_local_domain = is_local_domain
        self._user_exists = user_exists
        self._forward_file = forward_file
        self._max_depth = max_depth
        self._read = include_reader
        self._default_domain = default_domain.lower()

    # -- public API -----------------------------------------------------------------

    def expand(self, address: str) -> Expansion:
        """Resolve *address* to deliveries and per-branch errors."""
        run = _Run()
        ctx = _Context(
            depth=0,
            chain=(),
            owner="",
            run_as="",
            sender=None,
            domain=self._default_domain,
            trusted=False,
        )
        entry = strip_angle_brackets(address)
        if not entry:
            run.fail(address, "empty recipient address", permanent=True)
        else:
            self._entry(entry, ctx, run)
        return Expansion(tuple(run.deliveries.values()), tuple(run.errors.values()))

    def is_local_user(self, user: str) -> bool:
        """Whether *user* (lower-case) has a mailbox on this host."""
        return self._user_exists(user)

    def is_deliverable(self, address: str) -> bool:
        """Cheap RCPT-time check: remote domain, local alias or existing local user.

        Nothing is read or executed: include files and ``.forward`` files are not
        opened, so their problems surface later, at delivery time.
        """
        entry = strip_angle_brackets(address)
        if not entry or entry.startswith(("|", "/")) or entry.lower().startswith(INCLUDE_PREFIX):
            return False
        bypass = entry.startswith("\\")
        if bypass:
            entry = entry[1:]
        local, domain = split_address(entry)
        local = unquote_local(local)
        if domain and not self._is_local_domain(domain):
            return bool(local)
        if not local or local.startswith(("|", "/", "\\")):
            return False
        key = normalize_local(local)
        if not bypass and self._lookup_alias(key) is not None:
            return True
        return self._user_exists(key)

    # -- expansion ------------------------------------------------------------------

    def _entry(self, entry: str, ctx: _Context, run: _Run) -> None:
        if entry.startswith("|"):
            if not ctx.trusted:
                run.fail(entry, "cannot mail directly to programs", permanent=True)
            else:
                run.deliver(ProgramDestination(entry[1:].strip(), ctx.owner, ctx.run_as), ctx)
            return
        if entry.startswith("/"):
            if not ctx.trusted:
                run.fail(entry, "cannot mail directly to files", permanent=True)
            else:
                run.deliver(FileDestination(entry, ctx.owner, ctx.run_as), ctx)
            return
        if entry[: len(INCLUDE_PREFIX)].lower() == INCLUDE_PREFIX:
            if not ctx.trusted:
                run.fail(entry, "cannot mail directly to :include: files", permanent=True)
            else:
                self._include(entry, entry[len(INCLUDE_PREFIX) :].strip(), ctx, run)
            return
        bypass = entry.startswith("\\")
        written, domain = split_address(entry[1:] if bypass else entry)
        local = unquote_local(written)
        if domain and not self._is_local_domain(domain):
            if not written:  # ""@host is a mailbox (RFC 5321 §4.1.2), @host is not
                run.fail(entry, "empty local part", permanent=True)
            else:
                run.deliver(RemoteAddress(join_address(local, domain)), ctx)
            return
        if not local:
            run.fail(entry, "empty local part", permanent=True)
            return
        if local.startswith(("|", "/", "\\")) or local.lower().startswith(INCLUDE_PREFIX):
            # "|prog"@localhost and friends: never a way to reach a program.
            run.fail(entry, "invalid local part", permanent=True)
            return
        key = normalize_local(local)
        if bypass:
            self._mailbox(entry, key, run, ctx)
            return
        if key in ctx.chain:
            if ctx.owner == key and self._user_exists(key):
                # Self-reference ("a: a, b", also via a's include file, or "bob" in
                # bob's .forward): the mailbox itself.
                run.deliver(LocalMailbox(key), ctx)
            else:
                run.fail(entry, _loop_message(ctx.chain, key), permanent=True)
            return
        targets = self._lookup_alias(key)
        if targets is not None:
            self._alias(entry, key, domain or ctx.domain, targets, ctx, run)
            return
        if not self._user_exists(key):
            run.fail(entry, "User unknown", permanent=True)
            return
        forward = self._forward_file(key)
        if forward is None:
            run.deliver(LocalMailbox(key), ctx)
            return
        self._forward(entry, key, forward, ctx, run)

    def _mailbox(self, entry: str, user: str, run: _Run, ctx: _Context) -> None:
        if self._user_exists(user):
            run.deliver(LocalMailbox(user), ctx)
        else:
            run.fail(entry, "User unknown", permanent=True)

    def _deeper(self, entry: str, ctx: _Context, run: _Run) -> bool:
        if ctx.depth >= self._max_depth:
            run.fail(
                entry,
                f"aliasing/forwarding nested too deeply (more than {self._max_depth} levels)",
                permanent=True,
            )
            return False
        return True

    def _alias(
        self,
        entry: str,
        key: str,
        domain: str,
        targets: tuple[str, ...],
        ctx: _Context,
        run: _Run,
    ) -> None:
        if not targets:
            run.fail(entry, f"alias {key!r} has no destinations", permanent=True)
            return
        if not self._deeper(entry, ctx, run):
            return
        sender = ctx.sender
        owner_alias = f"owner-{key}"
        if self._lookup_alias(owner_alias) is not None:
            sender = f"{owner_alias}@{domain}" if domain else owner_alias
        inner = _Context(
            depth=ctx.depth + 1,
            chain=(*ctx.chain, key),
            owner=key,
            run_as="",
            sender=sender,
            domain=domain,
            trusted=True,
        )
        for target in targets:
            self._entry(target, inner, run)

    def _include(self, entry: str, path_text: str, ctx: _Context, run: _Run) -> None:
        if not os.path.isabs(path_text):
            run.fail(entry, "include file name must be an absolute path", permanent=True)
            return
        path = Path(os.path.normpath(path_text))
        marker = INCLUDE_PREFIX + str(path)
        if marker in ctx.chain:
            run.fail(entry, _loop_message(ctx.chain, marker), permanent=True)
            return
        if not self._deeper(entry, ctx, run):
            return
        try:
            text = self._read(path)
        except FileNotFoundError:
            run.fail(entry, f"include file {path} does not exist", permanent=False)
            return
        except (OSError, UnicodeDecodeError) as exc:
            run.fail(entry, f"cannot read include file {path}: {exc}", permanent=False)
            return
        try:
            targets = parse_address_list(text, str(path))
        except AliasSyntaxError as exc:
            # The administrator can fix the file; keep the mail queued meanwhile.
            run.fail(entry, str(exc), permanent=False)
            return
        inner = _Context(
            depth=ctx.depth + 1,
            chain=(*ctx.chain, marker),
            owner=ctx.owner,
            run_as=ctx.run_as,
            sender=ctx.sender,
            domain=ctx.domain,
            trusted=True,
        )
        for target in targets:
            self._entry(target, inner, run)

    def _forward(self, entry: str, user: str, forward: Path, ctx: _Context, run: _Run) -> None:
        try:
            text = self._read(forward)
        except (FileNotFoundError, PermissionError):
            # No usable .forward: plain local delivery, as sendmail does.
            run.deliver(LocalMailbox(user), ctx)
            return
        except (OSError, UnicodeDecodeError) as exc:
            run.fail(entry, f"cannot read {forward}: {exc}", permanent=False)
            return
        try:
            targets = parse_address_list(text, str(forward))
        except AliasSyntaxError as exc:
            run.fail(entry, str(exc), permanent=False)
            return
        if not targets:
            run.deliver(LocalMailbox(user), ctx)
            return
        if not self._deeper(entry, ctx, run):
            return
        inner = _Context(
            depth=ctx.depth + 1,
            chain=(*ctx.chain, user),
            owner=user,
            run_as=user,
            sender=ctx.sender,
            domain=ctx.domain,
            trusted=True,
        )
        for target in targets:
            self._entry(target, inner, run)
