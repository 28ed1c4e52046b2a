"""Visit every page through the sidebar navigation in a real browser; no page shows an error."""

import pytest

from tests.browser.conftest import shot, wait_idle

pytestmark = pytest.mark.browser

ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"


def test_every_page_through_sidebar(page, app_url):
    page.goto(app_url)
    page.get_by_role("heading", name="Dataset").wait_for()
    wait_idle(page)
    links = page.locator("[data-testid='stSidebarNav'] a")
    names = [links.nth(i).inner_text().strip() for i in range(links.count())]
    if not names:  # Streamlit hides the navigation while the app has a single page
        names = ["Dataset"]
    assert "Dataset" in names
    for name in names:
        if links.count():
            page.locator("[data-testid='stSidebarNav'] a", has_text=name).click()
        page.get_by_role("heading", name=name).first.wait_for()
        wait_idle(page)
        assert page.locator(ERRORS).count() == 0, f"error element on page {name}"
        shot(page, f"nav-{name.lower()}")


def test_dataset_page_shows_sample(page, app_url):
    page.goto(app_url)
    page.get_by_role("heading", name="Dataset").wait_for()
    wait_idle(page)
    page.locator("[data-testid='stMetric']", has_text="Images").get_by_text("640").wait_for()
    assert page.locator("[data-testid='stImage']").count() >= 24 or page.locator("img").count() >= 24
    assert page.locator("[data-testid='stVegaLiteChart']").count() >= 4
