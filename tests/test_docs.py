"""Every relative link in README.md and docs/*.md points at a file that exists, and at a heading of it
when the link names one (GitHub's anchors: lower case, punctuation dropped, spaces to hyphens)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")


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


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    assert broken_links(page) == []


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
