"""Explain in a real browser: a short run on the sample, switch method, click a point of the embedding map."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench._app import REPO
from tests.browser.conftest import _require_browser, shot, start_app, stop_app, wait_idle

pytestmark = pytest.mark.browser

OVERLAY = ".st-key-explain_overlay [data-testid='stImage'] img"
ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"

# Streamlit draws Vega charts as SVG: each point of the model's map is a <path> of its first symbol mark.
POINTS = ".st-key-explain_map g.mark-symbol.role-mark >> nth=0"


@pytest.fixture(scope="module")
def explain_app(tmp_path_factory):
    """A 1-epoch cnn run on the sample in a fresh store, and the app serving that store."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("explain_app")
    env = {**os.environ, "TORCHSCOPE_CACHE_DIR": str(tmp / "cache"), "TORCHSCOPE_RUNS_DIR": str(tmp / "runs")}
    args = ["--epochs", "1", "--max-batches", "4", "--batch-size", "32", "--image-size", "32", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "lib", "train", "sample", *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    proc, url = start_app(tmp)
    yield url, run_id
    stop_app(proc)


def _changed(page, read, before, timeout_s: float = 60):
    """Poll read() until it differs from before (the page reruns after an input); return the new value."""
    for _ in range(int(timeout_s * 4)):
        now = read()
        if now != before:
            return now
        page.wait_for_timeout(250)
    raise AssertionError(f"still {before!r} after {timeout_s} s")


def test_switch_method_then_click_a_point(page, explain_app):
    url, run_id = explain_app
    page.goto(f"{url}/explain?run={run_id}")
    page.get_by_role("heading", name="Explain", exact=True).wait_for()
    page.locator(POINTS).locator("path").first.wait_for(timeout=120_000)
    wait_idle(page)
    overlay_src = lambda: page.locator(OVERLAY).nth(1).get_attribute("src")  # noqa: E731
    caption = lambda: page.locator(".st-key-explain_overlay [data-testid='stImageCaption']").first.inner_text()  # noqa: E731
    first_src, first_caption = overlay_src(), caption()
    shot(page, "explain-1400")

    page.locator(".st-key-explain_method").get_by_text("Integrated Gradients").click()
    _changed(page, overlay_src, first_src)
    wait_idle(page)
    assert caption() == first_caption  # same image, another map
    assert "Integrated Gradients for" in page.locator(".st-key-explain_overlay").inner_text()
    # IG is signed: its colour scale runs from -m through 0 to m (Vega writes a minus as U+2212).
    scale = page.locator(".st-key-explain_overlay [data-testid='stVegaLiteChart']").first
    ticks = [t for t in scale.locator("svg text").all_text_contents() if t != "Colour scale"]
    assert len(ticks) == 3 and ticks[1] == "0" and ticks[0] == "\u2212" + ticks[2], ticks

    ig_src = overlay_src()
    point = page.locator(POINTS).locator("path").nth(7)  # any point but the ringed one will do
    point.scroll_into_view_if_needed()
    box = point.bounding_box()  # in the viewport now: the mouse clicks where the point is drawn
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    new_caption = _changed(page, caption, first_caption)
    wait_idle(page)
    assert overlay_src() != ig_src and new_caption in page.url.replace("%2F", "/")  # the URL follows the image
    # The page stays at the map: the clicked image is explained right under it too, in view.
    picked = page.locator(".st-key-explain_picked [data-testid='stImageCaption']").first
    assert picked.inner_text() == new_caption
    below = page.locator(".st-key-explain_picked").bounding_box()["y"] - point.bounding_box()["y"]
    # Within a screen of the map: the image, its attribution map and the colour scale.
    assert 0 < below < 1000 and page.locator(".st-key-explain_picked img").count() == 2
    assert page.locator(".st-key-explain_picked [data-testid='stVegaLiteChart']").count() == 2  # scale, probabilities
    assert page.locator(ERRORS).count() == 0
    shot(page, "explain-clicked-1400")
    page.set_viewport_size({"width": 800, "height": 1000})
    wait_idle(page)
    shot(page, "explain-800")
