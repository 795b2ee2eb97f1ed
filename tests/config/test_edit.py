"""edit_config: ``posthouse setup`` changes only the options whose values change and keeps
the rest of the file byte for byte (comments, order, blank lines, how values are written)."""

from __future__ import annotations

import dataclasses
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthouse.config.edit import edit_config
from posthouse.config.load import parse_config
from posthouse.config.render import render_config
from posthouse.config.schema import Config, PseudodomainSection
from tests.cli.test_setup import worksheet_configs

HAND_WRITTEN = '''\
# My posthouse configuration -- keep this comment
[server]
hostname = "mail.big.com"   # the public name
log_file = """
[mail]
role = "not this one"
"""

# Mail settings

[mail]
role = "standalone"  # was client until 2025
local_domains = [
    "big.com",   # main ]
    "big.org",
]
locking = 'lockf'

# UUCP to the old box
# (retired soon)
[[pseudodomain]]
protocol = "uucp"
name = "UUCP"

[[pseudodomain]]  # the DECnet link
protocol = "decnet"
name = "DNET"
node_address = "1.2"
'''


def edited(text: str, change: dict[str, object], pseudodomain: object = None) -> str | None:
    old = parse_config(text, "x")
    new = dataclasses.replace(old, mail=dataclasses.replace(old.mail, **change))  # type: ignore[arg-type]
    if pseudodomain is not None:
        new = dataclasses.replace(new, pseudodomain=pseudodomain)
    return edit_config(text, old, new)


def test_only_the_changed_values_are_rewritten() -> None:
    text = edited(HAND_WRITTEN, {"role": "server", "locking": "both"})
    assert text == HAND_WRITTEN.replace('"standalone"  # was', '"server"  # was').replace(
        "locking = 'lockf'", 'locking = "both"'
    )


def test_a_multi_line_value_is_replaced_whole_and_a_new_option_added_to_its_table() -> None:
    text = edited(HAND_WRITTEN, {"local_domains": ("big.com",), "top_domain": "big.com"})
    assert text is not None
    expected = HAND_WRITTEN.replace(
        '[\n    "big.com",   # main ]\n    "big.org",\n]\nlocking = \'lockf\'\n',
        "[\"big.com\"]\nlocking = 'lockf'\n"
        "# servers only: highest domain of the organisation, e.g. big.com\n"
        'top_domain = "big.com"\n',
    )
    assert text == expected


def test_array_entries_are_edited_removed_with_their_comments_and_added() -> None:
    old = parse_config(HAND_WRITTEN, "x")
    _uucp, decnet = old.pseudodomain
    mts = PseudodomainSection(protocol="mts", name="MTS")
    text = edited(HAND_WRITTEN, {}, (dataclasses.replace(decnet, node_address="1.3"), mts))
    assert text is not None
    assert "UUCP" not in text and "old box" not in text and "retired" not in text
    assert 'node_address = "1.3"\n' in text and "[[pseudodomain]]  # the DECnet link\n" in text
    assert 'protocol = "mts"\nname = "MTS"\n' in text.split("[[pseudodomain]]")[-1]
    assert text.startswith(HAND_WRITTEN[: HAND_WRITTEN.index("# UUCP")])


def test_a_missing_table_is_added_at_the_end() -> None:
    text = "# only a comment\n[server]\nworkers = 2\n"
    result = edited(text, {"role": "client", "mail_server": "big.com"})
    assert result is not None and result.startswith(text)
    assert parse_config(result, "x").mail.mail_server == "big.com"


def test_forms_it_does_not_follow_give_none() -> None:
    for text in ('mail.locking = "lockf"\n', 'mail = { locking = "lockf" }\n'):
        assert edited(text, {"locking": "both"}) is None


def tables_of_notes(text: str) -> dict[str, str]:
    """Each ``# note N`` line of ``text`` and the table it belongs to: the one it is in, or
    the next one when only comment lines stand between it and that table's header."""
    owner: dict[str, str] = {}
    waiting: list[str] = []  # notes in the comment run since the last other line
    table = ""
    for line in text.split("\n"):
        header = re.match(r"\[\[?([a-z_]+)\]\]?", line)
        if header:
            table = header.group(1)
            owner.update(dict.fromkeys(waiting, table))
            waiting = []
        elif line.startswith("# note "):
            waiting.append(line)
        elif not line.startswith("#"):
            owner.update(dict.fromkeys(waiting, table))
            waiting = []
    owner.update(dict.fromkeys(waiting, table))
    return owner


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(worksheet_configs(), worksheet_configs(), st.integers(0, 2))
def test_a_rendered_file_with_comments_gets_the_new_answers_and_keeps_other_comments(
    old: Config, answers: Config, seed: int
) -> None:
    """What setup changes ([mail] and the pseudodomains) is edited; the administrator's
    comments anywhere else stay.  The pseudodomains change as setup's draft changes them:
    one entry per protocol, those kept in their order, new ones after them."""
    before = {entry.protocol: entry for entry in old.pseudodomain}
    old = dataclasses.replace(old, pseudodomain=tuple(before.values()))
    wanted = {entry.protocol: entry for entry in answers.pseudodomain}
    kept = [wanted[protocol] for protocol in before if protocol in wanted]
    added = [entry for protocol, entry in wanted.items() if protocol not in before]
    new = dataclasses.replace(old, mail=answers.mail, pseudodomain=tuple(kept + added))
    lines = render_config(old).split("\n")
    commented = "\n".join(
        line + (f"\n# note {number}" if (number + seed) % 3 == 0 else "")
        for number, line in enumerate(lines)
    )
    assert parse_config(commented, "x") == old
    text = edit_config(commented, old, new)
    assert text is not None
    assert parse_config(text, "x") == new
    kept = set(tables_of_notes(text))
    for note, table in tables_of_notes(commented).items():
        if table not in ("mail", "pseudodomain"):
            assert note in kept, (note, table)
