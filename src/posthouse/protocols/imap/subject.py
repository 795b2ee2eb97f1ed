"""The base subject of RFC 5256 §2.1, for SORT SUBJECT and THREAD.

`base_subject` returns the base subject and whether the subject marked a reply or
forward (an "Re:"/"Fw:"/"Fwd:" leader, a "(fwd)" trailer or a "[fwd: ...]" wrapper were
removed), which THREAD REFERENCES needs (RFC 5256 §4 step 6).  Comparison is
i;ascii-casemap, so the base subject is returned with ASCII letters upper-cased.
"""

from __future__ import annotations

import re
from typing import Final

_SPACES: Final = re.compile(r"[ \t\r\n]+")
_TRAILER: Final = re.compile(r"(?:\(fwd\)|[ \t])\Z", re.IGNORECASE)
_BLOB: Final = r"\[[^\[\]]*\][ \t]*"
_REFWD: Final = re.compile(rf"(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:", re.IGNORECASE)
_BLOB_PREFIX: Final = re.compile(_BLOB)
_FWD_HDR: Final = "[FWD:"


def _ascii_upper(text: str) -> str:
    return "".join(c.upper() if c.isascii() else c for c in text)


def base_subject(subject: str) -> tuple[str, bool]:
    """(base subject, True if it was a reply or forward) of a decoded subject."""
    text = _SPACES.sub(" ", subject)  # step 1 (encoded words are decoded already)
    reply = False
    while True:
        while True:  # step 2: subj-trailer
            trimmed = _TRAILER.sub("", text)
            if trimmed == text:
                break
            reply = reply or not text.endswith((" ", "\t"))
            text = trimmed
        while True:  # steps 3-5
            if text[:1] in (" ", "\t"):
                text = text[1:]
                continue
            match = _REFWD.match(text)
            if match is not None:
                text = text[match.end() :]
                reply = True
                continue
            blob = _BLOB_PREFIX.match(text)
            if blob is not None and text[blob.end() :].strip(" \t"):
                text = text[blob.end() :]
                continue
            break
        # step 6: "[fwd: ... ]"
        if _ascii_upper(text[: len(_FWD_HDR)]) == _FWD_HDR and text.endswith("]"):
            text = text[len(_FWD_HDR) : -1]
            reply = True
            continue
        break
    return _ascii_upper(text), reply
