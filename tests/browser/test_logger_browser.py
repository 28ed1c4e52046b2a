"""A user's own loop logging in the background: Train shows it, its curve grows while we watch, Stop ends it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lib.runs.store import RunStore
from tests.browser.conftest import shot, start_app, stop_app, wait_idle
from tests.browser.test_train_browser import _steps, _wait_for

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys, time
from lib.runs.logger import start_run

with start_run("background loop", config={"lr": 0.1}, runs_dir=sys.argv[1], flush_s=0.2) as run:
    for step in range(1, 3001):
        run.log(step=step, train_loss=1 / step, lr=0.1, grad_norm=step / 10)
        if step == 1:
            run.flush()
            print(run.id, flush=True)
        if run.should_stop:
            break
        time.sleep(0.1)  # the script's own "training"
"""


@pytest.fixture
def app(tmp_path):
    proc, url = start_app(tmp_path)
    yield url, tmp_path / "runs"
    stop_app(proc)


def test_a_script_logging_in_the_background_shows_on_train_grows_and_stops(app, page, tmp_path):
    url, runs = app
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(runs)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        run_id = script.stdout.readline().strip()
        page.goto(f"{url}/train")
        page.get_by_role("heading", name="Train", exact=True).wait_for()
        wait_idle(page)
        page.get_by_text(re.compile(r"^Steps recorded: ")).first.wait_for(timeout=90_000)
        page.locator("[data-testid='stVegaLiteChart']").first.wait_for()
        first = _steps(page)
        _wait_for(page, lambda: _steps(page) > first + 5)  # the fragment redraws from the store as the script logs
        shot(page, "logger-live")
        page.locator(".st-key-train_stop button").click()
        page.get_by_text("Stopped on request").first.wait_for(timeout=60_000)
        assert script.wait(timeout=60) == 0  # should_stop turned true in the script, which ended its block
        assert RunStore(runs).get_run(run_id).status == "stopped"
        assert page.locator("[data-testid='stException']").count() == 0
    finally:
        script.kill()
        script.wait()
