"""Addresses as the chapter wants them, several instances on loopback (12.1.2, 12.1.6, 12.2.3.2).

Qualification (sendmail's ``$j``), domain-based addresses (masquerading), forwarding =
local, and native DECnet addresses typed on a client reaching the gateway's transport.
"""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import trustme

from posthouse.auth.users import UserDatabase
from tests.e2e.conftest import PASSWORD, PYTHON, Server, wait_until, write_config

Factory = Callable[..., Server]


def route_to(server: Server, domain: str) -> str:
    return f'\n[[route]]\ndomain = "{domain}"\nto = "127.0.0.1:{server.smtp_port}"\n'


def header_section(message: bytes) -> bytes:
    return message.split(b"\n\n", 1)[0] + b"\n"


def test_sendmail_f_joe_and_from_joe_arrive_qualified(server_factory: Factory) -> None:
    remote = server_factory(hostname="mx.remote.test", mail={"local_domains": ["remote.test"]})
    host = server_factory(hostname="host1.nyc.big.com",
                          mail={"local_domains": [], "host_aliases": []},
                          extra=route_to(remote, "remote.test"))  # fmt: skip
    # What a script or mail(1) writes: a bare name in -f and in the address fields.
    message = (
        "From: joe\nTo: bob@remote.test, carl\nCc: Smith <VAXA::SMITH>\n"
        "Subject: =?utf-8?q?qualifi=C3=A9?=\nX-Keep: joe, carl\n\nbody from joe\n"
    )
    done = host.cli("sendmail", "-f", "joe", "bob@remote.test", input=message)
    assert done.returncode == 0, done.stderr
    (stored,) = remote.wait_for_messages("bob", 1)
    head = header_section(stored)
    assert head.startswith(b"Return-Path: <joe@host1.nyc.big.com>\n")
    assert b"\nFrom: joe@host1.nyc.big.com\n" in head
    assert b"\nTo: bob@remote.test, carl@host1.nyc.big.com\n" in head
    assert b"\nCc: Smith <SMITH@VAXA.DNET>\n" in head  # no more VAXA::SMITH leaving the host
    # Everything else exactly as written.
    assert b"\nSubject: =?utf-8?q?qualifi=C3=A9?=\nX-Keep: joe, carl\n" in head
    assert stored.endswith(b"\n\nbody from joe\n")


def test_submission_qualifies_and_mail_from_outside_is_left_alone(server_factory: Factory) -> None:
    host = server_factory(hostname="host1.nyc.big.com")
    # An authenticated client is this host's: its bare names are this host's users.
    with smtplib.SMTP("127.0.0.1", host.ports["submission"], timeout=30) as client:
        client.login("alice", PASSWORD)
        client.sendmail("alice@example.test", ["bob@example.test"],
                        b"From: alice\r\nTo: bob\r\nSubject: one\r\n\r\nx\r\n")  # fmt: skip
    (first,) = host.wait_for_messages("bob", 1)
    assert b"\nFrom: alice@host1.nyc.big.com\nTo: bob@host1.nyc.big.com\n" in first
    # An unauthenticated client outside the trusted networks keeps what it wrote.
    with smtplib.SMTP("127.0.0.1", host.smtp_port, timeout=30) as outsider:
        outsider.sendmail("x@outside.test", ["bob@example.test"],
                          b"From: alice\r\nTo: bob\r\nSubject: two\r\n\r\nx\r\n")  # fmt: skip
    second = host.wait_for_messages("bob", 2)[1]
    assert b"\nFrom: alice\nTo: bob\nSubject: two\n" in second


