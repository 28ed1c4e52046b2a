"""The pages as a user meets them, in a real browser: charts fill their containers and read whole,
settings survive page switches and live in the URL, refusals are sentences where the user looks.

One server for the module, on a run store written here: a finished one-cycle run, a diverged run and,
while a test watches, a run that "trains" from this process (its pid is alive, so it reads as running).
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from urllib.parse import parse_qs, urlparse

import pytest

from lib.charts.channels import histogram_titles
from lib.runs.store import RunStore
from tests.browser.conftest import (
    _require_browser,
    choose,
    clipped_metrics,
    expect,
    go,
    shot,
    start_app,
    stop_app,
    wait_idle,
)
from tests.helpers import write_imagefolder

pytestmark = pytest.mark.browser

CHART = "[data-testid='stVegaLiteChart']"
SIDEBAR = "[data-testid='stSidebar']"
ERRORS = "[data-testid='stException']"
STEPS, PER_EPOCH = 300, 100


def onecycle_lr(step: int, total: int = STEPS, top: float = 1e-3) -> float:
    """torch's OneCycleLR (cosine, pct_start 0.3, div 25, final div 1e4), by hand."""
    warm = 0.3 * total
    low, end = top / 25, top / 25 / 1e4
    if step <= warm:
        return low + (top - low) * (1 - math.cos(math.pi * step / warm)) / 2
    return end + (top - end) * (1 + math.cos(math.pi * (step - warm) / (total - warm))) / 2


