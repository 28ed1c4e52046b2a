"""Load benchmark for deployed mode: `.venv/bin/python bench/bench_load.py`.

Starts `streamlit run` with TORCHSCOPE_MODE=deployed and TORCHSCOPE_MAX_RUNS_GLOBAL=2 on a free port and
drives Debian's Chromium through Playwright's async API (one browser, one context per visitor). A visit is
timed from the click on a page's sidebar-navigation link until its heading is visible and the app is idle;
it answered when that happened within 60 s with no stException on the page.
  A (baseline): one context tours Dataset, Channels, Train twice, after one untimed warm-up tour.
  B (load): eight contexts at once; two first start a training run on Train (deployed mode's cap of
     epochs), then all eight tour every page twice; then the two trainers press Stop.
Prints visits answered, median and slowest visit per scenario, and B's ratios to A. Exits 1 when a visit
did not answer or a trainer did not start, 2 when the 8-minute global deadline passed. Figures depend on
the machine: run it where you quote it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._app import CHROMIUM, CHROMIUM_ARGS, IDLE, start_app, stop_app  # noqa: E402
from lib.runs.store import RunStore, pid_alive  # noqa: E402

PAGES = ("Dataset", "Channels", "Train")
NAV, ERRORS, STOP = "[data-testid='stSidebarNav'] a", "[data-testid='stException']", ".st-key-train_stop button"
VISIT_S, DEADLINE_S = 60, 480
SESSIONS, TRAINERS, TOURS, EPOCHS = 8, 2, 2, "10"  # 10: deployed mode's max_epochs
ENV = {"TORCHSCOPE_MODE": "deployed", "TORCHSCOPE_MAX_RUNS_GLOBAL": "2"}


async def open_app(browser, url: str):
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(VISIT_S * 1000)
    await page.goto(url)
    await page.get_by_role("heading", name="Dataset", exact=True).first.wait_for()
    await page.locator(IDLE).wait_for(state="attached")
    return context, page


async def visit(page, name: str) -> float | None:
    """Seconds from the click on name's link until its heading shows and the app is idle; None if it never did."""
    t0 = time.perf_counter()

    def left() -> float:  # one 60 s budget per visit, shared by its waits
        return max(1.0, VISIT_S * 1000 - (time.perf_counter() - t0) * 1000)

    try:
        await page.locator(NAV, has_text=name).click(timeout=left())
        await page.get_by_role("heading", name=name, exact=True).first.wait_for(timeout=left())
        await page.locator(IDLE).wait_for(state="attached", timeout=left())
    except PlaywrightError as e:
        print(f"  {name}: no answer ({str(e).splitlines()[0]})")
        return None
    seconds = time.perf_counter() - t0
    if await page.locator(ERRORS).count():
        print(f"  {name}: exception on the page: {(await page.locator(ERRORS).first.inner_text())[:300]!r}")
        return None
    return seconds


async def tour(page, start: str, times: list) -> None:
    """Visit every page TOURS times in an order ending on `start` (the page shown), so each click changes page."""
    i = PAGES.index(start)
    for _ in range(TOURS):
        for name in PAGES[i + 1 :] + PAGES[: i + 1]:
            times.append((name, await visit(page, name)))


async def start_training(page) -> bool:
    if await visit(page, "Train") is None:
        return False
    sidebar = page.locator("[data-testid='stSidebar']")
    await sidebar.get_by_label("Epochs").fill(EPOCHS)
    await sidebar.get_by_role("button", name="Start").click()
    try:
        await page.locator(STOP).wait_for(timeout=90_000)  # the trainer subprocess imports torch first
        return True
    except PlaywrightError:
        return False  # the trainer never showed as running


