"""Mail leaves this host: several posthouse instances on loopback (queue, routing, relays)."""

from __future__ import annotations

import email
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, PYTHON, Server, wait_until

Factory = Callable[..., Server]


def submit(server: Server, sender: str, recipients: list[str], body: str) -> None:
    """Submit through the submission port, authenticated (so relaying is allowed)."""
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as client:
        client.login("alice", PASSWORD)
        refused = client.sendmail(sender, recipients, body.encode())
        assert refused == {}


def queue_files(server: Server) -> list[Path]:
    return sorted(server.queue_dir.glob("*.qf"))


RESERVED: list[socket.socket] = []


def reserve_port() -> socket.socket:
    """A loopback port bound for the whole test run and not listening yet: connections to it
    are refused (a host that is down) until a bridge is started on it with the socket itself
    (never closed and picked again, so no other process can take the port meanwhile)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    RESERVED.append(sock)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def test_client_sends_everything_through_its_server(server_factory: Factory) -> None:
    hub = server_factory(hostname="hub.example.test")
    client = server_factory(
        hostname="client1.example.test",
        mail={"role": "client", "mail_server": f"127.0.0.1:{hub.smtp_port}",
              "local_domains": ["example.test"], "host_aliases": []},
    )  # fmt: skip
    result = client.cli("sendmail", "-f", "carol@client1.example.test", "alice@example.test",
                        input="Subject: from the client\n\nvia the hub\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (stored,) = hub.wait_for_messages("alice", 1)
    assert b"via the hub" in stored
    assert client.messages("alice") == []  # the client keeps nothing for the domain
    # Mail for the client host itself stays on the client (12.1.3).
    client.cli("sendmail", "bob@client1.example.test", input="Subject: local\n\nmine\n")
    assert b"mine" in client.wait_for_messages("bob", 1)[0]


def test_server_relays_to_another_server_and_masquerades(server_factory: Factory) -> None:
    remote = server_factory(hostname="mx.remote.test", mail={"local_domains": ["remote.test"]})
    server = server_factory(
        hostname="host1.nyc.big.com",
        mail={"local_domains": ["nyc.big.com", "example.test"], "top_domain": "big.com",
              "masquerade": True},
        extra=f'\n[[route]]\ndomain = "remote.test"\nto = "127.0.0.1:{remote.smtp_port}"\n',
    )  # fmt: skip
    submit(server, "alice@host1.nyc.big.com", ["bob@remote.test"], "Subject: out\r\n\r\nhi\r\n")
    (stored,) = remote.wait_for_messages("bob", 1)
    # 12.1.2: the return address is the domain's, not the host's.
    assert stored.startswith(b"Return-Path: <alice@nyc.big.com>")
    assert b"by mx.remote.test (posthouse)" in stored
    wait_until(lambda: not queue_files(server), what="the queue to empty")

    def logged() -> bool:  # the log thread writes the line after the delivery
        log = (server.home / "server.log").read_text()
        return "mailer=smtp, relay=127.0.0.1:" in log and "stat=Sent" in log

    wait_until(logged, what="the relay's log line")


def test_cut_through_hands_the_message_over_before_the_reply(server_factory: Factory) -> None:
    remote = server_factory(hostname="mx.remote.test", mail={"local_domains": ["remote.test"]})
    server = server_factory(
        extra=f'\n[[route]]\ndomain = "remote.test"\nto = "127.0.0.1:{remote.smtp_port}"\n'
    )
    submit(server, "alice@example.test", ["bob@remote.test", "carol@example.test"],
           "Subject: straight through\r\n\r\nno queue\r\n")  # fmt: skip
    # No waiting: the 250 came after the next hop's 250 and the local mailbox's fsync.
    (relayed,) = remote.messages("bob")
    (kept,) = server.messages("carol")
    assert b"no queue" in relayed and b"no queue" in kept
    assert queue_files(server) == []

    def logged() -> bool:  # the log thread writes the line after the reply
        log = (server.home / "server.log").read_text()
        return "to=<bob@remote.test>, delay=" in log and "stat=Sent (cut-through)" in log

    wait_until(logged, what="the cut-through delivery's log line")


def test_a_next_hop_that_never_answers_gets_the_message_queued(server_factory: Factory) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (the backlog) and never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        server = server_factory(
            extra=f'\n[[route]]\ndomain = "slow.test"\nto = "127.0.0.1:{port}"\n',
            queue={"cut_through_timeout_seconds": 1.0, "command_timeout_seconds": 2.0,
                   "retry_seconds": 3600.0},
        )  # fmt: skip
        submit(server, "alice@example.test", ["bob@slow.test"], "Subject: wait\r\n\r\nx\r\n")
        (entry,) = queue_files(server)  # queued before the 250: nothing to wait for
        assert '"deferred"' in entry.read_text()
        listing = server.cli("mailq").stdout.decode()
        assert "<bob@slow.test>" in listing and "timeout" in listing


def test_a_client_outside_the_trusted_networks_cannot_relay(server_factory: Factory) -> None:
    """Other networks are trusted, not the client's (127.0.0.1): relaying is refused, local
    mail still flows, and the same client may relay once authenticated."""
    server = server_factory(mail={"trusted_networks": ["10.0.0.0/8", "2001:db8::/32"]})
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("x@remote.test")
        code, reply = client.rcpt("victim@elsewhere.test")
        assert code == 554 and reply.startswith(b"5.7.1") and b"Relay access denied" in reply
        code, reply = client.rcpt("someone@sub.example.test")  # a subdomain is elsewhere too
        assert code == 554 and reply.startswith(b"5.7.1")
        assert client.rcpt("bob@example.test")[0] == 250
        code, _ = client.data(b"Subject: local still works\r\n\r\nx\r\n")
        assert code == 250
    (stored,) = server.wait_for_messages("bob", 1)
    assert b"Subject: local still works" in stored
    assert queue_files(server) == [] or all(
        b"elsewhere.test" not in path.read_bytes() for path in queue_files(server)
    )
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as client:
        client.login("alice", PASSWORD)
        client.mail("alice@example.test")
        assert client.rcpt("friend@elsewhere.test")[0] == 250


def test_a_message_with_too_many_hops_is_refused(server: Server) -> None:
    hops = "".join(f"Received: from hop{n} by hop{n + 1}; Thu, 26 Nov 2026 00:00:00 +0000\r\n"
                   for n in range(50))  # fmt: skip
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.ehlo()
        client.mail("loop@remote.test")
        client.rcpt("bob@example.test")
        code, text = client.data((hops + "Subject: again\r\n\r\nround\r\n").encode())
    assert (code, text[:5]) == (554, b"5.4.6")
    assert b"Too many hops (51" in text
    assert server.messages("bob") == [] and queue_files(server) == []


@pytest.mark.parametrize("cut_through", ["configured", "none"])
def test_a_loop_between_two_servers_ends(server_factory: Factory, cut_through: str) -> None:
    """Two servers that route loop.test to each other: the hop count ends it.  Queued at each
    hop, the sender gets a bounce; with cut-through the refusal travels back along the
    chain of waiting sessions to the sender's own client."""
    first_socket, second_socket = reserve_port(), reserve_port()
    first_port, second_port = port_of(first_socket), port_of(second_socket)
    route = '\n[[route]]\ndomain = "loop.test"\nto = "127.0.0.1:{}"\n'
    queue = {"cut_through": cut_through}
    first = server_factory(hostname="one.example.test", mail={"trusted_networks": ["127.0.0.0/8"]},
                           smtp={"max_hops": 8}, queue=queue,
                           extra=route.format(first_port))  # fmt: skip
    second = server_factory(hostname="two.example.test", mail={"local_domains": ["two.test"],
                            "trusted_networks": ["127.0.0.0/8"]},
                            smtp={"max_hops": 8}, queue=queue,  # and sends bounces home:
                            extra=route.format(second_port) + route.format(second_port)
                            .replace("loop.test", "example.test"))  # fmt: skip
    bridges = [
        start_bridge(first_socket, second.smtp_port),
        start_bridge(second_socket, first.smtp_port),
    ]
    message = "Subject: round\r\n\r\nand round\r\n"
    try:
        if cut_through == "none":
            submit(first, "alice@example.test", ["x@loop.test"], message)
            (bounce,) = first.wait_for_messages("alice", 1)
            assert b"5.4.6" in bounce and b"Too many hops" in bounce
            assert b"Subject: round" in bounce  # the DSN carries the original headers
        else:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                submit(first, "alice@example.test", ["x@loop.test"], message)
            assert refused.value.smtp_code == 554  # each hop passed the innermost refusal back
            said = refused.value.smtp_error
            assert isinstance(said, bytes) and said.startswith(b"5.4.6 Too many hops (9 Received")
            assert b"Too many hops" in refused.value.smtp_error
            assert queue_files(first) == [] and queue_files(second) == []
    finally:
        for bridge in bridges:
            stop_bridge(bridge)
    assert second.messages("alice") == []  # nothing went round again


