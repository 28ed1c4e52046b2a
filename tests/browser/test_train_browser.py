"""A short run in a real browser: Start, the live chart gains points while we watch, Stop ends it."""

import re

import pytest

from tests.browser.conftest import shot, wait_idle

pytestmark = pytest.mark.browser


def _steps(page) -> int:
    text = page.get_by_text(re.compile(r"^Steps recorded: [\d,]+")).first.inner_text()
    return int(re.search(r"([\d,]+)", text).group(1).replace(",", ""))


def _wait_for(page, predicate, timeout_s: float = 90) -> None:
    """Poll the page for a state, at 0.5 s intervals, up to a deadline."""
    for _ in range(int(timeout_s * 2)):
        if predicate():
            return
        page.wait_for_timeout(500)
    raise AssertionError("the page never reached the expected state")


def test_start_watch_points_grow_then_stop(page, app_url):
    page.goto(f"{app_url}/train")
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    wait_idle(page)
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_role("spinbutton", name="Epochs").fill("50")
    sidebar.get_by_role("button", name="Start", exact=True).click()
    page.get_by_text(re.compile(r"^Steps recorded: ")).first.wait_for(timeout=90_000)
    page.locator("[data-testid='stVegaLiteChart']").first.wait_for()
    first = _steps(page)
    _wait_for(page, lambda: _steps(page) > first)  # the fragment redraws from the store while we watch
    shot(page, "train-live")
    stop = page.locator(".st-key-train_stop button")  # not Streamlit's own header Stop
    stop.click()
    # The engine's own words since the time-limit stop (lib/runs/view.py): "Stopped after N steps on request."
    page.get_by_text(re.compile(r"^Stopped after [\d,]+ steps on request")).first.wait_for(timeout=60_000)
    stopped_at = _steps(page)
    assert stopped_at > first
    stop.wait_for(state="detached")  # the run ended: no more Stop
    assert page.locator("[data-testid='stException']").count() == 0
    shot(page, "train-stopped")
