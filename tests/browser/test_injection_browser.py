"""A crafted link or file name shows its text in a real browser: no link, image or formatting from it."""

import urllib.parse

import pytest

from lib.app.text import JOINER
from lib.data.explore import short_name
from tests.browser.conftest import shot, start_app, stop_app, wait_idle
from tests.helpers import write_imagefolder, write_truncated_jpeg
from tests.test_text import NAME, PAYLOAD

pytestmark = pytest.mark.browser
# Anything the payload could have turned into: a link or image to its host, bold, red text, inline code.
INJECTED = (
    "a[href*='e.example'], img[src*='e.example'], [data-testid='stMain'] strong, "
    "[data-testid='stSidebar'] strong, span[style*='red'], span.stMarkdownColoredText, "
    "[data-testid='stAlert'] code, [data-testid='stCaptionContainer'] code"
)


@pytest.fixture(scope="module")
def local_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inject")
    proc, url = start_app(tmp)
    yield url, tmp
    stop_app(proc)


def _open(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name="Dataset", exact=True).wait_for()
    wait_idle(page)


def test_crafted_source_in_link_is_text(page, local_app):
    url, _ = local_app
    _open(page, f"{url}/?source={urllib.parse.quote(PAYLOAD)}")
    alert = page.locator("[data-testid='stSidebar'] [data-testid='stAlert']")
    shot(page, "injection-link")
    assert PAYLOAD in alert.inner_text().replace(JOINER, "")
    assert page.locator(INJECTED).count() == 0


def test_crafted_folder_class_and_file_names_are_text(page, local_app):
    url, tmp = local_app
    root = write_imagefolder(tmp / NAME, classes=(NAME,), per_class=2)
    write_truncated_jpeg(root / NAME / f"{NAME}.jpg")
    (root / f"{NAME}-empty").mkdir()
    _open(page, f"{url}/?source=folder&path={urllib.parse.quote(str(root))}")
    # The bad-file table appears once the background full check has finished and rerun the page.
    page.locator("[data-testid='stDataFrame']").wait_for()
    wait_idle(page)
    shot(page, "injection-names")
    body = page.locator("[data-testid='stMain']").inner_text().replace(JOINER, "")
    assert f"Empty class folders: {NAME}-empty" in body
    # Captions: the class on one line, the file name cut in the middle (short_name) on the next.
    assert f"{NAME}\n{short_name(f'{NAME}_0.png')}" in body
    assert page.locator(INJECTED).count() == 0
