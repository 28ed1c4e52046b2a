"""The layering rules of DESIGN.md and docs/architecture.md, read from the AST of every module: streamlit
only in lib/app/, no torch in pages/, no package of lib/ importing one above it, and no cycle of module-level
imports."""

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


def module_name(path: Path, root: Path) -> str:
    """`root/lib/data/index.py` -> `lib.data.index`; a package's `__init__.py` is the package."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def load_time_imports(path: Path, root: Path) -> list[str]:
    """The modules `path` imports as it is itself imported: module level, not inside functions and not
    under `if TYPE_CHECKING:` (those cannot form a cycle at import time)."""
    own = module_name(path, root).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    names: list[str] = []

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1] if node.level else [])
                module = ".".join(p for p in (base, node.module or "") if p)
                # `from lib.commands import train` may name a module: both are candidates.
                names.extend([module] + [f"{module}.{alias.name}" for alias in node.names])
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + [n for h in node.handlers for n in h.body] + node.orelse + node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(ast.parse(path.read_text(), filename=str(path)).body)
    return names


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports at load time."""
    paths = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    return {
        name: {m for m in load_time_imports(path, root) if m in paths and m != name} for name, path in paths.items()
    }


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_import_cycle_between_modules():
    cycle = import_cycle(import_graph(ROOT, "lib"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_sees_a_planted_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import pkg.b\n")
    (pkg / "b.py").write_text("from pkg import c\n")
    (pkg / "c.py").write_text("from . import a\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.e\n")
    (pkg / "e.py").write_text("def f():\n    import pkg.d\n")  # only at call time: no cycle
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.d"] == set() and graph["pkg.e"] == set()
    assert import_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("")
    assert import_cycle(import_graph(tmp_path, "pkg")) is None
