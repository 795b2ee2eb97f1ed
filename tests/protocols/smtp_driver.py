"""Test helper: drives an `SMTPEngine`, auto-answering decision events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from posthouse.protocols.smtp import engine, events, replies
from posthouse.protocols.smtp.replies import Reply
from tests.protocols.feeding import FeedingDriver

HOST = "mx.example.test"


def settings(**overrides: Any) -> engine.SMTPSettings:
    return engine.SMTPSettings(hostname=HOST, **overrides)


EVENT = events.Event  # the class body's `events` is the list of events seen


@dataclass
class Driver(FeedingDriver):
    """Feeds bytes, records events and output, answers decisions by simple rules.

    Rules: sender ``blocked@...`` -> 550; recipient ``unknown@...`` -> 550,
    ``later@...`` -> 450; password "secret" -> 235 else 535; STARTTLS -> 220
    (``tls_reply``), optionally completing the handshake (``auto_tls``);
    MessageEnd -> 250 queued (LMTP: per recipient, ``full@...`` -> 452).
    """

    config: engine.SMTPSettings = field(default_factory=settings)
    auto_tls: bool = False
    tls_reply: Reply = field(default_factory=replies.starttls_ready)
    events: list[events.Event] = field(default_factory=list)
    output: bytearray = field(default_factory=bytearray)
    recipients: list[str] = field(default_factory=list)
    queued: int = 0

    event_type = EVENT

    def __post_init__(self) -> None:
        self.engine = engine.SMTPEngine(self.config)
        self.start()

    def answer(self, event: events.Event) -> None:
        match event:
            case events.MailFrom(address=address):
                self.recipients = []
                if address.startswith("blocked@"):
                    self.engine.respond(Reply.of(550, "5.7.1", "Sender blocked"))
                else:
                    self.engine.respond(replies.mail_ok())
            case events.RcptTo(address=address):
                if address.startswith("unknown@"):
                    self.engine.respond(replies.no_such_user())
                elif address.startswith("later@"):
                    self.engine.respond(Reply.of(450, "4.2.0", "Try later"))
                else:
                    self.recipients.append(address)
                    self.engine.respond(replies.rcpt_ok())
            case events.MessageEnd():
                self.queued += 1
                if self.config.mode == "lmtp":
                    self.engine.respond_per_recipient(
                        [
                            Reply.of(452, "4.2.2", f"<{r}> mailbox full")
                            if r.startswith("full@")
                            else Reply.of(250, "2.0.0", f"<{r}> delivered")
                            for r in self.recipients
                        ]
                    )
                else:
                    self.engine.respond(replies.queued(f"Q{self.queued}"))
            case events.AuthAttempt(password=password):
                ok = password == "secret"
                self.engine.respond(replies.auth_ok() if ok else replies.auth_failed())
            case events.StartTLS():
                self.engine.respond(self.tls_reply)
                if self.auto_tls and self.tls_reply.positive:
                    self.engine.tls_started()
            case _:
                pass

    # -- inspection ----------------------------------------------------------

    def codes(self) -> list[str]:
        """Reply lines' code+separator of the output since the last take()."""
        return [line[:4] for line in self.take().split("\r\n") if line]

    def content(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, events.MessageData))

    def kinds(self) -> list[str]:
        """Event class names with MessageData runs merged."""
        names: list[str] = []
        for event in self.events:
            name = type(event).__name__
            if not (name == "MessageData" and names and names[-1] == name):
                names.append(name)
        return names


def normalized(evs: Iterable[events.Event]) -> list[Any]:
    """Events with adjacent MessageData merged (chunking-independent form)."""
    out: list[Any] = []
    for event in evs:
        previous = out[-1] if out else None
        if isinstance(event, events.MessageData) and isinstance(previous, events.MessageData):
            out[-1] = events.MessageData(previous.data + event.data)
            continue
        if isinstance(event, events.MailFrom | events.RcptTo):
            out.append((type(event).__name__, event.address, dict(event.params)))
            continue
        out.append(event)
    return out


def greeted(**overrides: Any) -> Driver:
    """A driver whose session already did EHLO (output taken)."""
    driver = Driver(settings(**overrides))
    verb = "LHLO" if driver.config.mode == "lmtp" else "EHLO"
    driver.feed(f"{verb} client.test\r\n")
    driver.take()
    driver.events.clear()
    return driver


def in_transaction(rcpts: Iterable[str] = ("rcpt@example.test",), **overrides: Any) -> Driver:
    driver = greeted(**overrides)
    driver.feed("MAIL FROM:<sender@example.test>\r\n")
    for rcpt in rcpts:
        driver.feed(f"RCPT TO:<{rcpt}>\r\n")
    driver.take()
    driver.events.clear()
    return driver
