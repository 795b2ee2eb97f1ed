"""Message structure (message.py), ENVELOPE, BODYSTRUCTURE, sections and BINARY."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from posthouse.protocols.imap import bodystructure, envelope, message, sections, text
from posthouse.protocols.imap.errors import CommandError
from posthouse.protocols.imap.fetchatt import Section
from tests.protocols.imap.wire import read_whole

# The message of RFC 3501 §8 (a003 FETCH 12 FULL): 92 lines, 3028 octets of body.
RFC3501_BODY = b"".join(b"%-31s\r\n" % (b"line %d" % n) for n in range(91)) + b"x" * 23 + b"\r\n"
RFC3501_MESSAGE = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    b"From: Terry Gray <gray@cac.washington.edu>\r\n"
    b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
    b"To: imap@cac.washington.edu\r\n"
    b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n" + RFC3501_BODY
)


def test_the_rfc_3501_sample_envelope_and_body() -> None:
    assert len(RFC3501_BODY) == 3028 and RFC3501_BODY.count(b"\n") == 92
    root = message.parse(RFC3501_MESSAGE)
    assert envelope.envelope_bytes(root) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes"'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu"))'
        b' ((NIL NIL "imap" "cac.washington.edu"))'
        b' ((NIL NIL "minutes" "CNRI.Reston.VA.US") ("John Klensin" NIL "KLENSIN" "MIT.EDU"))'
        b' NIL NIL "<B27397-0100000@cac.washington.edu>")'
    )
    assert bodystructure.body_bytes(RFC3501_MESSAGE, root) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
    )
    assert bodystructure.bodystructure_bytes(RFC3501_MESSAGE, root) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)'
    )
    header = sections.section_bytes(RFC3501_MESSAGE, root, Section((), "HEADER"))
    assert header == RFC3501_MESSAGE[: RFC3501_MESSAGE.index(b"\r\n\r\n") + 4]


# RFC 3501 §7.4.2: the BODY example, a multipart/mixed with a base64 attachment.
PART2 = base64.encodebytes(b"d" * 3333).replace(b"\n", b"\r\n")
MIXED = (
    b'From: a@b\r\nContent-Type: multipart/mixed; boundary="==b=="\r\n\r\n'
    b"--==b==\r\nContent-Type: text/plain; charset=US-ASCII\r\n\r\n"
    + b"".join(b"%048d\r\n" % n for n in range(23))
    + b"\r\n--==b==\r\n"
    b'Content-Type: TEXT/PLAIN; charset="US-ASCII"; NAME=cc.diff\r\n'
    b"Content-ID: <960723163407.20117h@cac.washington.edu>\r\n"
    b"Content-Description: Compiler diff\r\n"
    b"Content-Transfer-Encoding: BASE64\r\n\r\n" + PART2 + b"\r\n--==b==--\r\n"
)


def test_the_rfc_3501_body_example() -> None:
    root = message.parse(MIXED)
    assert bodystructure.body_bytes(MIXED, root) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1150 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff")'
        b' "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" '
        + str(len(PART2)).encode()
        + b" "
        + str(PART2.count(b"\n")).encode()
        + b') "MIXED")'
    )
    assert sections.binary_bytes(MIXED, root, (2,)) == b"d" * 3333
    assert sections.section_bytes(MIXED, root, Section((2,))) == PART2
    # the CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1)
    first = sections.section_bytes(MIXED, root, Section((1,)))
    assert first is not None and first.endswith(b"00022\r\n") and len(first) == 1150


NESTED = (
    b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n"
    b"preamble\r\n"
    b"--X\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 soft=\r\nbreak\r\n"
    b"--X\r\nContent-Type: message/rfc822\r\n"
    b'Content-Disposition: attachment; filename="inner.eml"\r\n'
    b"Content-Language: en, de\r\nContent-Location: http://x/y\r\nContent-MD5: Q2hlY2s=\r\n\r\n"
    b"Subject: inner\r\nFrom: x@y\r\nContent-Type: multipart/alternative; boundary=Y\r\n\r\n"
    b"--Y\r\n\r\nplain inner\r\n--Y\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--Y--\r\n"
    b"--X\r\nContent-Type: application/x-thing\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
    b"begin 644\r\n"
    b"--X--\r\nepilogue\r\n"
)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (Section(), NESTED),
        (
            Section((), "HEADER"),
            b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n",
        ),
        (Section((1,)), b"caf=C3=A9 soft=\r\nbreak"),
        (
            Section((1,), "MIME"),
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        ),
        (
            Section((2,), "HEADER"),
            b"Subject: inner\r\nFrom: x@y\r\n"
            b"Content-Type: multipart/alternative; boundary=Y\r\n\r\n",
        ),
        (Section((2, 1)), b"plain inner"),
        (Section((2, 2)), b"<p>html</p>"),
        (Section((2, 2), "MIME"), b"Content-Type: text/html\r\n\r\n"),
        (Section((2,), "HEADER.FIELDS", ("FROM",)), b"From: x@y\r\n\r\n"),
        (
            Section((2,), "HEADER.FIELDS.NOT", ("FROM", "CONTENT-TYPE")),
            b"Subject: inner\r\n\r\n",
        ),
        (Section((4,)), None),
        (Section((1, 1)), b"caf=C3=A9 soft=\r\nbreak"),  # part 1 of a leaf is itself
        (Section((1, 2)), None),
        (Section((1,), "HEADER"), None),  # HEADER only of message/rfc822 parts
        (Section((3,)), b"begin 644"),
    ],
)
def test_sections_are_slices_of_the_original(section: Section, expected: bytes | None) -> None:
    root = message.parse(NESTED)
    got = sections.section_bytes(NESTED, root, section)
    assert got == expected
    if got is not None:
        assert got in NESTED or got.endswith(b"\r\n\r\n")


def test_nested_bodystructure_with_extension_data() -> None:
    root = message.parse(NESTED)
    structure = bodystructure.bodystructure_bytes(NESTED, root)
    assert structure.startswith(
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 22 2 NIL NIL NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" '
    )
    assert (
        b'(NIL "inner" ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) ((NIL NIL "x" "y"))'
        b" NIL NIL NIL NIL NIL)" in structure
    )
    assert (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 11 1 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 11 1 NIL NIL NIL NIL)'
        b' "ALTERNATIVE" ("BOUNDARY" "Y") NIL NIL NIL)' in structure
    )
    assert (
        b'"Q2hlY2s=" ("ATTACHMENT" ("FILENAME" "inner.eml")) ("en" "de") "http://x/y")' in structure
    )
    assert structure.endswith(b'"MIXED" ("BOUNDARY" "X") NIL NIL NIL)')
    body = bodystructure.body_bytes(NESTED, root)
    assert b"ATTACHMENT" not in body and body.endswith(b' "MIXED")')


def test_binary_decoding_and_unknown_encodings() -> None:
    root = message.parse(NESTED)
    assert sections.binary_bytes(NESTED, root, (1,)) == "café softbreak".encode()
    assert sections.binary_bytes(NESTED, root, (2, 1)) == b"plain inner"
    assert sections.binary_bytes(NESTED, root, (9,)) is None
    with pytest.raises(CommandError) as caught:
        sections.binary_bytes(NESTED, root, (3,))
    assert caught.value.status == "NO" and caught.value.code == "UNKNOWN-CTE"
    inner = sections.section_bytes(NESTED, root, Section((2,)))
    assert sections.binary_bytes(NESTED, root, (2,)) == inner  # a 7bit message/rfc822
    assert sections.binary_bytes(NESTED, root, ()) == NESTED


def test_partial_ranges() -> None:
    assert sections.partial(b"0123456789", 2, 3) == b"234"
    assert sections.partial(b"0123456789", 8, 100) == b"89"
    assert sections.partial(b"0123456789", 10, 1) == b""
    assert sections.partial(b"0123456789", 50, 1) == b""


def test_envelope_groups_missing_fields_and_encoded_words() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\n"
        b"To: undisclosed-recipients:;\r\n"
        b'Cc: Team: "Ann A." <ann@x>, bob@y (Bob);, <@route1,@route2:carl@z>\r\n'
        b"Reply-To:\r\n"
        b"Subject: =?iso-8859-1?q?caf=E9?=\r\n"
        b"In-Reply-To: <parent@x>\r\n\r\n"
    )
    value = envelope.envelope_bytes(message.parse(raw))
    assert value == (
        b'(NIL "=?iso-8859-1?q?caf=E9?="'
        b' (("=?utf-8?q?J=C3=B6rg?=" NIL "joerg" "example.org"))'
        b' (("=?utf-8?q?J=C3=B6rg?=" NIL "joerg" "example.org"))'
        b' (("=?utf-8?q?J=C3=B6rg?=" NIL "joerg" "example.org"))'
        b' ((NIL NIL "undisclosed-recipients" NIL) (NIL NIL NIL NIL))'
        b' ((NIL NIL "Team" NIL) ("Ann A." NIL "ann" "x") (NIL NIL "bob" "y") (NIL NIL NIL NIL)'
        b' (NIL "@route1,@route2" "carl" "z"))'
        b' NIL "<parent@x>" NIL)'
    )


def test_envelope_of_an_empty_message_is_all_nil() -> None:
    assert (
        envelope.envelope_bytes(message.parse(b"")) == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    )


def test_eight_bit_header_values_become_literals() -> None:
    value = envelope.envelope_bytes(message.parse(b"Subject: caf\xc3\xa9\r\n\r\nx"))
    assert value == b"(NIL {5}\r\ncaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_lf_only_messages_and_header_only_messages() -> None:
    lf = b"Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n--b--\n"
    root = message.parse(lf)
    assert sections.section_bytes(lf, root, Section((2,))) == b"two"
    head_only = b"Subject: only a header\r\n"
    root = message.parse(head_only)
    assert sections.section_bytes(head_only, root, Section((), "TEXT")) == b""
    assert sections.section_bytes(head_only, root, Section((), "HEADER")) == head_only


def test_a_multipart_without_delimiters_is_one_text_part() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=nope\r\n\r\njust text\r\n"
    root = message.parse(raw)
    assert bodystructure.body_bytes(raw, root) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 11 1) "MIXED")'
    )
    assert sections.section_bytes(raw, root, Section((1,))) == b"just text\r\n"


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: in digest\r\n\r\nhi\r\n--d--\r\n"
    )
    root = message.parse(raw)
    assert root.children[0].maintype == "MESSAGE" and root.children[0].message is not None
    assert (
        sections.section_bytes(raw, root, Section((1,), "HEADER")) == b"Subject: in digest\r\n\r\n"
    )


def test_nesting_is_limited() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\n" * 200 + b"Subject: deep\r\n\r\nx"
    root = message.parse(raw)
    depth = 0
    node: message.Part | None = root
    while node is not None:
        node = node.message
        depth += 1
    assert depth == message.MAX_DEPTH + 1
    assert bodystructure.bodystructure_bytes(raw, root).startswith(b'("MESSAGE" "RFC822"')


def test_search_text_is_decoded() -> None:
    root = message.parse(NESTED)
    body = text.body_text(NESTED, root)
    assert "café softbreak" in body and "plain inner" in body and "<p>html</p>" in body
    assert "Subject: inner" in body  # the encapsulated message's header
    assert "begin 644" not in body  # not a text part
    raw = (
        b"Subject: =?utf-8?b?w6l0w6k=?= and more\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\n\xe9t\xe9"
    )
    root = message.parse(raw)
    assert text.header_values(root, "SUBJECT") == ["été and more"]
    assert text.body_text(raw, root) == "été"
    assert text.decode_words(b"=?bogus?q?x?= y") == "x y"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_octets_parse_and_serialise(raw: bytes) -> None:
    _check_structure(raw)


MIME_PIECES = [
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: inline; filename=x\r\n",
    b"Subject: s\r\n",
    b"From: a@b, (c) <d@e>, g: h@i;\r\n",
    b"\r\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"QUFB\r\n",
    b"=41\r\n",
    b"text\r\n",
    b"\n",
    b"\xff",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(MIME_PIECES), max_size=30).map(b"".join))
def test_mime_shaped_input_parses_and_serialises(raw: bytes) -> None:
    _check_structure(raw)


def _check_structure(raw: bytes) -> None:
    root = message.parse(raw)
    stack = [root]
    while stack:
        part = stack.pop()
        assert 0 <= part.start <= part.body_start <= part.end <= len(raw)
        stack.extend(part.children)
        if part.message is not None:
            assert part.message.start == part.body_start and part.message.end == part.end
            stack.append(part.message)
    structure = read_whole(bodystructure.bodystructure_bytes(raw, root))
    assert isinstance(structure, list) and len(structure) >= 3
    assert isinstance(read_whole(bodystructure.body_bytes(raw, root)), list)
    fields = read_whole(envelope.envelope_bytes(root))
    assert isinstance(fields, list) and len(fields) == 10
    for addresses in fields[2:8]:
        assert addresses is None or all(
            isinstance(a, list) and len(a) == 4
            for a in addresses  # type: ignore[attr-defined]
        )
    for path in [(), (1,), (1, 1), (2,), (2, 1)]:
        for kind in (None, "HEADER", "TEXT", "MIME"):
            if kind == "MIME" and not path:
                continue
            got = sections.section_bytes(raw, root, Section(path, kind))
            assert got is None or got in raw or got.endswith(b"\r\n")
        with contextlib.suppress(CommandError):
            sections.binary_bytes(raw, root, path)
    text.body_text(raw, root)


def test_content_of_fetch_items_with_partials() -> None:
    from posthouse.protocols.imap.fetchatt import FetchItem

    root = message.parse(NESTED)
    header_end = NESTED.index(b"\r\n\r\n") + 4
    assert sections.item_octets(NESTED, root, FetchItem("RFC822")) == NESTED
    assert sections.item_octets(NESTED, root, FetchItem("RFC822.HEADER")) == NESTED[:header_end]
    assert sections.item_octets(NESTED, root, FetchItem("RFC822.TEXT")) == NESTED[header_end:]
    item = FetchItem("BODY", Section((2, 1)), partial=(2, 4))
    assert sections.item_octets(NESTED, root, item) == b"ain "
    item = FetchItem("BINARY", Section((1,)), partial=(0, 4))
    assert sections.item_octets(NESTED, root, item) == b"caf" + b"\xc3"
    assert sections.item_octets(NESTED, root, FetchItem("BODY", Section((7,)))) is None
    assert sections.binary_size(NESTED, root, (1,)) == len("café softbreak".encode())
    with pytest.raises(ValueError):
        sections.item_octets(NESTED, root, FetchItem("FLAGS"))


def test_header_fields_match_names_case_insensitively() -> None:
    header = b"From: a\r\nX-Long: one\r\n two\r\nfrom: b\r\nTo: c\r\n\r\n"
    assert sections.header_fields(header, ["FROM", "x-long"], exclude=False) == (
        b"From: a\r\nX-Long: one\r\n two\r\nfrom: b\r\n\r\n"
    )
    assert sections.header_fields(header, ["from", "X-LONG"], exclude=True) == b"To: c\r\n\r\n"
    assert sections.header_fields(header, ["Nothing"], exclude=False) == b"\r\n"


names = (
    st.text(alphabet='abc XYZ.,;:"\\()<>@', max_size=12)
    .map(str.strip)
    .filter(lambda n: "  " not in n)
)
locals_ = st.from_regex(r"[a-z0-9][a-z0-9.+_-]{0,8}[a-z0-9]", fullmatch=True).filter(
    lambda text: ".." not in text
)
domains = st.from_regex(r"[a-z0-9]{1,6}(\.[a-z]{2,4}){0,2}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(names, locals_, domains), min_size=1, max_size=4))
def test_addresses_agree_with_formataddr(entries: list[tuple[str, str, str]]) -> None:
    from email.utils import formataddr

    header = ", ".join(formataddr((name, f"{local}@{domain}")) for name, local, domain in entries)
    found = envelope.parse_address_list(header.encode())
    assert [(a.name, a.mailbox, a.host) for a in found] == [
        (name.encode() or None, local.encode(), domain.encode()) for name, local, domain in entries
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"=?",
                b"?=",
                b"?q?",
                b"?b?",
                b"utf-8",
                b"bogus",
                b"=C3=A9",
                b"w6k=",
                b" ",
                b"\xff",
                b"x",
            ]
        ),
        max_size=12,
    ).map(b"".join)
)
@example(b"=??b??q?=?")  # once raised HeaderParseError out of the email package
def test_header_decoding_never_raises(raw: bytes) -> None:
    assert isinstance(text.decode_words(raw), str)
