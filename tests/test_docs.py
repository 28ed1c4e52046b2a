"""README.md and docs/*.md point at what exists: every relative link at a file, and at a heading of it
when the link names one (GitHub's anchors: lower case, punctuation dropped, spaces to hyphens); every
repository path they name (`lib/data/images.py`, `bench/bench_*.py`) at a file; every `lib.x.y` name
and `from lib.x import y` at a module or a name defined at its top level."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")
REPO_PATH = re.compile(r"(?<![\w/.])(?:(?:lib|tests|bench|pages)/[\w/*.-]*\.py|streamlit_app\.py)")
DOTTED = re.compile(r"`(lib(?:\.\w+)+)`")
FROM_IMPORT = re.compile(r"^\s*from (lib(?:\.\w+)*) import ([\w, ]+)$", re.M)


def links(text: str) -> list[str]:
    """Link targets of a Markdown text, outside code blocks and inline code."""
    return LINK.findall(CODE.sub("", FENCE.sub("", text)))


def anchors(text: str) -> set[str]:
    """GitHub's anchor of every heading of a Markdown text."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", text), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` whose file or heading is missing."""
    broken = []
    for target in links(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(target)
    return broken


def top_level_names(module: Path) -> set[str]:
    """Functions, classes and assigned names at the top level of a module."""
    names = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.ImportFrom):
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def name_exists(dotted: str, root: Path = ROOT) -> bool:
    """`lib.data.images` (a module or package) or `lib.data.images.load_rgb` (a name defined in one)."""
    parts = dotted.split(".")
    for cut in (len(parts), len(parts) - 1):
        base = root.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
        if module.exists():
            return cut == len(parts) or parts[-1] in top_level_names(module)
    return False


def missing_names(page: Path, root: Path = ROOT) -> list[str]:
    """Repository paths and `lib` names that `page` mentions and that do not exist under `root`."""
    text = page.read_text()
    missing = [p for p in REPO_PATH.findall(text) if not any(root.glob(p))]
    named = DOTTED.findall(text) + [
        f"{m}.{n.strip()}" for m, names in FROM_IMPORT.findall(text) for n in names.split(",")
    ]
    return missing + [n for n in named if not name_exists(n, root)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_files_and_functions_exist(page: Path):
    assert missing_names(page) == []


def test_the_docs_pages_exist():
    names = {p.name for p in PAGES}
    assert {"pages.md", "cli.md", "distributed.md", "deployment.md", "benchmarks.md", "architecture.md"} <= names


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "there.md").write_text("# A heading, with punctuation\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#a-heading-with-punctuation) [web](https://example.com)\n"
        "[gone](missing.md) [no heading](there.md#nowhere) ![gone](img/x.png)\n"
        "`[code](ignored.md)`\n```\n[fenced](ignored.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md", "there.md#nowhere", "img/x.png"]


def test_a_stale_name_is_found(tmp_path):
    (tmp_path / "lib" / "data").mkdir(parents=True)
    (tmp_path / "lib" / "__init__.py").write_text("")
    (tmp_path / "lib" / "data" / "__init__.py").write_text("")
    (tmp_path / "lib" / "data" / "images.py").write_text("LIMIT = 1\ndef load_rgb(path): ...\n")
    page = tmp_path / "page.md"
    page.write_text(
        "`lib.data.images.load_rgb` `lib.data` lib/data/images.py lib/data/*.py\n"
        "`lib.images.load_rgb` `lib.data.images.gone` lib/data/gone.py tests/test_x.py\n"
        "```python\nfrom lib.data.images import LIMIT, load_rgb\nfrom lib.data.images import nothing\n```\n"
    )
    assert missing_names(page, tmp_path) == [
        "lib/data/gone.py",
        "tests/test_x.py",
        "lib.images.load_rgb",
        "lib.data.images.gone",
        "lib.data.images.nothing",
    ]
