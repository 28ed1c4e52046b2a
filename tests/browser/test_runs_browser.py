"""The Runs page in a real browser: tick two runs in the table, both draw in the overlay, download the CSV."""

import csv
import io

import pytest

from lib.runs.export import bundle_bytes
from lib.runs.store import RunStore
from tests.browser.conftest import arrive, go, shot, start_app, stop_app, wait_for_uploads_in_memory, wait_idle
from tests.test_page_runs import add_run

pytestmark = pytest.mark.browser
ROW_PX = 35  # st.dataframe's default row (and header) height


@pytest.fixture(scope="module")
def runs_app(tmp_path_factory):
    """The app over a runs folder holding three finished runs: alpha, beta, gamma (newest first in the table)."""
    tmp = tmp_path_factory.mktemp("runs-app")
    store = RunStore(tmp / "runs")
    ids = {
        name: add_run(store, name, lr=lr, steps=300) for name, lr in (("alpha", 0.01), ("beta", 0.1), ("gamma", 0.03))
    }
    proc, url = start_app(tmp)
    yield url, store, ids
    stop_app(proc)


def tick_row(page, row: int) -> None:
    """Click the selection checkbox of a table row (the grid is a canvas: click by position)."""
    box = page.locator(".st-key-runs_table [data-testid='stDataFrame']").bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + ROW_PX * (row + 1) + ROW_PX / 2)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='running']", state="attached", timeout=5_000)
    wait_idle(page)


def test_select_two_runs_see_both_overlaid_and_download_the_csv(page, runs_app):
    url, store, ids = runs_app
    arrive(page, url)
    go(page, "Runs")
    wait_idle(page)
    loss = page.locator("[data-testid='stVegaLiteChart']").filter(has_text="Training loss")
    loss.wait_for()  # the latest three runs are drawn without a click
    assert all(f">{name}<" in loss.locator("svg").inner_html() for name in ("alpha", "beta", "gamma"))
    tick_row(page, 2)  # alpha off: gamma and beta stay
    page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='stVegaLiteChart'] svg\").innerHTML.includes('>alpha<')"
    )
    legend = loss.locator("svg").inner_html()
    assert ">gamma<" in legend and ">beta<" in legend and ">alpha<" not in legend
    assert page.locator("[data-testid='stException']").count() == 0
    shot(page, "runs-1400x1000")
    with page.expect_download() as download:
        page.get_by_role("button", name="Metrics (long CSV, every step)").click()
    rows = list(csv.DictReader(io.StringIO(open(download.value.path()).read())))
    for name in ("gamma", "beta"):
        mine = [r for r in rows if r["run_id"] == ids[name] and r["kind"] == "step"]
        assert len(mine) == len(store.steps(ids[name])) == 300
    assert {r["run_id"] for r in rows} == {ids["gamma"], ids["beta"]}
    for width, height in ((1400, 3400), (800, 1000), (800, 4400)):  # the tall ones show the whole page
        page.set_viewport_size({"width": width, "height": height})
        wait_idle(page)
        shot(page, f"runs-{width}x{height}")


def test_an_imported_bundle_joins_the_table_and_leaves_server_memory(page, runs_app, tmp_path):
    url, store, _ = runs_app
    other = RunStore(tmp_path / "elsewhere")
    bundle = bundle_bytes(other, [add_run(other, "delta", lr=0.2, steps=50)])
    page.goto(f"{url}/runs")
    page.get_by_role("heading", name="Runs", exact=True).wait_for()
    wait_idle(page)
    page.get_by_text("Import runs (.zip bundle)").click()
    page.locator(".st-key-runs_import_file input[type='file']").set_input_files(
        {"name": "delta.zip", "mimeType": "application/zip", "buffer": bundle}
    )
    wait_idle(page)
    page.locator(".st-key-runs_import button").click()
    page.get_by_text("Imported 1 run(s).").wait_for()
    assert [r.name for r in store.list_runs() if r.name == "delta"] == ["delta"]
    wait_for_uploads_in_memory(url, below=len(bundle))  # imported: the bundle's bytes are not kept
    assert page.locator("[data-testid='stException']").count() == 0
