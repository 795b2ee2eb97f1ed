"""The control socket's protocol: one JSON line each way, limits, unknown operations."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from posthouse.server.control import (
    MAX_REQUEST,
    Caller,
    ControlError,
    ControlServer,
    Operation,
    Reply,
    bind_control_socket,
    request,
)


async def _echo(caller: Caller, message: dict[str, Any]) -> Reply:
    return Reply(True, "hello", {"uid": caller.uid}, lines=(f"line {n}" for n in range(3000)))


def _raw(path: Path, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(data)
        reply = sock.makefile("rb").readline()
    result: dict[str, Any] = json.loads(reply)
    return result


def test_requests_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "run" / "control.sock"

    async def main() -> None:
        sock = bind_control_socket(path)
        server = ControlServer(sock, {"echo": Operation(_echo)})
        await server.start()

        def client() -> None:
            assert os.stat(path).st_mode & 0o777 == 0o666
            answer = request(path, "echo")
            assert answer.ok and answer.message == "hello"
            assert answer.fields["uid"] == os.getuid()  # from SO_PEERCRED
            assert list(answer.lines) == [f"line {n}" for n in range(3000)]
            assert "unknown operation" in request(path, "nope").message
            assert "not one line of JSON" in _raw(path, b"{oops\n")["message"]
            assert "JSON object" in _raw(path, b"[1]\n")["message"]
            too_long = _raw(path, b'{"op": "echo", "x": "' + b"a" * MAX_REQUEST + b'"}\n')
            assert not too_long["ok"] and "longer than" in too_long["message"]
            with pytest.raises(OSError):
                bind_control_socket(path)  # a daemon is serving there
            assert request(path, "echo").ok  # (accepted after the probe: the probe is served)

        await asyncio.to_thread(client)
        await server.close()
        sock.close()

    asyncio.run(main())
    with pytest.raises(ControlError):
        request(path, "echo")  # nobody listening any more
    bind_control_socket(path).close()  # a stale socket file is replaced