def test_masquerading_rewrites_headers_and_envelope(server_factory: Factory) -> None:
    remote = server_factory(hostname="mx.remote.test", mail={"local_domains": ["remote.test"]})
    # 12.1.2 with no local domains listed: host1.nyc.big.com's mail leaves as nyc.big.com.
    host = server_factory(
        hostname="host1.nyc.big.com",
        mail={"top_domain": "big.com", "local_domains": [], "host_aliases": [],
              "masquerade": True},
        extra=route_to(remote, "remote.test")
        + '\n[[pseudodomain]]\nprotocol = "decnet"\nname = "DNET"\n',
    )  # fmt: skip
    message = (
        'From: "Joe Q. Public" <joe> (work)\n'
        "Sender: joe@host1.nyc.big.com\n"
        "Reply-To: =?utf-8?q?J=C3=B6e?= <joe@localhost>,\n VAXA::SMITH\n"
        "To: Friends: bob@remote.test, ann@host2.nyc.big.com;\n"
        "Subject: domain-based\n\nhello\n"
    )
    done = host.cli("sendmail", "-f", "joe", "bob@remote.test", input=message)
    assert done.returncode == 0, done.stderr
    (stored,) = remote.wait_for_messages("bob", 1)
    head = header_section(stored)
    assert head.startswith(b"Return-Path: <joe@nyc.big.com>\n")
    assert b'\nFrom: "Joe Q. Public" <joe@nyc.big.com> (work)\n' in head
    assert b"\nSender: joe@nyc.big.com\n" in head
    assert (
        b"\nReply-To: =?utf-8?q?J=C3=B6e?= <joe@nyc.big.com>,\n SMITH@VAXA.DNET.big.com\n" in head
    )
    # Recipient fields are not senders: a typed host address stays.
    assert b"\nTo: Friends: bob@remote.test, ann@host2.nyc.big.com;\n" in head
    # root keeps naming the machine (the exceptions list: users_exempt).
    done = host.cli("sendmail", "-f", "root", "bob@remote.test",
                    input="From: root\nSubject: from root\n\nx\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    second = remote.wait_for_messages("bob", 2)[1]
    assert second.startswith(b"Return-Path: <root@host1.nyc.big.com>\n")
    assert b"\nFrom: root@host1.nyc.big.com\n" in second


def test_masquerading_with_no_domain_refuses_to_start(tmp_path: Path, ca: trustme.CA) -> None:
    config = write_config(tmp_path, ca, hostname="localhost",
                          mail={"local_domains": [], "masquerade": True})  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1)
                if text.startswith("masquerade ="))  # fmt: skip
    assert f"{config}:{line}: masquerade = true needs a domain to masquerade as" in done.stderr


