"""Visit every page through the sidebar navigation in a real browser; no page shows an error."""

import re

import pytest

from tests.browser.conftest import shot, wait_idle

pytestmark = pytest.mark.browser

ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"


def test_every_page_through_sidebar(page, app_url):
    page.goto(app_url)
    page.get_by_role("heading", name="Dataset").wait_for()
    wait_idle(page)
    links = page.locator("[data-testid='stSidebarNav'] a")
    names = [links.nth(i).inner_text().strip().split("\n")[-1] for i in range(links.count())]  # after the icon
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
    # One full page of the grid (24 thumbnails) and the four dataset charts.
    page.locator("[data-testid='stImage'] img").nth(23).wait_for()
    page.locator("[data-testid='stVegaLiteChart']").nth(3).wait_for()


def test_open_folder_from_sidebar_updates_url(page, app_url, tmp_path):
    from tests.helpers import write_imagefolder

    root = write_imagefolder(tmp_path / "pets", classes=("cat", "dog", "fish"), per_class=3)
    page.goto(app_url)
    page.get_by_role("heading", name="Dataset").wait_for()
    wait_idle(page)
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("Folder on the server").click()
    wait_idle(page)
    sidebar.get_by_label("Path").fill(str(root))
    sidebar.get_by_label("Path").press("Enter")
    wait_idle(page)
    sidebar.get_by_role("button", name="Open").click()
    page.locator("[data-testid='stMetric']", has_text="Classes").get_by_text("3").wait_for()
    assert "source=folder" in page.url
    # The link alone reproduces the view in a fresh tab.
    other = page.context.new_page()
    other.goto(page.url)
    other.locator("[data-testid='stMetric']", has_text="Images").get_by_text("9").wait_for()
    assert other.locator(ERRORS).count() == 0


def test_channels_page_draws_heatmaps_and_histograms(page, app_url):
    page.goto(f"{app_url}/channels")
    page.get_by_role("heading", name="Channels", exact=True).wait_for()
    wait_idle(page)
    # Vega draws chart titles on canvas, so the charts are found by their keyed containers.
    page.locator(
        ".st-key-normalized_channels [data-testid='stVegaLiteChart'] canvas, "
        ".st-key-normalized_channels [data-testid='stVegaLiteChart'] svg"
    ).first.wait_for()
    page.locator(
        ".st-key-pixel_histograms [data-testid='stVegaLiteChart'] canvas, "
        ".st-key-pixel_histograms [data-testid='stVegaLiteChart'] svg"
    ).first.wait_for()
    page.get_by_text("ImageNet").first.click()
    wait_idle(page)
    assert page.locator(ERRORS).count() == 0
    shot(page, "channels-imagenet")


def test_clicking_a_class_bar_filters_the_grid(page, app_url):
    page.goto(app_url)
    page.get_by_role("heading", name="Dataset").wait_for()
    wait_idle(page)
    chart = page.locator(".st-key-class_chart [data-testid='stVegaLiteChart']").first
    chart.wait_for()
    box = chart.bounding_box()
    # Four bars share the plot width; the first (circle) sits at about a fifth of the way across.
    page.mouse.click(box["x"] + box["width"] * 0.18, box["y"] + box["height"] * 0.5)
    page.locator("[data-testid='stImage']").first.get_by_text(re.compile(r"^circle")).wait_for()
    wait_idle(page)
    captions = page.locator("[data-testid='stImage'] [data-testid='stImageCaption']").all_inner_texts()
    assert captions and all(c.split()[0] == "circle" for c in captions), captions[:5]
