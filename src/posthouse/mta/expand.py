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
from typing import Protocol

from posthouse.mta.address import (
    DETAIL_DELIMITER,
    join_address,
    normalize_local,
    split_address,
    split_detail,
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
    "FileSource",
    "Refused",
    "TrustedText",
]


@dataclass(frozen=True)
class Delivery:
    """One final destination.  *sender* replaces the envelope sender when not None."""

    destination: Destination
    sender: str | None


@dataclass(frozen=True)
class ExpansionError:
    """A branch of the expansion that failed; *permanent* False means try again later.
    *sender*: the owner-LIST sender in force there, who is told of the failure."""

    address: str
    message: str
    permanent: bool
    sender: str | None = None


@dataclass(frozen=True)
class Expansion:
    deliveries: tuple[Delivery, ...]
    errors: tuple[ExpansionError, ...]


@dataclass(frozen=True)
class TrustedText:
    """A ``.forward`` or ``:include:`` file that passed the safety rules: its text, and the
    account its programs and files run as (``run_as``, see
    :class:`~posthouse.mta.destinations.ProgramDestination`)."""

    text: str
    run_as: str


@dataclass(frozen=True)
class Refused:
    """A ``.forward`` or ``:include:`` file that is not honoured, and why (already logged
    by the source).  ``temporary``: worth trying again later (an I/O error, a missing
    include file), as opposed to a file that breaks a rule."""

    reason: str
    temporary: bool = False


