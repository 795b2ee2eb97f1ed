"""Helpers for the IMAP store tests: a store in a temporary directory, messages."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from posthouse.store.backend import NewMessage
from posthouse.store.fs.backend import FsBackend
from posthouse.store.fs.layout import FsLayout
from posthouse.store.policy import CyrusAccess
from posthouse.store.service import MailStore

T = TypeVar("T")
WHEN = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def layout(root: Path) -> FsLayout:
    return FsLayout(root / "imap", {"default": root / "partition-default"})


def open_store(root: Path, *, admins: frozenset[str] = frozenset({"cyrus"})) -> MailStore:
    return MailStore(FsBackend(layout(root)), access=CyrusAccess(admins=admins))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def message(n: int, body: bytes = b"") -> NewMessage:
    content = b"From: bob@example.org\r\nSubject: message %d\r\n\r\nbody %d\r\n" % (n, n) + body
    return NewMessage(content, WHEN)
