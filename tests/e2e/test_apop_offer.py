"""APOP is offered only where it can work (``[pop3] apop = "auto"``, the default).

A client that tries APOP whenever the greeting carries a timestamp would fail for every
user while nobody has the apop-mailpass type; so the timestamp appears only once some
user has it, without restarting the daemon.
"""

from __future__ import annotations

import poplib
import re

from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.test_pop3 import set_type

TIMESTAMP = re.compile(rb"<[^>]+@[^>]+>")


def greeting(server: Server) -> bytes:
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    try:
        return client.getwelcome()
    finally:
        client.quit()


def test_apop_is_offered_once_a_user_can_use_it(server: Server) -> None:
    assert not TIMESTAMP.search(greeting(server))
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    client.user("alice")
    client.pass_(PASSWORD)  # USER/PASS, what a client falls back to, works
    client.quit()
    set_type(server, "bob", "apop-mailpass", "bob-apop-secret")
    assert TIMESTAMP.search(greeting(server))
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    client.apop("bob", "bob-apop-secret")
    client.quit()
    set_type(server, "bob", "pop")
    assert not TIMESTAMP.search(greeting(server))
