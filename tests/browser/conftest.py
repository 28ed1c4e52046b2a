"""Real-browser fixtures: `streamlit run` on a free port, driven by Playwright in Debian's Chromium.

Skipped with the reason where Chromium or Playwright is missing, except under CI=true where that fails;
no test module imports Playwright at its top, so a missing Playwright skips rather than stops collection.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from bench._app import CHROMIUM, CHROMIUM_ARGS, IDLE, start_app, stop_app  # noqa: F401 - re-exported to tests


def _require_browser():
    why = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        why = "playwright is not installed (pip install -r requirements-dev.txt)"
    if not why and not (shutil.which(CHROMIUM) or os.path.exists(CHROMIUM)):
        why = f"Chromium not found at {CHROMIUM} (make test installs Debian's chromium when run as root)"
    if why and _truthy(os.environ.get("CI", "")):
        pytest.fail(f"browser tests must run under CI: {why}")
    if why:
        pytest.skip(why)


def _truthy(value: str) -> bool:
    """CI=true, CI=1, CI=yes all count; CI= or CI=false or CI=0 do not."""
    return value.strip().lower() not in ("", "0", "false", "no", "off")


@pytest.fixture(scope="session", autouse=True)
def _browser_available():
    """Every browser test skips (under CI, fails) with the reason before any of its fixtures starts a server."""
    _require_browser()


def expect(target):
    """Playwright's expect, imported when a test runs: without Playwright the modules still collect, then skip."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    _require_browser()
    proc, url = start_app(tmp_path_factory.mktemp("app"))
    yield url
    stop_app(proc)


@pytest.fixture(scope="session")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def wait_idle(page) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_selector(IDLE, state="attached")


def choose(page, box, option: str | re.Pattern, attempts: int = 3) -> None:
    """Pick `option` in the Streamlit selectbox `box`. A rerun that redraws the box as it opens (a fragment's
    poll, a loaded server catching up) closes its list again, so the list is opened until the option shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    item = page.get_by_role("option", name=option, exact=isinstance(option, str))
    for attempt in range(attempts):
        wait_idle(page)
        box.click()
        try:
            item.wait_for(timeout=15_000)
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            continue
        item.click()
        return


def arrive(page, url: str) -> None:
    """Open the app at `url` as a visitor does and wait for the router's first page. On a fresh server
    Streamlit's first answer lists pages/ in its old navigation; a click there can be lost as the router's
    own navigation replaces it a moment later."""
    page.goto(url)
    page.get_by_role("heading", name="Dataset", exact=True).wait_for()
    wait_idle(page)


def go(page, name: str) -> None:
    """Switch page through the sidebar navigation, as a user does. A click that lands while the page
    reruns by itself (the Dataset page does once its background check ends) can be lost: click again."""
    heading = page.get_by_role("heading", name=name, exact=True).first
    for attempt in range(3):
        page.locator("[data-testid='stSidebarNav'] a", has_text=name).click()
        try:
            heading.wait_for(timeout=20_000 * (attempt + 1))
            break
        except Exception:
            if attempt == 2:
                raise
    wait_idle(page)


def _uploads_in_memory(url: str) -> int:
    """Bytes of uploads the server holds in memory, from Streamlit's metrics endpoint (0 when none)."""
    text = urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=30).read().decode()
    lines = [line for line in text.splitlines() if "UploadedFileManager" in line and not line.startswith("#")]
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in lines)


def wait_for_uploads_in_memory(url: str, below: int, timeout_s: float = 30.0) -> None:
    """The metrics are cached for 5 s: poll until the uploads held fall below `below` bytes."""
    deadline = time.monotonic() + timeout_s
    while (held := _uploads_in_memory(url)) >= below:
        assert time.monotonic() < deadline, f"the server still holds {held} bytes of uploads in memory"
        time.sleep(1)


def clipped_metrics(page) -> list[str]:
    """Metric labels and values cut short by an ellipsis: their text is wider than its box (even by a pixel,
    "Empty classes" showed as "Empty clas…")."""
    return page.locator("[data-testid='stMetric'] [data-testid='stMarkdownContainer']").evaluate_all(
        """els => els.filter(e => { const r = document.createRange(); r.selectNodeContents(e);
                                    return r.getBoundingClientRect().width > e.clientWidth + 0.5; })
                     .map(e => e.textContent)"""
    )


def shot(page, name: str) -> None:
    """Save a screenshot when TORCHSCOPE_SCREENSHOTS names a folder (for looking at pages by eye)."""
    folder = os.environ.get("TORCHSCOPE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


# Every chart of the page, measured: its drawing (svg or canvas) against the column that holds it, and each text
# of the drawing against the drawing. Vega cuts a text at its `limit` with an ellipsis: that counts as cut too.
CHART_FIT = """els => els.flatMap((el, i) => {
  const col = el.closest('[data-testid="stColumn"]') || el.closest('[data-testid="stMainBlockContainer"]');
  const c = col.getBoundingClientRect();
  const drawing = el.querySelector('svg.marks, canvas.marks');
  if (!drawing) return [`chart ${i}: not drawn`];
  const d = drawing.getBoundingClientRect();
  // A chart that scrolls inside its own box (in the chart or around it) is within the column if the box is.
  let scroller = [...el.querySelectorAll('*')].find(n => n.scrollWidth > n.clientWidth + 1 &&
      ['auto', 'scroll'].includes(getComputedStyle(n).overflowX));
  for (let n = el.parentElement; !scroller && n && n !== col; n = n.parentElement)
    if (n.scrollWidth > n.clientWidth + 1 && ['auto', 'scroll'].includes(getComputedStyle(n).overflowX)) scroller = n;
  const box = scroller ? scroller.getBoundingClientRect() : d;
  const title = (el.querySelector('g.role-title text') || {}).textContent || `chart ${i}`;
  const out = [];
  if (box.left < c.left - 1 || box.right > c.right + 1)
    out.push(`${title}: drawn ${Math.round(box.left)}..${Math.round(box.right)} in a column ${Math.round(c.left)}..${Math.round(c.right)}`);
  for (const t of el.querySelectorAll('svg.marks text')) {
    const r = t.getBoundingClientRect();
    if (!t.textContent || r.width === 0) continue;
    if (t.textContent.endsWith('…')) out.push(`${title}: "${t.textContent}" cut`);
    if (r.left < d.left - 1 || r.right > d.right + 1 || r.top < d.top - 1 || r.bottom > d.bottom + 1)
      out.push(`${title}: "${t.textContent}" outside its chart`);
  }
  return out;
})"""


def charts_that_do_not_fit(page) -> list[str]:
    """What sticks out: charts wider than their column, texts outside or cut within their chart (empty: all fit)."""
    return page.locator("[data-testid='stVegaLiteChart']").evaluate_all(CHART_FIT)
