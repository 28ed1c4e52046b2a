"""Evaluate in a real browser: a short run on the sample, click a confusion cell, see exactly its images."""

import os
import subprocess
import sys

import numpy as np
import pytest

from bench._app import REPO
from lib.evaluation.predictions import stored_predictions
from lib.runs.store import RunStore
from tests.browser.conftest import _require_browser, arrive, clipped_metrics, go, shot, start_app, stop_app, wait_idle

pytestmark = pytest.mark.browser
GALLERY = ".st-key-evaluate_gallery"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An app whose run store already holds one short run on the sample (a few batches)."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("evaluate-app")
    env = {"TORCHSCOPE_CACHE_DIR": str(tmp / "cache"), "TORCHSCOPE_RUNS_DIR": str(tmp / "runs")}
    done = subprocess.run(
        [sys.executable, "-m", "lib", "train", "sample", "--epochs", "1", "--max-batches", "4", "--image-size", "16",
         "--runs-dir", str(tmp / "runs")],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    proc, url = start_app(tmp, env)
    yield url, tmp / "runs"
    stop_app(proc)


def cell_captions(page) -> list[str]:
    return page.locator(f"{GALLERY} [data-testid='stImageCaption']").all_inner_texts()


def test_click_a_confusion_cell_and_see_its_images(served, page):
    url, runs = served
    arrive(page, url)  # through the router, as a visitor arrives; then its navigation
    go(page, "Evaluate")
    page.locator(f"{GALLERY} [data-testid='stImageCaption']").first.wait_for(timeout=120_000)  # predicted, drawn
    wait_idle(page)
    (record,) = RunStore(runs).list_runs()
    preds = stored_predictions(RunStore(runs), record.id)
    k = len(preds.classes)
    # A diagonal cell with images that is not the cell shown by default (the most confused pair).
    true = next(c for c in range(k) if ((preds.targets == c) & (preds.preds == c)).any())
    cells = page.locator(".st-key-evaluate_confusion g.cells_marks").locator("path")  # the clickable layer
    assert cells.count() == k * k  # one path per cell, rows true, in class order
    cells.nth(true * k + true).click()
    name = preds.classes[true]
    heading = page.locator(f"{GALLERY} h3").filter(has_text=f"True {name}, predicted {name}")
    heading.wait_for()
    wait_idle(page)
    idx = np.flatnonzero((preds.targets == true) & (preds.preds == true))
    idx = idx[np.argsort(-preds.confidence[idx], kind="stable")][:12]
    shown = [c.split("\n")[0] for c in cell_captions(page)]
    assert shown == [str(preds.paths[i]) for i in idx]  # exactly that cell, most confident first
    assert all(f"{name} → {name}" in c for c in cell_captions(page))
    assert page.locator("[data-testid='stException'], [data-testid='stAlertContentError']").count() == 0
    shot(page, "evaluate-1400")
    page.set_viewport_size({"width": 800, "height": 1000})
    wait_idle(page)
    shot(page, "evaluate-800")
    assert page.locator("[data-testid='stMetric']").count() == 6 and not clipped_metrics(page)