def test_down_host_is_deferred_then_delivered_by_sendmail_q(server_factory: Factory) -> None:
    reserved = reserve_port()
    port = port_of(reserved)
    server = server_factory(
        extra=f'\n[[route]]\ndomain = "later.test"\nto = "127.0.0.1:{port}"\n',
        queue={"retry_seconds": 3600.0},
    )
    submit(server, "alice@example.test", ["bob@later.test"], "Subject: patience\r\n\r\nx\r\n")
    wait_until(lambda: bool(queue_files(server)) and "deferred" in queue_files(server)[0]
               .read_text(), what="a deferred entry")  # fmt: skip
    listing = server.cli("mailq")
    assert listing.returncode == 0
    text = listing.stdout.decode()
    assert "Mail Queue (1 request" in text
    assert "Deferred" in text and "<bob@later.test>" in text
    # The host comes back (another posthouse on that port); the administrator runs the queue.
    later = start_on_port(server_factory, reserved, "later.test")
    result = server.cli("sendmail", "-q")
    assert result.returncode == 0, result.stderr
    assert b"1 done" in result.stdout
    assert b"patience" in later.wait_for_messages("bob", 1)[0]
    assert server.cli("mailq").stdout.strip() == b"Mail queue is empty"


def start_on_port(factory: Factory, reserved: socket.socket, domain: str) -> Server:
    server = factory(hostname=f"mx.{domain}", mail={"local_domains": [domain]},
                     extra="")  # fmt: skip
    # Point a forwarder at the reserved port: the new instance listens on a kernel-chosen
    # port, so a tiny TCP relay bridges the gap.
    bridge = start_bridge(reserved, server.smtp_port)
    server.output.append(f"bridge pid {bridge.pid}")
    BRIDGES.append(bridge)
    return server