def finished_run(store: RunStore) -> str:
    config = {"model": "cnn", "epochs": 3, "batch_size": 8, "lr": 1e-3, "schedule": "onecycle", "image_size": 24}
    run_id = store.create_run(config, root="/data/shapes", name="onecycle-demo")
    store.update_run(run_id, total_steps=STEPS)
    for s in range(1, STEPS + 1):
        store.record_step(run_id, s, (s - 1) // PER_EPOCH + 1, 2 * math.exp(-s / 100), onecycle_lr(s), 100.0)
    for e in (1, 2, 3):
        store.record_epoch(run_id, e, 1.0 / e, 1.1 / e, 0.5 + 0.1 * e, 1e-3, 100.0)
    store.finish(run_id, "completed", "Trained 3 epochs.")
    return run_id


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(base URL, run store, the finished run's id, a tiny dataset's folder)."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("surface")
    store = RunStore(tmp / "runs")
    diverged = store.create_run({"model": "mlp", "epochs": 2, "lr": 10.0, "optimizer": "sgd"}, name="too-hot")
    store.record_epoch(diverged, 1, 3.0, 45_863.0, 0.25, 10.0, 50.0)
    store.finish(diverged, "diverged", "The validation loss became 45,863 at epoch 1. Lower the learning rate.")
    run_id = finished_run(store)
    tiny = write_imagefolder(tmp / "tiny", classes=("a", "b"), per_class=3)
    proc, url = start_app(tmp)
    yield url, store, run_id, str(tiny)
    stop_app(proc)


def open_page(page, url: str, heading: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=heading, exact=True).first.wait_for()
    wait_idle(page)


def params(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


# Plot area and container of every chart, read from the rendered SVG: the plot is the union of the
# view backgrounds (one per facet cell), the container is Streamlit's chart element.
GEOMETRY = """els => els.map(el => {
  const box = el.getBoundingClientRect();
  const svg = el.querySelector('svg.marks');
  const cells = [...el.querySelectorAll('g.mark-group.role-frame.root > g > path.background, g.role-scope.cell > g > path.background')]
    .map(p => p.getBoundingClientRect()).filter(r => r.width > 0 && r.height > 0);
  const tops = cells.map(r => r.top), bottoms = cells.map(r => r.bottom);
  const title = [...el.querySelectorAll('g.role-title text')].find(t => !t.closest('[class*="header"]'));
  const t = title ? title.getBoundingClientRect() : null;
  const s = svg.getBoundingClientRect();
  return {container: box.height, plot: cells.length ? Math.max(...bottoms) - Math.min(...tops) : 0,
          title: title ? title.textContent : null,
          titleInside: !!t && t.top >= s.top - 0.5 && t.bottom <= s.bottom + 0.5 && t.right <= s.right + 0.5};
})"""


def charts(page) -> list[dict]:
    page.locator(f"{CHART} svg.marks").first.wait_for()
    return page.locator(CHART).evaluate_all(GEOMETRY)


def axis_labels(page, chart_index: int, orient: str) -> list[dict]:
    """Tick labels of one axis of one chart: text and box (x axes are 'bottom', y axes 'left')."""
    return (
        page.locator(CHART)
        .nth(chart_index)
        .evaluate(
            """(el, orient) => [...el.querySelectorAll('g.role-axis')]
          .filter(a => a.getAttribute('aria-label') && a.getAttribute('aria-label').includes(orient === 'left' ? 'Y-axis' : 'X-axis'))
          .flatMap(a => [...a.querySelectorAll('g.role-axis-label text')])
          .map(t => { const r = t.getBoundingClientRect(); return {text: t.textContent, top: r.top, bottom: r.bottom, left: r.left, right: r.right}; })""",
            orient,
        )
    )


def overlapping(labels: list[dict]) -> bool:
    boxes = sorted(labels, key=lambda b: (b["top"], b["left"]))
    return any(
        a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
    )


def shot_charts(page, name: str) -> None:
    """With TORCHSCOPE_SCREENSHOTS, also one picture per chart (the app scrolls inside its own
    container, so a page screenshot shows only the first screen)."""
    folder = os.environ.get("TORCHSCOPE_SCREENSHOTS")
    if folder:
        for i in range(page.locator(CHART).count()):
            page.locator(CHART).nth(i).screenshot(path=f"{folder}/{name}-chart{i}.png")


def assert_charts_fill(page, where: str, expected_titles: set[str]) -> None:
    found = charts(page)
    assert expected_titles <= {c["title"] for c in found}, (where, found)
    for c in found:
        assert c["titleInside"], (where, c)
        if c["title"].startswith("Colour scale"):  # a legend drawn as a chart (lib/charts/scales.py): a thin bar
            assert 10 <= c["plot"] <= c["container"] <= 100, (where, c)
        else:
            assert c["plot"] >= 0.6 * c["container"], (where, c)


# --- 0. a link is the app, even as the server's first visit (keep this test first in the module) ----


def test_a_deep_link_as_the_servers_first_visit_opens_the_app_on_that_view(page, app):
    url, *_ = app
    open_page(page, f"{url}/channels?source=sample&class=square&image=3", "Channels")
    page.locator(SIDEBAR).get_by_text("Data source").wait_for()  # the router ran, not the page alone
    expect(page.get_by_label(re.compile(r"^Image \(0 to"))).to_have_value("3")
    expect(page.get_by_role("combobox", name="Class")).to_have_value("square")
    go(page, "Dataset")


# --- 1. charts that read at a glance -------------------------------------------------------------


@pytest.mark.parametrize("width", [1400, 800])
def test_every_chart_fills_its_container_with_whole_titles(browser, app, width):
    url, _, run_id, _ = app
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        open_page(page, url, "Dataset")
        page.locator(f"{CHART}").nth(3).wait_for()
        page.locator("[data-testid='stImage'] img").nth(23).wait_for()  # the grid drawn, for the screenshot
        assert_charts_fill(page, "dataset", {"Images per class", "Image sizes", "Aspect ratio", "Modes and formats"})
        assert page.locator("[data-testid='stMetric']").count() == 6 and not clipped_metrics(
            page
        )  # Marked too (issue 19)
        shot(page, f"tour-dataset-{width}")
        shot_charts(page, f"tour-dataset-{width}")
        go(page, "Channels")
        assert_charts_fill(page, "channels", set(histogram_titles(True)))  # ImageNet by default
        assert not clipped_metrics(page)
        shot(page, f"tour-channels-{width}")
        shot_charts(page, f"tour-channels-{width}")
        go(page, "Train")
        page.locator(CHART).nth(2).wait_for()
        assert_charts_fill(page, "train", {"Loss", "Accuracy", "Learning rate"})
        assert not clipped_metrics(page)
        # Integer epoch ticks; LR ticks in exponent form, none printed over another.
        assert [t["text"] for t in axis_labels(page, 1, "bottom")] == ["1", "2", "3"]
        lr_ticks = axis_labels(page, 2, "left")
        assert len(lr_ticks) >= 2 and all(re.fullmatch(r"\d(\.\d+)?e-\d+", t["text"]) for t in lr_ticks), lr_ticks
        assert not overlapping(lr_ticks) and not overlapping(axis_labels(page, 0, "bottom"))
        shot(page, f"tour-train-{width}")
        shot_charts(page, f"tour-train-{width}")
        go(page, "Runs")
        shot(page, f"tour-runs-{width}")  # its charts need rows ticked in the grid: tests/test_page_runs.py
        assert page.locator(ERRORS).count() == 0
    finally:
        context.close()


def lr_line_span(page) -> float:
    """How much of the LR plot's height the drawn line spans (0: flat)."""
    return page.locator(CHART).last.evaluate(
        """el => { const plot = el.querySelector('g.mark-group.role-frame.root > g > path.background').getBoundingClientRect();
          const ys = [...el.querySelectorAll('g.mark-line path')].flatMap(p => [...p.getAttribute('d').matchAll(/[ML]([-\\d.e]+),([-\\d.e]+)/g)].map(m => +m[2]));
          return ys.length ? (Math.max(...ys) - Math.min(...ys)) / plot.height : 0; }"""
    )


def test_the_live_learning_rate_line_draws_the_ramp_while_training(page, app):
    url, store, _, _ = app
    config = {"model": "cnn", "epochs": 3, "batch_size": 8, "lr": 1e-3, "schedule": "onecycle"}
    run_id = store.create_run(config, name="live-onecycle", pid=os.getpid())  # this process: alive
    store.update_run(run_id, total_steps=STEPS)
    try:
        for s in range(1, 20):
            store.record_step(run_id, s, 1, 2.0, onecycle_lr(s), 100.0)
        open_page(page, f"{url}/?run={run_id}", "Dataset")
        go(page, "Train")
        page.locator(".st-key-train_stop button").wait_for()  # it reads as running: the fragment polls
        for s in range(20, 90):  # the warm-up ramp arrives while the page watches
            store.record_step(run_id, s, 1, 2.0, onecycle_lr(s), 100.0)
        page.get_by_text(re.compile(r"^Steps recorded: 89$")).wait_for()
        page.wait_for_function("() => [...document.querySelectorAll(\"[data-testid='stVegaLiteChart']\")].length >= 2")
        span = lr_line_span(page)
        assert span > 0.5, f"the live LR line spans {span:.0%} of its plot"
        shot(page, "train-live-onecycle")
    finally:
        store.finish(run_id, "stopped", "test over")


# --- 2. state that stays ---------------------------------------------------------------------------


def test_train_inputs_survive_a_page_switch_and_fill_from_a_run(page, app):
    url, _, run_id, _ = app
    open_page(page, url, "Dataset")
    go(page, "Train")
    sidebar = page.locator(SIDEBAR)
    sidebar.get_by_role("spinbutton", name="Epochs").fill("7")
    sidebar.get_by_role("spinbutton", name="Epochs").press("Enter")
    wait_idle(page)
    go(page, "Channels")
    go(page, "Train")
    expect(sidebar.get_by_role("spinbutton", name="Epochs")).to_have_value("7")
    # Pick a run that is not the newest: the URL names it, and its settings fill the form.
    too_hot = next(r.id for r in app[1].list_runs() if r.name == "too-hot")
    choose(page, page.locator(".st-key-train_run"), re.compile(r"^too-hot · mlp"))
    page.wait_for_url(re.compile(f"run={too_hot}"))
    page.get_by_role("button", name="Use this run's settings").click()
    expect(sidebar.get_by_role("spinbutton", name="Epochs")).to_have_value("2")
    expect(sidebar.get_by_role("combobox", name="Model")).to_have_value("mlp")
    # A copied link opens the same run in a fresh tab.
    other = page.context.new_page()
    other.set_default_timeout(90_000)
    other.goto(page.url)
    other.get_by_text(re.compile(r"^Diverged: The validation loss became 45,863")).wait_for()


def test_channels_and_dataset_keep_their_view_and_put_it_in_the_url(page, app):
    url, *_ = app
    open_page(page, f"{url}/channels", "Channels")
    choose(page, page.get_by_role("combobox", name="Class"), "square")
    page.wait_for_url(re.compile(r"class=square"))
    page.get_by_label(re.compile(r"^Image \(0 to")).fill("5")
    page.get_by_label(re.compile(r"^Image \(0 to")).press("Enter")
    wait_idle(page)
    page.locator(SIDEBAR).get_by_text("None", exact=True).click()
    wait_idle(page)
    page.wait_for_url(re.compile(r"image=5"))
    assert params(page)["class"] == "square"
    go(page, "Dataset")
    page.get_by_label(re.compile(r"^Page \(of")).fill("3")
    page.get_by_label(re.compile(r"^Page \(of")).press("Enter")
    page.wait_for_url(re.compile(r"page=3"))
    go(page, "Channels")
    expect(page.get_by_label(re.compile(r"^Image \(0 to"))).to_have_value("5")
    assert page.locator(SIDEBAR).get_by_role("radio", name="None").is_checked()
    page.get_by_role("heading", name="Not normalized ([0, 1])").wait_for()
    assert {"class": "square", "image": "5", "source": "sample"}.items() <= params(page).items()
    go(page, "Dataset")
    expect(page.get_by_label(re.compile(r"^Page \(of"))).to_have_value("3")
    # The Dataset link alone reproduces class and page in a fresh tab.
    other = page.context.new_page()
    other.set_default_timeout(90_000)
    other.goto(f"{url}/?source=sample&class=circle&page=2")
    other.get_by_role("heading", name="Dataset").wait_for()
    wait_idle(other)
    expect(other.get_by_label(re.compile(r"^Page \(of"))).to_have_value("2")
    other.locator("[data-testid='stImageCaption']").nth(23).wait_for()  # a full page of the grid drawn
    captions = other.locator("[data-testid='stImageCaption']").all_inner_texts()
    assert captions and all(c.startswith("circle") for c in captions)


def test_an_upload_is_in_the_url_by_a_short_id_and_a_folder_link_fills_the_path(page, app, tmp_path):
    url, _, _, tiny = app
    folder = write_imagefolder(tmp_path / "pets", classes=("cat", "dog"), per_class=3)
    archive = tmp_path / "my photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.rglob("*.png"):
            z.write(f, f.relative_to(folder.parent))
    open_page(page, url, "Dataset")
    sidebar = page.locator(SIDEBAR)
    sidebar.get_by_text("Upload a .zip").click()
    wait_idle(page)
    sidebar.locator("input[type='file']").set_input_files(str(archive))
    page.locator("[data-testid='stMetric']", has_text="Classes").get_by_text("2").wait_for()
    wait_idle(page)
    p = params(page)
    assert p["source"] == "upload" and re.fullmatch(r"[0-9a-f]{12}", p["id"]) and "path" not in p
    assert str(tmp_path) not in page.url and "/" not in p["id"]
    sidebar.get_by_text("Showing: Upload my photos.zip").wait_for()  # the user's name, no hash
    go(page, "Channels")
    assert params(page)["id"] == p["id"]  # the page switch keeps the source in the link
    # A folder named by a link fills the path box, so Open works at once.
    other = page.context.new_page()
    other.set_default_timeout(90_000)
    other.goto(f"{url}/?source=folder&path={tiny}")
    other.get_by_role("heading", name="Dataset").wait_for()
    wait_idle(other)
    box = other.locator(SIDEBAR).get_by_label("Path")
    expect(box).to_have_value(tiny)
    assert other.locator(SIDEBAR).get_by_role("button", name="Open").is_enabled()


# --- 3. every refusal is a sentence ----------------------------------------------------------------


def test_refusals_are_sentences_where_the_user_looks(page, app):
    url, _, _, tiny = app
    open_page(page, f"{url}/?source=folder&path={tiny}", "Dataset")
    go(page, "Train")
    sidebar = page.locator(SIDEBAR)
    # 6 images, 2 classes: the split holds out 2 for validation.
    sidebar.get_by_text(re.compile(r"^Validation will use only 2 images")).wait_for()
    sidebar.get_by_role("spinbutton", name="Epochs").fill("500")
    sidebar.get_by_role("spinbutton", name="Epochs").press("Enter")
    wait_idle(page)
    sidebar.get_by_role("button", name="Start", exact=True).click()
    sidebar.get_by_text(re.compile(r"at most 100 epochs")).wait_for()
    shot(page, "train-refused")
    # A diverged run says so, in the run's status box.
    choose(page, page.locator(".st-key-train_run"), re.compile(r"^too-hot"))
    page.get_by_text(re.compile(r"^Diverged: The validation loss became 45,863")).wait_for()
    # Channels: statistics not computed at this size leave the page drawn, with a button that computes them.
    go(page, "Channels")
    page.locator(SIDEBAR).get_by_text("Dataset (computed)").click()
    page.get_by_text(re.compile(r"mean and std at 64 px are not computed yet")).wait_for()
    # Still drawn, unnormalized: three channel heatmaps, their colour bar, and the two histograms.
    expect(page.locator(CHART)).to_have_count(6)
    expect(page.locator(CHART).filter(has_text=histogram_titles(False)[1])).to_have_count(1)
    page.get_by_role("button", name="Compute mean/std at 64 px").click()
    page.get_by_role("heading", name="Normalized", exact=True).wait_for()
    assert page.get_by_text(re.compile(r"not computed yet")).count() == 0
    assert page.locator(ERRORS).count() == 0
