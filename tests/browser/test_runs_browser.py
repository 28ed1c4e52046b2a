"""The Runs page in a real browser: tick two runs in the table, both draw in the overlay, download the CSV."""

import csv
import io

import pytest

from lib.runs.export import bundle_bytes
from lib.runs.store import RunStore
from tests.browser.conftest import (
    arrive,
    expect,
    go,
    shot,
    start_app,
    stop_app,
    wait_for_uploads_in_memory,
    wait_idle,
)
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
    page.locator(".st-key-runs_import_upload input[type='file']").set_input_files(
        {"name": "delta.zip", "mimeType": "application/zip", "buffer": bundle}
    )
    wait_idle(page)
    page.locator(".st-key-runs_import button").click()
    page.get_by_text("Imported 1 run(s): delta.").wait_for()
    assert [r.name for r in store.list_runs() if r.name == "delta"] == ["delta"]
    wait_for_uploads_in_memory(url, below=len(bundle))  # imported: the bundle's bytes are not kept
    assert page.locator("[data-testid='stException']").count() == 0


def pick(page, name: str, data: bytes) -> None:
    """Choose a bundle in the import box's file picker, as a user does."""
    page.locator(".st-key-runs_import_upload input[type='file']").set_input_files(
        {"name": name, "mimeType": "application/zip", "buffer": data}
    )
    wait_idle(page)


def grid(page) -> tuple[int, str]:
    """The table's rows (from the grid's accessible copy, which Streamlit renders beside the canvas) and all its text."""
    table = page.locator(".st-key-runs_table table[role='grid']")
    return int(table.get_attribute("aria-rowcount")) - 1, table.inner_text()


@pytest.mark.parametrize(("width", "name"), [(1400, "alpha"), (800, "beta")])
def test_a_bundle_imported_twice_reads_apart_and_counts_at_once(page, runs_app, width, name):
    url, store, ids = runs_app
    bundle = bundle_bytes(store, [ids[name]])  # its run is here already: refused, then imported as copies
    page.set_viewport_size({"width": width, "height": 1000})
    page.goto(f"{url}/runs")
    page.get_by_role("heading", name="Runs", exact=True).wait_for()
    wait_idle(page)
    before, _ = grid(page)
    page.get_by_text("Import runs (.zip bundle)").click()
    pick(page, f"{name}.zip", bundle)
    button = page.locator(".st-key-runs_import button")
    button.click()
    error = page.locator("[data-testid='stAlert']").filter(has_text="was refused")
    expect(error).to_contain_text(f"{name}.zip was refused: run {ids[name]} is already in")
    assert ".upload-" not in error.inner_text()  # the file as the user named it, not the server's copy
    page.get_by_text("Give runs whose id is taken a new id", exact=True).click()
    wait_idle(page)
    expect(button).to_be_enabled()  # the refused file is still picked: no need to choose it again
    for n in (2, 3):
        if n == 3:  # an imported upload is let go (it left the server's memory): the box is empty again
            expect(button).to_be_disabled()
            pick(page, f"{name}.zip", bundle)
        button.click()  # waits for the upload's run to enable it
        page.get_by_text(f"Imported 1 run(s): {name} ({n}).").wait_for()
        wait_idle(page)
        # At once: no page switch between the import and the count (the grid redraws a moment after the run).
        table = page.locator(".st-key-runs_table table[role='grid']")
        expect(table).to_have_attribute("aria-rowcount", str(before + n - 1 + 1), timeout=30_000)
        rows, text = grid(page)
        assert all(f"{name} ({k})" in text for k in range(2, n + 1)) and f"{name} ({n + 1})" not in text
        loss = page.locator("[data-testid='stVegaLiteChart']").filter(has_text="Training loss")
        assert f">{name} ({n})<" in loss.locator("svg").inner_html()  # the copy is ticked and drawn
        ticked = page.locator(".st-key-runs_table table[role='grid'] tr[aria-selected='true']").all_inner_texts()
        assert len(ticked) == 1 and f"{name} ({n})" in ticked[0], ticked  # the grid ticks what the charts draw
    assert store.get_run(ids[name]).name == name and len({r.name for r in store.list_runs()}) == len(
        store.list_runs()
    )  # every row named apart
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # nothing past the page
    assert page.locator("[data-testid='stException']").count() == 0
    shot(page, f"runs-import-{width}")
    wait_for_uploads_in_memory(url, below=len(bundle))  # imported in the end: the bundle's bytes are let go
