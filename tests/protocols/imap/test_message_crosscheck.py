"""Cross-check: part boundaries and BINARY decoding agree with the email package.

Random MIME trees are built and written by the `email` package (CRLF line ends); every
leaf's ``BODY[path]`` must be exactly the payload the email package's parser finds,
and ``BINARY[path]`` exactly its decoded payload.
"""

from __future__ import annotations

from email import policy
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser

from hypothesis import given, settings
from hypothesis import strategies as st

from posthouse.protocols.imap import message, sections
from posthouse.protocols.imap.fetchatt import Section

texts = st.text(alphabet="abc xyzé€\n-=.", max_size=80)
leaf = st.one_of(
    texts.map(lambda t: MIMEText(t, "plain", "utf-8")),
    texts.map(
        lambda t: MIMEText(t, "html", "us-ascii") if t.isascii() else MIMEText(t, "html", "utf-8")
    ),
    st.binary(max_size=60).map(lambda b: MIMEApplication(b)),
)


def _multipart(parts: list[Message], subtype: str) -> Message:
    container = MIMEMultipart(subtype)
    for part in parts:
        container.attach(part)
    return container


def _wrap(inner: Message) -> Message:
    inner["Subject"] = "inner"
    return MIMEMessage(inner)


trees = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.builds(
            _multipart,
            st.lists(children, min_size=1, max_size=3),
            st.sampled_from(["mixed", "alternative"]),
        ),
        children.map(_wrap),
    ),
    max_leaves=6,
)


def _leaves(part: Message, path: tuple[int, ...]) -> list[tuple[tuple[int, ...], Message]]:
    """Every leaf and message/rfc822 part with its IMAP part number (RFC 3501 §6.4.5)."""
    payload = part.get_payload()
    if part.get_content_maintype() == "multipart" and isinstance(payload, list):
        found: list[tuple[tuple[int, ...], Message]] = []
        for index, child in enumerate(payload, 1):
            found += _leaves(child, (*path, index))
        return found
    if isinstance(payload, list):  # message/rfc822: its parts count on from its number
        inner = payload[0]
        own = path or (1,)  # a message that is not multipart has only a part 1
        inner_path = own if inner.get_content_maintype() == "multipart" else (*own, 1)
        return [(own, part), *_leaves(inner, inner_path)]
    return [(path or (1,), part)]


@settings(max_examples=150, deadline=None)
@given(trees)
def test_parts_and_decoding_agree_with_the_email_package(tree: Message) -> None:
    tree["Subject"] = "top"
    raw = tree.as_bytes(policy=policy.SMTP)
    root = message.parse(raw)
    parsed = BytesParser(policy=policy.compat32).parsebytes(raw)
    for path, part in _leaves(parsed, ()):
        mine = sections.section_bytes(raw, root, Section(path))
        payload = part.get_payload()
        if isinstance(payload, list):  # message/rfc822: the encapsulated message
            expected = payload[0].as_bytes(policy=policy.SMTP)
            assert mine == expected
            continue
        assert mine == payload.encode("ascii", "surrogateescape")
        assert sections.binary_bytes(raw, root, path) == part.get_payload(decode=True)
