"""Every chart on every page at 1400 and 800 px wide (sidebar open: about 470 px of page at 800): each chart's
drawing within its column (or scrolling inside its own box) and each of its texts whole, inside the chart.

One server for the module, over a 10-class folder (ten classes made Evaluate's matrix run past the column) with
one trained run and a synthetic one beside it, so Runs draws its curves and parallel coordinates.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench._app import REPO
from lib.runs.store import RunStore
from tests.browser.conftest import (
    _require_browser,
    arrive,
    charts_that_do_not_fit,
    go,
    shot,
    start_app,
    stop_app,
    wait_idle,
)
from tests.helpers import write_imagefolder
from tests.test_page_runs import add_run

pytestmark = pytest.mark.browser
CHART = "[data-testid='stVegaLiteChart']"
ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, the dataset folder): a one-epoch run on ten classes of random 16 px images, and a synthetic run."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("narrow")
    data = write_imagefolder(tmp / "digits", classes=tuple(f"digit{i}" for i in range(10)), per_class=8)
    env = {**os.environ, "TORCHSCOPE_CACHE_DIR": str(tmp / "cache"), "TORCHSCOPE_RUNS_DIR": str(tmp / "runs")}
    done = subprocess.run(
        [sys.executable, "-m", "lib", "train", str(data), "--epochs", "1", "--image-size", "16", "--batch-size", "16",
         "--name", "trained", "--runs-dir", str(tmp / "runs")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    add_run(RunStore(tmp / "runs"), "synthetic", lr=0.1, steps=60, model="cnn")
    proc, url = start_app(tmp)
    yield url, data
    stop_app(proc)


def wait_for_charts(page, count: int) -> None:
    page.wait_for_function(
        f'() => document.querySelectorAll("{CHART} svg.marks, {CHART} canvas.marks").length >= {count}',
        timeout=180_000,
    )
    wait_idle(page)


# page: charts it draws at least (Train draws its run's curves; Explain its probabilities and two maps)
PAGES = {"Dataset": 4, "Channels": 3, "Train": 3, "Evaluate": 3, "Explain": 3}


@pytest.mark.parametrize("width", [1400, 800])
def test_every_chart_and_its_text_fit_the_column(browser, served, width):
    url, data = served
    page = browser.new_context(viewport={"width": width, "height": 1000}).new_page()
    page.set_default_timeout(120_000)
    try:
        arrive(page, f"{url}/?source=folder&path={data}")
        misfits = {}
        for name, count in PAGES.items():
            if name != "Dataset":
                go(page, name)
            wait_for_charts(page, count)
            misfits[name] = charts_that_do_not_fit(page)
            shot(page, f"narrow-{name.lower()}-{width}")
        page.goto(f"{url}/runs")  # by its link: the Explain page's last reruns could swallow a sidebar click
        page.get_by_role("heading", name="Runs", exact=True).wait_for()
        wait_idle(page)
        wait_for_charts(
            page, 5
        )  # the latest runs, drawn unticked: loss, val loss, accuracy, parallel coordinates, scatter
        misfits["Runs"] = charts_that_do_not_fit(page)
        shot(page, f"narrow-runs-{width}")
        assert misfits == {name: [] for name in misfits}
        assert page.locator(ERRORS).count() == 0
    finally:
        page.context.close()