def test_an_nfs_client_whose_spool_is_not_the_servers_refuses_to_start(
    tmp_path: Path, ca: trustme.CA
) -> None:
    # 12.3.1 step 4: NFS Client, Mailbox Server mailhub, Lock Files.  The spool here is a
    # plain local directory, so delivering into it would hide mail from the other hosts.
    config = write_config(tmp_path, ca, mail={
        "mailbox_directory": "nfs-client", "mailbox_server": "mailhub.nyc.dec.com",
        "locking": "lockfile"})  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "posthouse", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 78, done.stderr
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1)
                if text.startswith("mailbox_server ="))  # fmt: skip
    assert f"{config}:{line}: the mailbox directory " in done.stderr
    assert "is not mounted from the mailbox server mailhub.nyc.dec.com" in done.stderr
    # The command-line sendmail, which delivers too, refuses the same way.
    env = dict(os.environ, POSTHOUSE_CONFIG=str(config))
    sent = subprocess.run(
        [sys.executable, "-m", "posthouse", "sendmail", "alice"], input="Subject: x\n\nx\n",
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert sent.returncode == 78
    assert "is not mounted from the mailbox server" in sent.stderr


def test_forwarding_local_sends_an_unknown_users_mail_to_the_hub(server_factory: Factory) -> None:
    hub = server_factory(hostname="hub.nyc.big.com", mail={"local_domains": ["nyc.big.com"]})
    with UserDatabase(hub.home / "data" / "etc" / "users.db") as users:
        users.add("zoe", PASSWORD)  # known on the hub only
    host = server_factory(
        hostname="host1.nyc.big.com",
        mail={"local_domains": ["nyc.big.com"], "forwarding": "local",
              "relay_host": f"127.0.0.1:{hub.smtp_port}"},
    )  # fmt: skip
    # 12.2.3.2: "forward all mail, including local domain mail" -- not 550 5.1.1.
    with smtplib.SMTP("127.0.0.1", host.smtp_port, timeout=30) as client:
        refused = client.sendmail("x@outside.test", ["zoe@nyc.big.com", "alice@nyc.big.com"],
                                  b"Subject: to the hub\r\n\r\nx\r\n")  # fmt: skip
    assert refused == {}
    assert b"Subject: to the hub" in hub.wait_for_messages("zoe", 1)[0]
    assert b"Subject: to the hub" in hub.wait_for_messages("alice", 1)[0]
    done = host.cli("sendmail", "zoe", input="Subject: typed locally\n\ny\n")
    assert done.returncode == 0, done.stderr
    assert b"Subject: typed locally" in hub.wait_for_messages("zoe", 2)[1]
    assert host.messages("zoe") == [] and host.messages("alice") == []


def test_a_decnet_address_typed_on_a_client_reaches_the_gateways_transport(
    server_factory: Factory, safe_dir: Path
) -> None:
    recorded = safe_dir / "out" / "mail11.log"
    recorder = safe_dir / "mail11.py"
    recorder.write_text(
        "import os, sys\n"
        f"with open({str(recorded)!r}, 'a') as f:\n"
        "    body = sys.stdin.read()\n"
        "    to = [l for l in body.splitlines() if l.startswith('To:')]\n"
        "    f.write(' '.join([os.environ['NATIVE'], os.environ['NATIVE_SENDER'],"
        " to[0] if to else '-']) + '\\n')\n"
    )
    # The DECnet gateway knows the pseudodomain by its own name only.
    gateway = server_factory(
        hostname="gw.big.com",
        mail={"top_domain": "big.com", "local_domains": ["big.com"],
              "trusted_networks": ["127.0.0.0/8"]},
        extra=f'\n[[pseudodomain]]\nprotocol = "decnet"\nname = "DNET"\nrouting = "direct"\n'
        f'transport = "{PYTHON} {recorder}"\n',
    )  # fmt: skip
    # The mail server relays DECnet mail to the gateway and knows an alias, DECNET.
    hub = server_factory(
        hostname="hub.big.com",
        mail={"top_domain": "big.com", "local_domains": ["big.com"],
              "trusted_networks": ["127.0.0.0/8"]},
        extra=f'\n[[pseudodomain]]\nprotocol = "decnet"\nname = "DNET"\naliases = ["DECNET"]\n'
        f'routing = "relay"\nrelay_host = "127.0.0.1:{gateway.smtp_port}"\n',
    )  # fmt: skip
    # A client with no pseudodomain of its own (12.1.6: every host knows the syntax).
    client = server_factory(
        hostname="host1.nyc.big.com",
        mail={"role": "client", "mail_server": f"127.0.0.1:{hub.smtp_port}",
              "local_domains": [], "host_aliases": []},
    )  # fmt: skip
    shown = client.cli("sendmail", "-bv", "VAXA::SMITH").stdout.decode()
    # (Domains are compared, and written on, in lower case; DECnet node names too.)
    assert shown == (
        f"SMITH@VAXA.DNET... deliverable: mailer esmtp, host [127.0.0.1]:{hub.smtp_port}, "
        "user SMITH@vaxa.dnet\n"
    )
    done = client.cli("sendmail", "-f", "joe", "VAXA::SMITH",
                      input="From: joe\nTo: VAXA::SMITH\nSubject: to decnet\n\nhi\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    # An alias typed on the client: the gateway, which lacks the alias, still gets it.
    done = client.cli("sendmail", "-f", "joe", "JONES@VAXB.DECNET.big.com",
                      input="To: JONES@VAXB.DECNET.big.com\nSubject: alias\n\nhi\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    wait_until(lambda: recorded.exists() and len(recorded.read_text().splitlines()) == 2,
               what="two deliveries through the gateway's transport")  # fmt: skip
    # The node, user and sender the transport is given; the To: fields in the
    # pseudodomain's own name (the client wrote SMITH@VAXA.DNET, the server completed it).
    lines = sorted(recorded.read_text().splitlines())
    assert lines == [
        "vaxa::SMITH joe@host1.nyc.big.com To: SMITH@VAXA.DNET.big.com",
        "vaxb::JONES joe@host1.nyc.big.com To: JONES@VAXB.DNET.big.com",
    ]
    assert client.messages("joe") == [] and hub.messages("joe") == []


def test_bv_names_mailer_host_and_user(server_factory: Factory) -> None:
    remote = server_factory(hostname="mx.remote.test", mail={"local_domains": ["remote.test"]})
    host = server_factory(extra=route_to(remote, "remote.test"))
    shown = host.cli("sendmail", "-bv", "joe@remote.test", "alice", "nobody").stdout.decode()
    assert shown.splitlines() == [
        f"joe@remote.test... deliverable: mailer esmtp, host [127.0.0.1]:{remote.smtp_port}, "
        "user joe@remote.test",
        "alice... deliverable: mailer local, user alice",
        "nobody... User unknown",
    ]
    assert re.search(r"mailer relay", shown) is None
