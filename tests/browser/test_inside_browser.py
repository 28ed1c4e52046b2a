"""The Train page's Inside view in a real browser at 1400 and 800 px: every chart draws inside its column
(its SVG no wider than the column holding it, its plot there), with a screenshot of each width.

One server for the module, on a run store written here: a finished run with layer records of six
tensors over 60 steps, three epochs of histograms and dead units, and machine samples.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from lib.runs.inside import write_rows
from lib.runs.store import RunStore
from tests.browser.conftest import _require_browser, start_app, stop_app, wait_idle

pytestmark = pytest.mark.browser

CHART = "[data-testid='stVegaLiteChart']"
TENSORS = ("features.0.weight", "features.1.weight", "features.1.bias", "features.4.weight", "head.weight", "head.bias")
TITLES = {
    "Update ratio by layer",
    "Gradient norm by layer",
    "Weights of features.0.weight by epoch",
    "Gradients of features.0.weight by epoch",
    "Dead ReLU units (latest epoch)",
    "CPU",
    "Memory",
}


def recorded_run(store: RunStore) -> str:
    run_id = store.create_run({"model": "cnn", "epochs": 3, "batch_size": 8, "lr": 1e-3}, name="inside-demo")
    for s in range(1, 61):
        store.record_step(run_id, s, (s - 1) // 20 + 1, 2 * math.exp(-s / 30), 1e-3, 100.0)
    for e in (1, 2, 3):
        store.record_epoch(run_id, e, 1.0 / e, 1.1 / e, 0.5 + 0.1 * e, 1e-3, 100.0)
    norms = [(s, (s - 1) // 20 + 1, n, 1.0 + i, 0.1 / (i + 1), 10 ** (-1 - i * 0.8 - s / 60))
             for s in range(1, 61) for i, n in enumerate(TENSORS)]  # fmt: skip
    write_rows(store, run_id, "norms", norms)
    edges = [i / 10 - 1.5 for i in range(31)]
    hist = [(e, n, w, edges, [int(100 * math.exp(-((i - 15) ** 2) / 30)) for i in range(30)])
            for e in (1, 2, 3) for n in TENSORS for w in ("weight", "grad")]  # fmt: skip
    write_rows(store, run_id, "histograms", hist)
    write_rows(store, run_id, "dead_units", [(e, f"features.{k}", 0.1 * k, 32) for e in (1, 2, 3) for k in (2, 6)])
    write_rows(store, run_id, "machine", [(1e9 + 3 * t, 3 * t, 90.0 + t, 600.0 + t, None, None) for t in range(10)])
    store.finish(run_id, "completed", "Trained 3 epochs.")
    return run_id


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    _require_browser()
    tmp = tmp_path_factory.mktemp("inside")
    run_id = recorded_run(RunStore(tmp / "runs"))
    proc, url = start_app(tmp)
    yield url, run_id
    stop_app(proc)


# Each chart's SVG and the nearest column (or the main block) that holds it, as boxes.
FIT = """els => els.map(el => {
  const svg = el.querySelector('svg.marks').getBoundingClientRect();
  const column = (el.closest("[data-testid='stColumn']") || el.closest("[data-testid='stMainBlockContainer']"))
    .getBoundingClientRect();
  const plot = el.querySelector('g.mark-group.role-frame.root > g > path.background').getBoundingClientRect();
  const title = el.querySelector('g.role-title text');
  return {title: title ? title.textContent : null, left: svg.left, right: svg.right, colLeft: column.left,
          colRight: column.right, plotWidth: plot.width, plotHeight: plot.height};
})"""


@pytest.mark.parametrize("width", [1400, 800])
def test_the_inside_charts_fit_their_columns(browser, app, width, tmp_path):
    url, run_id = app
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(f"{url}/train?run={run_id}")
        page.get_by_role("heading", name="Train", exact=True).wait_for()
        page.locator("[data-testid='stRadio'] label", has_text="Inside").click()
        page.locator(CHART).filter(has_text="Memory").locator("svg.marks").wait_for()
        wait_idle(page)
        boxes = page.locator(CHART).evaluate_all(FIT)
        assert TITLES <= {b["title"] for b in boxes}, boxes
        for b in boxes:
            assert b["colLeft"] - 1 <= b["left"] and b["right"] <= b["colRight"] + 1, (width, b)
            assert b["plotWidth"] > 0.5 * (b["colRight"] - b["colLeft"]) and b["plotHeight"] >= 60, (width, b)
        folder = Path(os.environ.get("TORCHSCOPE_SCREENSHOTS") or tmp_path)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(page.locator(CHART).count()):  # the app scrolls inside its own container: chart by chart
            page.locator(CHART).nth(i).screenshot(path=str(folder / f"inside-{width}-chart{i}.png"))
        assert len(list(folder.glob(f"inside-{width}-chart*.png"))) == len(boxes)
    finally:
        context.close()
