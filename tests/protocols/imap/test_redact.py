"""SecretMask: passwords of LOGIN and AUTHENTICATE never pass; everything else does."""

from __future__ import annotations

from posthouse.protocols.imap.redact import SecretMask


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


def test_login_with_quoted_atom_and_literal_passwords() -> None:
    assert masked(b'a LOGIN alice "pa ss\\"word"\r\n') == b"a LOGIN ***\r\n"
    assert masked(b"a login alice hunter2\r\n") == b"a login ***\r\n"
    session = b"a LOGIN {5}\r\nalice {7}\r\nhunter2\r\nb SELECT INBOX\r\n"
    assert masked(session) == b"a LOGIN ***\r\n***\r\n***\r\nb SELECT INBOX\r\n"
    assert bytewise(session) == masked(session)
    assert b"hunter2" not in bytewise(b"a LOGIN {5+}\r\nalice {7+}\r\nhunter2\r\n")


def test_authenticate_initial_response_and_sasl_lines_masked_until_done() -> None:
    assert masked(b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n") == (
        b"a AUTHENTICATE PLAIN ***\r\n"
    )
    out = masked(
        b"a AUTHENTICATE LOGIN\r\n",
        b"YWxpY2U=\r\n",
        b"c2VjcmV0\r\n",
        b"b NOOP\r\n",
        done_after=2,
    )
    assert out == b"a AUTHENTICATE LOGIN\r\n***\r\n***\r\nb NOOP\r\n"


def test_other_commands_and_their_literals_pass_unchanged() -> None:
    message = b"Subject: a LOGIN x y\r\n\r\nLOGIN alice secret\r\n"
    session = b"a APPEND INBOX {%d}\r\n%s\r\nb LOGOUT\r\n" % (len(message), message)
    assert masked(session) == session
    assert bytewise(session) == session
    split = [session[:7], session[7:30], session[30:]]
    assert masked(*split) == session


def test_incomplete_and_overlong_lines() -> None:
    mask = SecretMask(max_line=10)
    assert mask.feed(b"a NOOP") == b""  # held until complete
    assert mask.feed(b"\r") == b""
    assert mask.feed(b"\n") == b"a NOOP\r\n"
    out = mask.feed(b"a LOGIN alice averyveryverylongpassword") + mask.feed(b"xx\r\nb NOOP\r\n")
    assert b"password" not in out and b"xx" not in out
    assert out.endswith(b"left out]\r\nb NOOP\r\n")
