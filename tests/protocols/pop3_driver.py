"""Test helper: drives a `POP3Engine`, auto-answering decision events."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from posthouse.protocols.pop3 import engine, events
from posthouse.protocols.pop3.events import Event
from tests.protocols.feeding import FeedingDriver

HOST = "pop.example.test"
STAMP = "<1896.697170952@pop.example.test>"
PASSWORD = "secret"

MESSAGES: tuple[bytes, ...] = (
    b"From: a@example.test\r\nSubject: one\r\n\r\nline 1\r\n.dot line\r\nline 3\r\n",
    b"From: b@example.test\nSubject: two\n\nbody\n",
    b"Subject: three\r\n\r\n.\r\n..\r\nend",
)


def crlf(data: bytes) -> bytes:
    """LF -> CRLF (the form whose size LIST reports)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def maildrop(messages: Sequence[bytes] = MESSAGES) -> engine.MaildropInfo:
    sizes = [len(crlf(m)) for m in messages]
    uids = [f"uid-{n}" for n in range(1, len(messages) + 1)]
    return engine.MaildropInfo(len(messages), sum(sizes), sizes, uids)


def apop_digest(password: str = PASSWORD, stamp: str = STAMP) -> str:
    return hashlib.md5((stamp + password).encode()).hexdigest()


def settings(**overrides: Any) -> engine.POP3Settings:
    return engine.POP3Settings(hostname=HOST, **overrides)


EVENT = events.Event  # the class body's `events` is the list of events seen


@dataclass
class Driver(FeedingDriver):
    """Feeds bytes, records events and output, answers decisions by simple rules.

    Rules: password ``secret`` (or the matching APOP digest) logs in, user
    ``locked`` gets ``-ERR [IN-USE]``, anything else ``-ERR [AUTH]``; STLS is
    accepted (``stls_ok``), optionally completing the handshake (``auto_tls``);
    Retrieve streams ``messages[n-1]`` in ``chunk_size`` pieces (None: whole);
    UpdateRequested records the deletions and answers ``update_ok``.
    """

    config: engine.POP3Settings = field(default_factory=settings)
    messages: Sequence[bytes] = MESSAGES
    chunk_size: int | None = None
    auto_tls: bool = False
    stls_ok: bool = True
    update_ok: bool = True
    events: list[Event] = field(default_factory=list)
    output: bytearray = field(default_factory=bytearray)
    removed: list[tuple[int, ...]] = field(default_factory=list)

    event_type = EVENT

    def __post_init__(self) -> None:
        self.engine = engine.POP3Engine(self.config)
        self.start()

    def answer(self, event: Event) -> None:
        match event:
            case events.LoginAttempt(mechanism="APOP", user=user, digest=digest):
                if user == "locked":
                    self.engine.reject_login("maildrop locked", "IN-USE")
                elif digest == apop_digest():
                    self.engine.accept_login(maildrop(self.messages))
                else:
                    self.engine.reject_login("authentication failed")
            case events.LoginAttempt(user=user, password=password):
                if user == "locked":
                    self.engine.reject_login("maildrop locked", "IN-USE")
                elif password == PASSWORD:
                    self.engine.accept_login(maildrop(self.messages))
                else:
                    self.engine.reject_login("authentication failed")
            case events.StartTLS():
                if self.stls_ok:
                    self.engine.accept_stls()
                    if self.auto_tls:
                        self.engine.tls_started()
                else:
                    self.engine.reject_stls("TLS temporarily unavailable")
            case events.Retrieve(number=number):
                self.engine.send_message(number, self.chunks(self.messages[number - 1]))
            case events.UpdateRequested(deleted=deleted):
                self.removed.append(deleted)
                self.engine.quit_done(self.update_ok)
            case _:
                pass

    def chunks(self, data: bytes) -> list[bytes]:
        size = self.chunk_size or max(len(data), 1)
        return [data[i : i + size] for i in range(0, len(data), size)]

    # -- inspection ----------------------------------------------------------

    def statuses(self) -> list[str]:
        """The status-line starts (+OK / -ERR / +) in the output since the last take()."""
        return [
            line.split(" ")[0]
            for line in self.take().split("\r\n")
            if line.startswith(("+OK", "-ERR", "+ "))
        ]

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]


def fresh(**overrides: Any) -> Driver:
    """A driver past the greeting (output taken), plaintext logins allowed by default."""
    overrides.setdefault("plaintext_login_allowed", True)
    driver = Driver(settings(**overrides))
    driver.take()
    return driver


def logged_in(messages: Sequence[bytes] = MESSAGES, **overrides: Any) -> Driver:
    """A driver in TRANSACTION state (USER/PASS done, output and events cleared)."""
    overrides.setdefault("plaintext_login_allowed", True)
    driver = Driver(settings(**overrides), messages=messages)
    driver.feed(f"USER alice\r\nPASS {PASSWORD}\r\n")
    assert driver.engine.state is engine.State.TRANSACTION, driver.take()
    driver.take()
    driver.events.clear()
    return driver