class FileSource(Protocol):
    """Where ``.forward`` and ``:include:`` files come from, with the safety rules applied
    (in the daemon :class:`posthouse.mta.user_files.CheckedFiles`)."""

    def read_forward(self, user: str) -> TrustedText | Refused | None:
        """*user*'s ``.forward`` (its programs and files run as *user*); None: there is
        none (or ``.forward`` files are not honoured)."""

    def read_include(self, path: Path, parent_run_as: str) -> TrustedText | Refused:
        """The include file at *path* (absolute, normalised); *parent_run_as* is who the
        file that named it runs as, which a root-owned include file keeps."""


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

    def fail(self, ctx: _Context, address: str, message: str, *, permanent: bool) -> None:
        key = (address, message, permanent)
        if key not in self.errors:
            self.errors[key] = ExpansionError(address, message, permanent, ctx.sender)


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
        files: FileSource,
        max_depth: int = 20,
        default_domain: str = "",
        relay_unknown_to: str | None = None,
    ) -> None:
        """``relay_unknown_to``: with ``forwarding = local`` ("forward all mail, including
        local domain mail", 12.2.3.2) the domain at which a name that is neither an alias
        nor a user here is handed to the relay, instead of being refused as unknown."""
        self._lookup_alias = lookup_alias
        self._is_local_domain = is_local_domain
        self._user_exists = user_exists
        self._files = files
        self._max_depth = max_depth
        self._default_domain = default_domain.lower()
        self._relay_unknown_to = relay_unknown_to

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
            run.fail(ctx, address, "empty recipient address", permanent=True)
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
        written, domain = split_address(entry)
        if written and domain and not self._is_local_domain(domain):
            return True  # another host's address, whatever its local part looks like
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
        return (
            self._user_exists(key)
            or self._detailed_user(local) is not None
            or self._relay_unknown_to is not None
        )

    # -- expansion ------------------------------------------------------------------

    def _entry(self, entry: str, ctx: _Context, run: _Run) -> None:
        if not ctx.trusted and not entry.startswith("\\"):
            # From the envelope, an address at another host is only that, whatever its
            # local part looks like ("|x"@host and |x@host are both valid RFC 5321).
            written, domain = split_address(entry)
            if written and domain and not self._is_local_domain(domain):
                run.deliver(RemoteAddress(join_address(unquote_local(written), domain)), ctx)
                return
        if entry.startswith("|"):
            if not ctx.trusted:
                run.fail(ctx, entry, "cannot mail directly to programs", permanent=True)
            else:
                run.deliver(ProgramDestination(entry[1:].strip(), ctx.owner, ctx.run_as), ctx)
            return
        if entry.startswith("/"):
            if not ctx.trusted:
                run.fail(ctx, entry, "cannot mail directly to files", permanent=True)
            else:
                run.deliver(FileDestination(entry, ctx.owner, ctx.run_as), ctx)
            return
        if entry[: len(INCLUDE_PREFIX)].lower() == INCLUDE_PREFIX:
            if not ctx.trusted:
                run.fail(ctx, entry, "cannot mail directly to :include: files", permanent=True)
            else:
                self._include(entry, entry[len(INCLUDE_PREFIX) :].strip(), ctx, run)
            return
        bypass = entry.startswith("\\")
        written, domain = split_address(entry[1:] if bypass else entry)
        local = unquote_local(written)
        if domain and not self._is_local_domain(domain):
            if not written:  # ""@host is a mailbox (RFC 5321 §4.1.2), @host is not
                run.fail(ctx, entry, "empty local part", permanent=True)
            else:
                run.deliver(RemoteAddress(join_address(local, domain)), ctx)
            return
        if not local:
            run.fail(ctx, entry, "empty local part", permanent=True)
            return
        if local.startswith(("|", "/", "\\")) or local.lower().startswith(INCLUDE_PREFIX):
            # "|prog"@localhost and friends: never a way to reach a program.
            run.fail(ctx, entry, "invalid local part", permanent=True)
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
                run.fail(ctx, entry, _loop_message(ctx.chain, key), permanent=True)
            return
        targets = self._lookup_alias(key)
        if targets is not None:
            self._alias(entry, key, domain or ctx.domain, targets, ctx, run)
            return
        if not self._user_exists(key):
            detailed = self._detailed_user(local)
            if detailed is not None:
                run.deliver(LocalMailbox(detailed), ctx)
            else:
                self._unknown(entry, local, run, ctx)
            return
        self._forward(entry, key, ctx, run)

    def _detailed_user(self, local: str) -> str | None:
        """``user+detail`` of an existing user (no alias of that name): the mailbox
        ``user+detail``, whose detail names a folder of the user's mailbox (delivered as
        it is, without the user's ``.forward``); else None."""
        user, detail = split_detail(local)
        key = normalize_local(user)
        if detail is None or not self._user_exists(key):
            return None
        return key + DETAIL_DELIMITER + detail

    def _mailbox(self, entry: str, user: str, run: _Run, ctx: _Context) -> None:
        if self._user_exists(user):
            run.deliver(LocalMailbox(user), ctx)
        else:
            self._unknown(entry, user, run, ctx)

    def _unknown(self, entry: str, local: str, run: _Run, ctx: _Context) -> None:
        """A name that is no alias and no user here: the relay's (``relay_unknown_to``)
        or "User unknown"."""
        if self._relay_unknown_to is None:
            run.fail(ctx, entry, "User unknown", permanent=True)
        else:
            run.deliver(RemoteAddress(join_address(local, self._relay_unknown_to)), ctx)

    def _deeper(self, entry: str, ctx: _Context, run: _Run) -> bool:
        if ctx.depth >= self._max_depth:
            run.fail(
                ctx,
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
            run.fail(ctx, entry, f"alias {key!r} has no destinations", permanent=True)
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
            run.fail(ctx, entry, "include file name must be an absolute path", permanent=True)
            return
        path = Path(os.path.normpath(path_text))
        marker = INCLUDE_PREFIX + str(path)
        if marker in ctx.chain:
            run.fail(ctx, entry, _loop_message(ctx.chain, marker), permanent=True)
            return
        if not self._deeper(entry, ctx, run):
            return
        found = self._files.read_include(path, ctx.run_as)
        if isinstance(found, Refused):
            run.fail(
                ctx, entry, f"include file {path}: {found.reason}", permanent=not found.temporary
            )
            return
        try:
            targets = parse_address_list(found.text, str(path))
        except AliasSyntaxError as exc:
            # The administrator can fix the file; keep the mail queued meanwhile.
            run.fail(ctx, entry, str(exc), permanent=False)
            return
        inner = _Context(
            depth=ctx.depth + 1,
            chain=(*ctx.chain, marker),
            owner=ctx.owner,
            run_as=found.run_as,
            sender=ctx.sender,
            domain=ctx.domain,
            trusted=True,
        )
        for target in targets:
            self._entry(target, inner, run)

    def _forward(self, entry: str, user: str, ctx: _Context, run: _Run) -> None:
        found = self._files.read_forward(user)
        if found is None or (isinstance(found, Refused) and not found.temporary):
            # No .forward, or one that breaks the safety rules (logged by the source):
            # plain local delivery, as sendmail and Postfix do.
            run.deliver(LocalMailbox(user), ctx)
            return
        if isinstance(found, Refused):
            run.fail(ctx, entry, f"~{user}/.forward: {found.reason}", permanent=False)
            return
        try:
            targets = parse_address_list(found.text, f"~{user}/.forward")
        except AliasSyntaxError as exc:
            run.fail(ctx, entry, str(exc), permanent=False)
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
            run_as=found.run_as,
            sender=ctx.sender,
            domain=ctx.domain,
            trusted=True,
        )
        for target in targets:
            self._entry(target, inner, run)
