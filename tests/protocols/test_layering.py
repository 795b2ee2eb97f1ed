"""The layering rules of DESIGN.md, checked on the source.

``posthouse.protocols`` imports nothing else of posthouse and no I/O module;
the domain layers (mta, store, auth) never import the server, the CLI or the
application wiring; the store never imports the MTA (the MTA's mbox agent uses
the store, not the other way round); the tools (cli) reach the server only through
admin and app, and admin never imports the tools.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "posthouse"
IO_MODULES = {"asyncio", "socket", "ssl", "os", "time", "sqlite3", "selectors", "subprocess"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_under(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules_under("protocols"), ids=lambda p: p.name)
def test_protocol_engines_do_no_io_and_depend_on_nothing_else(path: Path) -> None:
    for name in imported_modules(path):
        assert name.split(".")[0] not in IO_MODULES, f"{path.name} imports {name}"
        if name.startswith("posthouse"):
            assert name.startswith("posthouse.protocols"), f"{path.name} imports {name}"


@pytest.mark.parametrize(
    "path",
    [p for layer in ("mta", "store", "auth") for p in modules_under(layer)],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_domain_layers_import_downward_only(path: Path) -> None:
    for name in imported_modules(path):
        for upper in ("posthouse.server", "posthouse.cli", "posthouse.app"):
            assert not name.startswith(upper), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", modules_under("store"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_store_does_not_import_the_mta(path: Path) -> None:
    for name in imported_modules(path):
        assert not name.startswith("posthouse.mta"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", modules_under("cli"), ids=lambda p: p.name)
def test_the_tools_reach_the_server_only_through_admin_and_app(path: Path) -> None:
    for name in imported_modules(path):
        assert not name.startswith("posthouse.server"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", modules_under("admin"), ids=lambda p: p.name)
def test_admin_serves_the_tools_and_never_imports_them(path: Path) -> None:
    for name in imported_modules(path):
        assert not name.startswith("posthouse.cli"), f"{path.name} imports {name}"
