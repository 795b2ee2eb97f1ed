"""Loading a tool's configuration: the one place where a bad configuration file becomes the
tool's error line (with the file, the line and what is wrong) and the exit status EX_CONFIG."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from posthouse.config.load import ConfigError, load_settings
from posthouse.config.schema import Settings

__all__ = ["configured", "settings_for"]

_T = TypeVar("_T")


def configured(
    tool: str,
    config: str | None,
    load: Callable[[str | None], _T],
) -> _T | None:
    """What ``load`` makes of the configuration file ``config``, or None after printing
    ``TOOL: configuration error: ...`` on standard error."""
    try:
        return load(config)
    except ConfigError as exc:
        print(f"{tool}: configuration error: {exc}", file=sys.stderr)
        return None


def settings_for(tool: str, config: str | None) -> Settings | None:
    """The settings of ``config`` (see :func:`configured`)."""
    return configured(tool, config, load_settings)
