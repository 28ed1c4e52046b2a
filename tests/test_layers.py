"""The layering rules of DESIGN.md and docs/architecture.md, read from the AST of every module: streamlit
only in lib/app/, no torch in pages/, and no package of lib/ importing one above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: a package may import itself and those before it, never those after it.
ORDER = ("settings", "charts", "data", "pixels", "runs", "training", "evaluation", "health", "commands", "app")
RANK = {name: i for i, name in enumerate(ORDER)}


def imported_modules(path: Path) -> list[str]:
    """Every module `path` imports, at any depth (function-level imports count too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from lib import data` names a package through its alias list.
            if node.module == "lib":
                names += [f"lib.{alias.name}" for alias in node.names]
    return names


def lib_package(module: str) -> str | None:
    """`lib.data.index` -> `data`; `lib.settings` -> `settings`; `lib` or `lib.__main__` -> None."""
    parts = module.split(".")
    if parts[0] != "lib" or len(parts) < 2 or parts[1].startswith("__"):
        return None
    return parts[1]


def lib_modules() -> list[Path]:
    return sorted(p for p in (ROOT / "lib").rglob("*.py"))


def test_every_lib_package_is_ranked():
    packages = {
        lib_package("lib." + ".".join(p.relative_to(ROOT / "lib").with_suffix("").parts)) for p in lib_modules()
    }
    packages.discard(None)
    assert packages <= set(RANK), f"add {sorted(packages - set(RANK))} to ORDER"


@pytest.mark.parametrize("path", lib_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_lib_imports_point_down(path: Path):
    own = lib_package("lib." + ".".join(path.relative_to(ROOT / "lib").with_suffix("").parts))
    for module in imported_modules(path):
        if module.split(".")[0] == "streamlit":
            assert own == "app", f"{path.name} imports streamlit outside lib/app/"
        target = lib_package(module)
        if own is None or target is None:
            continue
        assert RANK[target] <= RANK[own], f"lib/{own} imports lib/{target}, which sits above it"


@pytest.mark.parametrize(
    "path", sorted((ROOT / "pages").glob("*.py")) + [ROOT / "streamlit_app.py"], ids=lambda p: p.name
)
def test_pages_do_not_import_torch(path: Path):
    for module in imported_modules(path):
        assert module.split(".")[0] not in {"torch", "torchvision", "captum"}, f"{path.name} imports {module}"


def test_the_checker_sees_a_violation(tmp_path):
    # The rules above pass vacuously if imported_modules saw nothing; prove it reads real imports.
    bad = tmp_path / "bad.py"
    bad.write_text("import streamlit as st\nfrom lib.app import cache\ndef f():\n    import torch\n")
    assert imported_modules(bad) == ["streamlit", "lib.app", "torch"]
