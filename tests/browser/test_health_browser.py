"""Health in a real browser: a duplicate pair shows side by side, one copy is marked, and the run trained next
reports one image fewer; then a finding that run validated opens on Explain."""

import re

import pytest

from tests.browser.conftest import arrive, choose, go, shot, wait_idle
from tests.health_helpers import PER_CLASS, planted_folder

pytestmark = pytest.mark.browser


def test_mark_a_duplicate_then_train_on_one_image_fewer(page, app_url, tmp_path):
    root = tmp_path / "planted"
    planted_folder(root)
    total = 3 * PER_CLASS + 7
    arrive(page, f"{app_url}/?source=folder&path={root}")
    go(page, "Health")
    dups = page.locator(".st-key-health_duplicates")
    dups.get_by_text("Leave out").first.wait_for(timeout=180_000)  # the check runs in the background first
    wait_idle(page)
    first = dups.get_by_text(re.compile(r"^Exact copies")).first
    first.wait_for()
    assert dups.get_by_text("a/resaved.png · a").count() == 1  # the pair: both copies, then their difference
    assert dups.get_by_text(re.compile(r"^Difference of the first two \(largest: 0 of 255\)")).count() >= 1
    shot(page, "health-1400")
    dups.get_by_text("Leave out").nth(1).click()  # a/resaved.png, the first group's second image
    marked = page.locator("[data-testid='stMetric']", has_text="Marked")
    marked.get_by_text("1", exact=True).wait_for(timeout=60_000)
    wait_idle(page)
    go(page, "Train")
    sidebar = page.locator("[data-testid='stSidebar']")
    choose(page, sidebar.get_by_role("combobox", name="Model"), "mlp")
    sidebar.get_by_role("spinbutton", name="Epochs").fill("1")
    sidebar.get_by_role("spinbutton", name="Image size (px)").fill("16")
    wait_idle(page)
    sidebar.get_by_role("button", name="Start", exact=True).click()
    page.get_by_text(re.compile(rf"Left out 1 marked file: trained on {total - 1} images")).first.wait_for(
        timeout=240_000
    )
    assert page.locator("[data-testid='stException']").count() == 0
    go(page, "Health")
    explain = page.locator(".st-key-health_duplicates").get_by_role("link", name="Explain").first
    explain.wait_for(timeout=60_000)  # the run's validation images now open on Explain
    shot(page, "health-explain-links")
    explain.click()
    page.get_by_role("heading", name="Explain", exact=True).wait_for()
    wait_idle(page)
    assert "image=" in page.url and page.get_by_text(re.compile(r"is not in this run's validation split")).count() == 0
    assert page.locator("[data-testid='stException']").count() == 0
