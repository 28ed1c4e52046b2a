"""Train more, and the learning-rate finder, in a real browser: a continued run draws after its parent,
the finder's chart appears and its suggestion lands in the sidebar."""

import json
import re
import subprocess
import sys

import pytest

from tests.browser.conftest import choose, shot, start_app, stop_app, wait_idle

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_with_a_run(tmp_path_factory):
    from tests.browser.conftest import _require_browser

    _require_browser()
    tmp = tmp_path_factory.mktemp("tools")
    args = ["train", "sample", "--model", "mlp", "--epochs", "2", "--max-batches", "4", "--image-size", "16"]
    done = subprocess.run([sys.executable, "-m", "lib", *args, "--runs-dir", str(tmp / "runs"), "--json"],
                          capture_output=True, text=True, timeout=300, env=None)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    proc, url = start_app(tmp)
    yield url, run_id
    stop_app(proc)


def test_train_more_then_find_a_learning_rate(page, app_with_a_run):
    url, parent = app_with_a_run
    page.goto(f"{url}/train")
    wait_idle(page)
    page.get_by_role("button", name="Train more").click()
    page.get_by_text(re.compile(r"^Continues run")).first.wait_for(timeout=90_000)
    page.get_by_text("Completed.").first.wait_for(timeout=120_000)
    wait_idle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    shot(page, "train-more-1400")
    page.set_viewport_size({"width": 800, "height": 1000})
    wait_idle(page)
    shot(page, "train-more-800")
    page.set_viewport_size({"width": 1400, "height": 1000})
    sidebar = page.locator("[data-testid='stSidebar']")
    choose(page, sidebar.get_by_role("combobox", name="Model"), "mlp")  # a light model: the finder trains 100 batches
    sidebar.get_by_role("spinbutton", name="Image size (px)").fill("16")
    sidebar.get_by_role("button", name="Find learning rate").click()
    page.get_by_text("Use this learning rate").wait_for(timeout=400_000)
    caption = page.get_by_text(re.compile(r"^Suggested learning rate")).first.inner_text()
    suggested = re.search(r"rate ([0-9.e-]+):", caption).group(1)
    wait_idle(page)
    shot(page, "lr-finder-1400")
    page.set_viewport_size({"width": 800, "height": 1000})
    wait_idle(page)
    shot(page, "lr-finder-800")
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.locator(".st-key-train_lrf_use button").click()
    wait_idle(page)
    sidebar.locator(".st-key-train_lr").scroll_into_view_if_needed()
    shot(page, "lr-used-1400")
    box = sidebar.get_by_role("spinbutton", name="Learning rate")  # a typed field now, not a slider
    page.wait_for_function("([box, v]) => Number(box.value) === Number(v)", arg=[box.element_handle(), suggested])
    assert page.locator("[data-testid='stException']").count() == 0


def test_a_sweep_from_the_sidebar_shows_its_progress_and_stops_as_a_whole(page, app_with_a_run):
    url, _ = app_with_a_run
    page.goto(f"{url}/train")
    wait_idle(page)
    sidebar = page.locator("[data-testid='stSidebar']")
    choose(page, sidebar.get_by_role("combobox", name="Model"), "mlp")
    sidebar.get_by_role("spinbutton", name="Epochs").fill("20")
    sidebar.locator(".st-key-train_sweep_param1").scroll_into_view_if_needed()
    choose(page, sidebar.get_by_role("combobox", name="Vary #1"), "lr")
    sidebar.get_by_label("Values #1").fill("1e-3, 3e-3")
    sidebar.get_by_role("button", name="Start sweep").click()
    page.get_by_text(re.compile(r"^Sweep sweep-.*0 of 2 runs finished")).first.wait_for(timeout=120_000)
    # The page shows the sweep's run: the only one training, so the only one with a Stop of its own.
    page.locator(".st-key-train_stop button").wait_for(timeout=120_000)
    page.get_by_text(re.compile(r"^Steps recorded: ")).first.wait_for(timeout=120_000)
    wait_idle(page)
    sidebar.locator(".st-key-train_sweep_param1").scroll_into_view_if_needed()
    shot(page, "sweep-1400")
    page.set_viewport_size({"width": 800, "height": 1000})
    shot(page, "sweep-800")
    page.locator(".st-key-train_sweep_stop button").click()
    page.get_by_text(re.compile(r"^Sweep sweep-.*stopped")).first.wait_for(timeout=120_000)
    assert page.locator("[data-testid='stException']").count() == 0
