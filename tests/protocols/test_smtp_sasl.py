"""SASL PLAIN / LOGIN decoding."""

from __future__ import annotations

import base64

from posthouse.protocols import sasl


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_decode_base64_is_strict() -> None:
    assert sasl.decode_base64("") == b""
    assert sasl.decode_base64("YWJj") == b"abc"
    assert sasl.decode_base64("YWJj\n") is None
    assert sasl.decode_base64("YWJ") is None
    assert sasl.decode_base64("é") is None


def test_plain() -> None:
    mech = sasl.create("PLAIN")
    assert mech is not None
    assert mech.start(None) == sasl.Challenge("")
    assert mech.step(b64(b"z\0u\0p")) == sasl.Credentials("z", "u", "p")
    assert isinstance(mech.step(b64(b"u\0p")), sasl.Failure)
    assert isinstance(mech.step(b64(b"\0\0p")), sasl.Failure)
    assert isinstance(mech.step(""), sasl.Failure)


def test_login() -> None:
    mech = sasl.create("LOGIN")
    assert mech is not None
    assert mech.start(None) == sasl.Challenge("VXNlcm5hbWU6")
    assert mech.step(b64(b"user")) == sasl.Challenge("UGFzc3dvcmQ6")
    assert mech.step(b64("pässword".encode())) == sasl.Credentials("", "user", "pässword")
    fresh = sasl.create("LOGIN")
    assert fresh is not None
    assert isinstance(fresh.start(b64(b"a\0b")), sasl.Failure)


def test_unknown_mechanism_and_repr_hides_password() -> None:
    assert sasl.create("GSSAPI") is None
    assert "hunter2" not in repr(sasl.Credentials("", "u", "hunter2"))
