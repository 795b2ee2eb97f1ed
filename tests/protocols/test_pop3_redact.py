"""POP3's SecretMask: PASS, the APOP digest and the AUTH exchange never pass; everything
else does, whatever the case of the command."""

from __future__ import annotations

from posthouse.protocols.pop3.redact import SecretMask


def masked(*chunks: bytes, done_after: int | None = None) -> bytes:
    mask = SecretMask()
    out = b""
    for number, chunk in enumerate(chunks):
        out += mask.feed(chunk)
        if number == done_after:
            mask.authentication_done()
    return out


def bytewise(data: bytes) -> bytes:
    mask = SecretMask()
    return b"".join(mask.feed(data[i : i + 1]) for i in range(len(data)))


def test_user_pass_and_apop() -> None:
    session = b"USER alice\r\nPASS pa ss word\r\nSTAT\r\n"
    assert masked(session) == b"USER alice\r\nPASS ***\r\nSTAT\r\n"
    assert bytewise(session) == masked(session)
    assert masked(b"pass hunter2\r\n") == b"pass ***\r\n"
    assert masked(b"APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n") == b"APOP alice ***\r\n"
    assert masked(b"APOP my name 1234\r\n") == b"APOP my name ***\r\n"
    assert masked(b"APOP digestonly\r\n") == b"APOP ***\r\n"


def test_auth_initial_response_and_sasl_lines_masked_until_done() -> None:
    assert masked(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", b"STAT\r\n", done_after=0) == (
        b"AUTH PLAIN ***\r\nSTAT\r\n"
    )
    out = masked(b"AUTH LOGIN\r\n", b"YWxpY2U=\r\n", b"c2VjcmV0\r\n", b"STAT\r\n", done_after=2)
    assert out == b"AUTH LOGIN\r\n***\r\n***\r\nSTAT\r\n"
    assert masked(b"AUTH\r\nCAPA\r\n") == b"AUTH\r\nCAPA\r\n"  # the list of mechanisms


def test_an_overlong_line_is_left_out() -> None:
    mask = SecretMask(max_line=10)
    assert mask.feed(b"PASS " + b"x" * 20) == b""
    assert mask.feed(b"\r\nSTAT\r\n") == b"[a line over 10 octets, left out]\r\nSTAT\r\n"