async def stop_training(page, started: bool) -> str:
    if not started:
        return "did not start"
    try:
        if not await page.locator(STOP).count():
            return "had finished before Stop"
        await page.locator(STOP).click()
        # The run may finish its last epoch between our look and the click.
        ended = page.get_by_text(re.compile(r"^(Stopped on request|Completed\.)")).first
        await ended.wait_for()
        return "stopped" if (await ended.inner_text()).startswith("Stopped") else "completed before Stop landed"
    except PlaywrightError as e:
        return f"Stop failed ({str(e).splitlines()[0]})"


async def scenario_a(browser, url: str) -> list:
    context, page = await open_app(browser, url)
    try:
        await tour(page, "Dataset", [])  # warm-up: the sample, indexes and caches are built on first visits
        times: list = []
        await tour(page, "Dataset", times)
        return times
    finally:
        await context.close()


async def scenario_b(browser, url: str) -> tuple[list, list]:
    contexts: list = []
    try:
        for context, _ in await asyncio.gather(*(open_app(browser, url) for _ in range(SESSIONS))):
            contexts.append(context)
        pages = [c.pages[0] for c in contexts]
        started = await asyncio.gather(*(start_training(p) for p in pages[:TRAINERS]))
        times: list[list] = [[] for _ in pages]
        await asyncio.gather(*(tour(p, "Train" if i < TRAINERS else "Dataset", times[i]) for i, p in enumerate(pages)))
        ends = await asyncio.gather(*(stop_training(p, ok) for p, ok in zip(pages, started)))
        return sum(times, []), [f"trainer {i + 1}: {end}" for i, end in enumerate(ends)]
    finally:
        for context in contexts:
            await context.close()


def summary(times: list, page: str | None = None) -> tuple[int, float, float]:
    """Visits answered, median and slowest seconds, over (page, seconds) pairs; of one page when given."""
    ok = [t for name, t in times if t is not None and page in (None, name)]
    return len(ok), statistics.median(ok) if ok else float("nan"), max(ok) if ok else float("nan")


def report(a: list, b: list, trainers: list) -> bool:
    (na, med_a, max_a), (nb, med_b, max_b) = summary(a), summary(b)
    print(f"1 session : {na}/{len(a)} pages answered, median {med_a:.2f} s, slowest {max_a:.2f} s")
    print(
        f"{SESSIONS} sessions ({TRAINERS} training): {nb}/{len(b)} pages answered, median {med_b:.2f} s, "
        f"slowest {max_b:.2f} s (x{max_b / max_a:.1f} slowest, x{med_b / med_a:.1f} median vs 1 session)"
    )
    print(
        "  by page under load: "
        + ", ".join("{} median {:.2f} s, slowest {:.2f} s".format(name, *summary(b, name)[1:]) for name in PAGES)
    )
    print("  " + "; ".join(trainers))
    return na == len(a) and nb == len(b) and all(t.endswith("stopped") or "finished" in t for t in trainers)


async def run(url: str) -> bool:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            a = await scenario_a(browser, url)
            b, trainers = await scenario_b(browser, url)
        finally:
            await browser.close()
    return report(a, b, trainers)


def stop_trainers(runs: Path) -> None:
    """Trainers run in their own session and outlive the server: ask them to stop, then end any left."""
    store = RunStore(runs)
    running = store.running()
    for r in running:
        store.request_stop(r.id)
    if running:
        time.sleep(2)  # a trainer checks the stop flag at least every 0.2 s
    for r in store.running():
        if r.pid and pid_alive(r.pid):
            os.kill(r.pid, signal.SIGTERM)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="torchscope-load-"))
    ok = False
    proc, url = start_app(tmp, ENV)
    try:
        ok = asyncio.run(asyncio.wait_for(run(url), DEADLINE_S))
        return 0 if ok else 1
    except TimeoutError:
        print(f"gave up: the global deadline of {DEADLINE_S} s passed")
        return 2
    finally:
        stop_app(proc)
        stop_trainers(tmp / "runs")
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"server log and run store kept in {tmp}")


if __name__ == "__main__":
    sys.exit(main())
