"""``Type=notify``: the daemon tells systemd it is ready through ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from posthouse.daemon import notify_systemd


def test_ready_is_sent_to_the_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(30)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        notify_systemd("READY=1\nMAINPID=42")
        assert listener.recv(4096) == b"READY=1\nMAINPID=42"
