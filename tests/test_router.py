"""Every page of the navigation opens through the router (streamlit_app.py) with no exception.

The list of pages is read from the router's own `st.Page(...)` calls, so a page added there is tested here.
"""

import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"


def navigation() -> list[tuple[str, str]]:
    """(page file, title) of every st.Page the router builds, in its order."""
    pages = []
    for node in ast.walk(ast.parse(APP.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Page":
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg == "title"}
            pages.append((ast.literal_eval(node.args[0]), kwargs["title"]))
    return pages


def test_the_navigation_is_read_from_the_router():
    pages = navigation()
    assert len(pages) >= 3 and all(path.startswith("pages/") and (APP.parent / path).is_file() for path, _ in pages)


@pytest.mark.parametrize(("path", "title"), navigation(), ids=[t for _, t in navigation()])
def test_every_page_opens_through_the_router(path, title):
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    at.switch_page(path)
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title][:1] == [title]  # the page the navigation names is the one drawn
    assert not at.error, [e.value for e in at.error]
