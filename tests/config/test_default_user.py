"""``[aliases] default_user``: the account aliases-file programs and files run as (issue 8)."""

from __future__ import annotations

import pytest

from posthouse.config.load import ConfigError, parse_config
from posthouse.config.schema import Config


def test_default_is_nobody() -> None:
    assert Config().aliases.default_user == "nobody"
    assert parse_config(
        '[aliases]\ndefault_user = "mailnull"\n', "t.toml"
    ).aliases.default_user == ("mailnull")


@pytest.mark.parametrize("name", ["root", ""])
def test_root_or_empty_is_refused_with_its_line(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'[server]\nworkers = 1\n\n[aliases]\ndefault_user = "{name}"\n', "t.toml")
    assert caught.value.line == 5
    assert "unprivileged account" in caught.value.message