def start_bridge(reserved: socket.socket, to_port: int) -> subprocess.Popen[str]:
    """A TCP forwarder from the reserved socket to 127.0.0.1:to_port (a separate process,
    which inherits the bound socket and listens on it)."""
    fd = reserved.fileno()
    bridge = subprocess.Popen([sys.executable, "-c", BRIDGE, str(fd), str(to_port)],
                              stdout=subprocess.PIPE, text=True, pass_fds=[fd])  # fmt: skip
    assert bridge.stdout is not None and bridge.stdout.readline().strip() == "ready"
    return bridge


def stop_bridge(bridge: subprocess.Popen[str]) -> None:
    bridge.send_signal(signal.SIGTERM)
    bridge.wait(timeout=10)
    if bridge.stdout:
        bridge.stdout.close()


BRIDGES: list[subprocess.Popen[str]] = []
BRIDGE = """
import asyncio, socket, sys
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    finally:
        w.close()
async def handle(r, w):
    r2, w2 = await asyncio.open_connection("127.0.0.1", int(sys.argv[2]))
    await asyncio.gather(pipe(r, w2), pipe(r2, w), return_exceptions=True)
async def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    server = await asyncio.start_server(handle, sock=sock)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def teardown_module() -> None:
    for bridge in BRIDGES:
        stop_bridge(bridge)
    for sock in RESERVED:
        sock.close()


def test_permanent_refusal_bounces_to_the_sender(server_factory: Factory) -> None:
    remote = server_factory(hostname="mx.remote.test", mail={"local_domains": ["remote.test"]})
    server = server_factory(  # queued first, as Postfix does: the refusal comes later
        extra=f'\n[[route]]\ndomain = "remote.test"\nto = "127.0.0.1:{remote.smtp_port}"\n',
        queue={"cut_through": "none"},
    )
    submit(server, "alice@example.test", ["nobody-there@remote.test"],
           "Subject: doomed\r\nMessage-ID: <doomed@example.test>\r\n\r\nx\r\n")  # fmt: skip
    (dsn,) = server.wait_for_messages("alice", 1)
    report = email.message_from_bytes(dsn)
    assert report.get_content_type() == "multipart/report"
    assert b"Final-Recipient: rfc822; nobody-there@remote.test" in dsn
    assert b"Status: 5.1.1" in dsn
    assert b"Message-ID: <doomed@example.test>" in dsn


def test_cut_through_passes_a_refusal_back_instead_of_bouncing(server_factory: Factory) -> None:
    """Every next hop refused for good while the client waited: the client gets the refusal
    (no bounce to send, no backscatter); a partial refusal still bounces that recipient."""
    remote = server_factory(hostname="mx.remote.test", mail={"local_domains": ["remote.test"]})
    server = server_factory(
        extra=f'\n[[route]]\ndomain = "remote.test"\nto = "127.0.0.1:{remote.smtp_port}"\n'
    )
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as client:
        client.login("alice", PASSWORD)
        try:
            client.sendmail("alice@example.test", ["nobody-there@remote.test"],
                            b"Subject: doomed\r\n\r\nx\r\n")  # fmt: skip
        except smtplib.SMTPDataError as exc:
            code, text = exc.smtp_code, exc.smtp_error
        else:
            raise AssertionError("the refusal was not passed back")
    assert isinstance(text, bytes)
    assert code == 550 and text.startswith(b"5.1.1 ")  # remote.test's own words
    assert queue_files(server) == [] and server.messages("alice") == []
    submit(server, "alice@example.test", ["bob@remote.test", "nobody-there@remote.test"],
           "Subject: half\r\n\r\nx\r\n")  # fmt: skip
    assert b"Subject: half" in remote.messages("bob")[0]
    (dsn,) = server.wait_for_messages("alice", 1)
    assert b"Final-Recipient: rfc822; nobody-there@remote.test" in dsn


def test_bounce_to_a_dead_address_ends_with_the_postmaster(server_factory: Factory) -> None:
    remote = server_factory(hostname="mx.remote.test", mail={"local_domains": ["remote.test"]})
    server = server_factory(
        extra=f'\n[[route]]\ndomain = "remote.test"\nto = "127.0.0.1:{remote.smtp_port}"\n',
        queue={"cut_through": "none"},
    )
    (server.home / "data" / "etc" / "aliases").write_text("postmaster: carol\n")
    assert server.cli("newaliases").returncode == 0
    # The sender is itself undeliverable: its bounce fails too, and the postmaster hears of
    # it once; nothing loops.
    submit(server, "ghost@remote.test", ["nobody-there@remote.test"],
           "Subject: twice doomed\r\n\r\nx\r\n")  # fmt: skip
    (notice,) = server.wait_for_messages("carol", 1)
    assert b"Final-Recipient: rfc822; ghost@remote.test" in notice
    wait_until(lambda: not queue_files(server), what="the queue to empty (no bounce loop)")
    assert len(server.messages("carol")) == 1


def test_archiving_the_queue_as_in_12_8(server_factory: Factory) -> None:
    reserved = reserve_port()
    route = f'\n[[route]]\ndomain = "later.test"\nto = "127.0.0.1:{port_of(reserved)}"\n'
    server = server_factory(extra=route, queue={"retry_seconds": 3600.0})
    users = ("alice", "bob", "carol")
    for number in range(3):
        submit(server, "alice@example.test", [f"{users[number]}@later.test"],
               f"Subject: archived {number}\r\n\r\nx\r\n")  # fmt: skip
    wait_until(lambda: len(queue_files(server)) == 3, what="three deferred messages")
    # 3-5: stop the daemon and check it is gone.
    assert server.stop() == 0
    # 6-8: move the queue aside, make a new one, mode 775.
    data = server.home / "data"
    old = data / "old.mqueue"
    (data / "queue").rename(old)
    (data / "queue").mkdir()
    (data / "queue").chmod(0o775)
    # 9: restart; the new queue is empty and mail flows.
    restarted = server_factory(home=server.home, extra=route, queue={"retry_seconds": 3600.0})
    assert restarted.cli("mailq").stdout.strip() == b"Mail queue is empty"
    # The major host comes back; run the old queue with -oQ.
    later = start_on_port(server_factory, reserved, "later.test")
    result = restarted.cli("sendmail", f"-oQ{old}", "-q")
    assert result.returncode == 0, result.stderr
    assert b"3 done" in result.stdout
    for user in users:
        assert b"archived" in later.wait_for_messages(user, 1)[0]
    assert not list(old.glob("*.qf"))
    shutil.rmtree(old)  # "When the queue is empty, remove it"


def test_mailstats_counts_and_resets_by_truncation(server: Server) -> None:
    for _ in range(3):
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
            client.sendmail("a@remote.test", ["alice@example.test"], b"Subject: s\r\n\r\nx\r\n")
    server.wait_for_messages("alice", 3)
    stats_file = server.home / "data" / "etc" / "statistics"

    def row(name: str) -> list[str]:
        out = server.cli("mailstats").stdout.decode()
        return next((line.split() for line in out.splitlines() if line.endswith(name)), [])

    wait_until(lambda: row("esmtp")[1:2] == ["3"], what="3 messages received by esmtp")
    wait_until(lambda: row("local")[3:4] == ["3"], what="3 messages sent by local")
    stats_file.write_bytes(b"")  # cp /dev/null statistics
    assert row("esmtp") == []
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.sendmail("a@remote.test", ["alice@example.test"], b"Subject: s\r\n\r\nx\r\n")
    wait_until(lambda: row("esmtp")[1:2] == ["1"], what="counting again from zero")


def test_uucp_and_decnet_gateways_direct_routing(server_factory: Factory, safe_dir: Path) -> None:
    recorded = safe_dir / "out" / "gateway.log"
    recorder = safe_dir / "gateway.py"
    recorder.write_text(
        "import os, sys\n"
        f"with open({str(recorded)!r}, 'a') as f:\n"
        "    f.write(os.environ['PROTOCOL'] + ' ' + os.environ['NATIVE'] + ' '"
        " + os.environ['NATIVE_SENDER'] + ' ' + os.environ['NODE'] + ' '"
        " + os.environ['NATIVE_USER'] + ' ' + str(len(sys.stdin.read())) + '\\n')\n"
    )
    transport = f"{PYTHON} {recorder}"
    server = server_factory(
        mail={"top_domain": "big.com", "local_domains": ["example.test"]},
        extra=(
            f'\n[[pseudodomain]]\nprotocol = "uucp"\nrouting = "direct"\n'
            f'transport = "{transport}"\n'
            f'\n[[pseudodomain]]\nprotocol = "decnet"\nname = "DNET"\nrouting = "direct"\n'
            f'transport = "{transport}"\n'
        ),
    )
    submit(server, "alice@example.test", ["joe@vax1.DNET.big.com", "mary@ucbvax.UUCP"],
           "Subject: gateways\r\n\r\nhello\r\n")  # fmt: skip
    wait_until(lambda: recorded.exists() and len(recorded.read_text().splitlines()) == 2,
               what="both gateway deliveries")  # fmt: skip
    lines = sorted(recorded.read_text().splitlines())
    assert lines[0].startswith("decnet vax1::joe alice@example.test vax1 joe")
    assert lines[1].startswith("uucp ucbvax!mary alice@example.test ucbvax mary")
    # The other direction: a native address given to sendmail maps into the pseudodomain
    # (shown by -bv in its Internet form, never echoed as given) ...
    result = server.cli("sendmail", "-bv", "vax2::fred", "host2!sam")
    shown = result.stdout.decode()
    assert "fred@vax2.DNET.big.com... deliverable" in shown, shown
    assert "sam@host2.UUCP... deliverable" in shown, shown
    assert "vax2::fred" not in shown and "host2!sam" not in shown
    # ... and is delivered there: through the gateway of its protocol, to its node and user
    # (unmapped, "vax2::fred" would be an unknown local user and bounce).
    result = server.cli("sendmail", "-f", "alice@example.test", "vax2::fred", "host2!sam",
                        input="Subject: native\n\nback\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    wait_until(lambda: len(recorded.read_text().splitlines()) == 4,
               what="both native deliveries")  # fmt: skip
    lines = sorted(recorded.read_text().splitlines())
    assert [line.split()[:5] for line in lines] == [
        ["decnet", "vax1::joe", "alice@example.test", "vax1", "joe"],
        ["decnet", "vax2::fred", "alice@example.test", "vax2", "fred"],
        ["uucp", "host2!sam", "alice@example.test", "host2", "sam"],
        ["uucp", "ucbvax!mary", "alice@example.test", "ucbvax", "mary"],
    ]
    assert server.messages("alice") == []  # no bounce: both were delivered


FORWARDING_CASES = {
    # mode: {recipient domain: goes to the relay?}
    "none": {"outside.test": False, "sub.big.com": False, "nyc.big.com": False},
    "internet": {"outside.test": True, "sub.big.com": False, "nyc.big.com": False},
    "nonlocal": {"outside.test": True, "sub.big.com": True, "nyc.big.com": False},
    "local": {"outside.test": True, "sub.big.com": True, "nyc.big.com": True},
}


def test_forwarding_modes_route_as_the_chapter_says(server_factory: Factory) -> None:
    relay = server_factory(
        hostname="relay.big.com",
        mail={"local_domains": ["outside.test", "sub.big.com", "nyc.big.com"]},
    )
    for mode, expected in FORWARDING_CASES.items():
        mail: dict[str, object] = {
            "top_domain": "big.com",
            "local_domains": ["nyc.big.com"],
            "forwarding": mode,
        }
        if mode != "none":
            mail["relay_host"] = f"127.0.0.1:{relay.smtp_port}"
        server = server_factory(hostname="host1.nyc.big.com", mail=mail,
                                queue={"retry_seconds": 3600.0})  # fmt: skip
        for number, (domain, to_relay) in enumerate(expected.items()):
            user = ("alice", "bob", "carol")[number]
            tag = f"{mode}-{domain}"
            before = len(relay.messages(user))
            submit(server, "alice@nyc.big.com", [f"{user}@{domain}"],
                   f"Subject: {tag}\r\n\r\n{tag}\r\n")  # fmt: skip
            if to_relay:
                got = relay.wait_for_messages(user, before + 1)
                assert tag.encode() in got[-1], (mode, domain)
            elif domain == "nyc.big.com":
                assert tag.encode() in server.wait_for_messages(user, 1)[-1], (mode, domain)
            else:
                # Direct delivery needs DNS for that domain, which tests never reach: the
                # message waits in the queue instead of going to the relay.
                queue_dir = server.queue_dir
                wait_until(lambda tag=tag, queue_dir=queue_dir: any(
                           tag in p.read_text(errors="replace") for p in queue_dir.glob("*.qf")),
                           what=f"{tag} queued")  # fmt: skip
                assert all(tag.encode() not in m for m in relay.messages(user)), (mode, domain)
        assert server.stop() == 0


def test_corrupt_queue_entry_is_reported_and_left_alone(server_factory: Factory) -> None:
    reserved = reserve_port()
    port = port_of(reserved)
    server = server_factory(extra=f'\n[[route]]\ndomain = "later.test"\nto = "127.0.0.1:{port}"\n',
                            queue={"retry_seconds": 3600.0})  # fmt: skip
    submit(server, "alice@example.test", ["bob@later.test"], "Subject: one\r\n\r\nx\r\n")
    submit(server, "alice@example.test", ["carol@later.test"], "Subject: two\r\n\r\nx\r\n")
    wait_until(lambda: len(queue_files(server)) == 2, what="two deferred messages")
    broken, healthy = queue_files(server)
    survivor = "carol" if "carol@" in healthy.read_text() else "bob"
    broken.write_text('{"v": 1, "truncated')
    listing = server.cli("mailq").stdout.decode()
    assert "corrupt control file" in listing
    later = start_on_port(server_factory, reserved, "later.test")
    result = server.cli("sendmail", "-q")
    assert result.returncode == 0, result.stderr
    assert b"1 damaged" in result.stdout
    assert b"Subject:" in later.wait_for_messages(survivor, 1)[0]  # the rest flows
    assert broken.exists()  # never deleted by posthouse
    assert "corrupt control file" in server.cli("mailq").stdout.decode()


def test_aliases_send_users_mail_to_their_client_hosts(server_factory: Factory) -> None:
    # 12.1.3: the server takes mail for the domain and aliases send each user's mail on
    # to the client host where that user reads it ("username1: username1@client1").
    client = server_factory(hostname="client1.example.test",
                            mail={"local_domains": [], "host_aliases": []})  # fmt: skip
    server = server_factory(
        hostname="mail.example.test",
        extra=f'\n[[route]]\ndomain = "client1.example.test"\n'
        f'to = "127.0.0.1:{client.smtp_port}"\n',
    )
    (server.home / "data" / "etc" / "aliases").write_text("alice: alice@client1.example.test\n")
    assert server.cli("newaliases").returncode == 0
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.sendmail(
            "x@remote.test", ["alice@example.test"], b"Subject: to the client\r\n\r\nx\r\n"
        )
    (stored,) = client.wait_for_messages("alice", 1)
    assert b"Subject: to the client" in stored
    assert server.messages("alice") == []


def test_gateway_with_relay_routing(server_factory: Factory) -> None:
    gateway = server_factory(hostname="gw.big.com", mail={"local_domains": ["ucbvax.UUCP"]})
    server = server_factory(
        mail={"top_domain": "big.com"},
        extra=f'\n[[pseudodomain]]\nprotocol = "uucp"\nrouting = "relay"\n'
        f'relay_host = "127.0.0.1:{gateway.smtp_port}"\n',
    )
    # The native form given to sendmail maps into the pseudodomain and goes to the relay.
    result = server.cli("sendmail", "-f", "alice@example.test", "ucbvax!bob",
                        input="Subject: via the uucp relay\n\nx\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (stored,) = gateway.wait_for_messages("bob", 1)
    assert b"Subject: via the uucp relay" in stored
