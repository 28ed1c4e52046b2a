"""Load benchmark for deployed mode: `.venv/bin/python bench/bench_load.py`.

Starts `streamlit run` with TORCHSCOPE_MODE=deployed and TORCHSCOPE_MAX_RUNS_GLOBAL=2 on a free port and
drives Debian's Chromium through Playwright's async API (one browser, one context per visitor). A visit is
timed from the click on a page's sidebar-navigation link until its heading is visible and the app is idle;
it answered when that happened within 60 s with no stException on the page.
  A (baseline): one context tours Dataset, Channels, Train twice, after one untimed warm-up tour.
  B (load): eight contexts at once; two first start a training run on Train (deployed mode's cap of
     epochs), then all eight tour every page twice; then the two trainers press Stop.
  With --hostile, the last of B's eight visitors first does what a stranger trying to exhaust or deface a
     shared link would (a crafted ?source= link, a zip of 3 x 200 MiB zeros, a 9400 x 9400 16-bit PNG and a
     1,000-frame GIF on Channels, a second run from a second tab, two quick Start sweep clicks, the
     learning-rate finder, and crafted run bundles on Runs: a validation path out of the dataset, an image
     size over the limit, a step of 10^20), then tours like the others; the script checks every attempt was
     refused in one sentence and reports the other visitors' figures.
Prints visits answered, median and slowest visit per scenario, and B's ratios to A. Exits 1 when a visit
did not answer, a trainer did not start or a hostile attempt was not refused, 2 when the 8-minute global
deadline passed. Figures depend on the machine: run it where you quote it.
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

from _app import CHROMIUM, CHROMIUM_ARGS, IDLE, start_app, stop_app
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright

from lib.runs.liveness import pid_alive
from lib.runs.store import RunStore

PAGES = ("Dataset", "Channels", "Train")
NAV, ERRORS, STOP = "[data-testid='stSidebarNav'] a", "[data-testid='stException']", ".st-key-train_stop button"
VISIT_S, DEADLINE_S = 60, 480
SESSIONS, TRAINERS, TOURS, EPOCHS = 8, 2, 2, "10"  # 10: deployed mode's max_epochs
ENV = {"TORCHSCOPE_MODE": "deployed", "TORCHSCOPE_MAX_RUNS_GLOBAL": "2"}


async def open_app(browser, url: str, agent: str = "bench-visitor"):
    """A visitor's tab. All come from one address, so the User-Agent is what tells visitors apart
    (runs per visitor are capped across a visitor's tabs)."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000}, user_agent=agent)
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
    await sidebar.get_by_role("spinbutton", name="Epochs", exact=True).fill(EPOCHS)
    await sidebar.get_by_role("button", name="Start", exact=True).click()
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


HOSTILE = "--hostile" in sys.argv
PAYLOAD = "[x](https://e.example) ![i](https://e.example/t.png) :red[**x**] `"


def _zip_of_zeros(members: int, mib: int) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(members):
            z.writestr(f"pets/cat/{i}.png", bytes(mib * 2**20))  # honest sizes: refused by the disk quota
    return buf.getvalue()


def _png_header(side: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(side * 64)))
        + chunk(b"IEND", b"")
    )


def _gif(frames: int) -> bytes:
    import io

    from PIL import Image

    pics = [Image.new("RGB", (1, 1), (i % 256, i // 256 % 256, 0)) for i in range(frames)]
    buf = io.BytesIO()
    pics[0].save(buf, "GIF", save_all=True, append_images=pics[1:], duration=10)
    return buf.getvalue()


def _bundle(case: str) -> bytes:
    """A run bundle crafted as issue 23's stranger did; each is refused at import with one sentence."""
    import io
    import json
    import zipfile

    import torch

    config = {"model": "linear", "image_size": 1024 if case == "image size" else 8, "epochs": 1}
    row = {"id": "r1", "name": "r1", "created": 1.7e9, "status": "completed", "config": config, "classes": ["a"]}
    ckpt = {"model": {"w": torch.zeros(1)}, "config": config, "classes": ["a"], "val_targets": [0],
            "val_paths": ["../../../etc/passwd" if case == "path" else "a/1.png"]}  # fmt: skip
    step = "100000000000000000000" if case == "step" else "1"
    pt = io.BytesIO()
    torch.save(ckpt, pt)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("torchscope-bundle.json", json.dumps({"format": 1, "runs": ["r1"]}))
        z.writestr("r1/run.json", json.dumps(row))
        header = "run_id,kind,step,epoch,train_loss,val_loss,val_accuracy,lr,samples_per_sec,metric,value"
        z.writestr("r1/metrics.csv", f"{header}\nr1,step,{step},1,0.5,,,0.1,10.0,,\n")
        z.writestr("r1/checkpoints/last.pt", pt.getvalue())
    return buf.getvalue()


async def _refused(page, pattern: str) -> bool:
    try:
        await page.locator("[data-testid='stAlert']", has_text=re.compile(pattern)).first.wait_for(timeout=60_000)
        return True
    except PlaywrightError:
        return False


async def hostile(browser, url: str, page) -> list[str]:
    """A stranger's attempts, each expected to be refused in one sentence; returns what was not."""
    failed = []
    await page.goto(f"{url}/?source={PAYLOAD}")
    await page.locator(IDLE).wait_for(state="attached")
    if await page.locator("a[href*='e.example'], img[src*='e.example']").count():
        failed.append("crafted link rendered a link or image")
    sidebar = page.locator("[data-testid='stSidebar']")
    await sidebar.get_by_text("Upload a .zip").click()
    await page.locator(IDLE).wait_for(state="attached")
    zeros = {"name": "zeros.zip", "mimeType": "application/zip", "buffer": _zip_of_zeros(3, 200)}
    await sidebar.locator("input[type='file']").set_input_files(zeros)
    if not await _refused(page, "over the limit|is left for this session"):
        failed.append("zip of zeros")
    await visit(page, "Channels")
    for name, data, why in (
        ("big.png", _png_header(9400), "too many pixels"),
        ("many.gif", _gif(1000), "too many frames"),
    ):
        await page.locator("[data-testid='stMain'] input[type='file']").set_input_files(
            {"name": name, "mimeType": "image/png", "buffer": data}
        )
        if not await _refused(page, why):
            failed.append(name)
    agent = await page.evaluate("navigator.userAgent")
    second, tab = await open_app(browser, url, agent)  # the same visitor's second tab (same address and browser)
    try:
        for p in (page, tab):  # Start on both tabs; the two trainers above already hold the global slots
            await visit(p, "Train")
            await (
                p.locator("[data-testid='stSidebar']").get_by_role("spinbutton", name="Epochs", exact=True).fill(EPOCHS)
            )
            await p.locator("[data-testid='stSidebar']").get_by_role("button", name="Start", exact=True).click()
        if not await _refused(tab, "counted across your tabs|training slots of this server are taken"):
            failed.append("second run from a second tab")
        if await page.locator(STOP).count():
            await page.locator(STOP).click()
        failed += await _sweep_and_finder(tab)
    finally:
        await second.close()
    return failed + await _bundles(page)


async def _choose(page, box, option: str) -> None:
    """Pick option in a Streamlit selectbox, opening its list again when a rerun closed it."""
    item = page.get_by_role("option", name=option, exact=True)
    for attempt in range(3):
        await page.locator(IDLE).wait_for(state="attached")
        await box.click()
        try:
            await item.wait_for(timeout=15_000)
        except PlaywrightError:
            if attempt == 2:
                raise
            continue
        await item.click()
        return


async def _sweep_and_finder(page) -> list[str]:
    """Two quick Start sweep clicks and the finder: a sweep claims its slot at once, the finder takes one."""
    failed = []
    sidebar = page.locator("[data-testid='stSidebar']")
    await sidebar.locator(".st-key-train_sweep_param1").scroll_into_view_if_needed()
    await _choose(page, sidebar.get_by_role("combobox", name="Vary #1"), "lr")
    await sidebar.get_by_label("Values #1").fill("1e-3, 3e-3")
    await page.locator(IDLE).wait_for(state="attached")
    button = sidebar.get_by_role("button", name="Start sweep")
    await button.click()
    await button.click()
    if not await _refused(page, "is still running|training slots of this server are taken|counted across your tabs"):
        failed.append("a second sweep")
    await page.locator(IDLE).wait_for(state="attached")
    await sidebar.get_by_role("button", name="Find learning rate").click()
    if not await _refused(
        page, "training slots of this server are taken|counted across your tabs|finder is still running"
    ):
        failed.append("the learning-rate finder past the caps")
    return failed


async def _bundles(page) -> list[str]:
    """Crafted bundles on the Runs page, each refused."""
    failed = []
    await visit(page, "Runs")
    await page.get_by_text("Import runs (.zip bundle)").click()
    for case, why in (("path", "not a plain relative path"), ("image size", "px"), ("step", "out of range")):
        files = {"name": f"{case}.zip", "mimeType": "application/zip", "buffer": _bundle(case)}
        await page.locator(".st-key-runs_import_upload input[type='file']").set_input_files(files)
        await page.get_by_text(f"{case}.zip").first.wait_for()  # the upload is in before Import is pressed
        await page.locator(IDLE).wait_for(state="attached")
        refused = False
        for _ in range(2):  # a click that landed while the upload's rerun was still drawing is pressed again
            await page.locator(IDLE).wait_for(state="attached")
            await page.locator(".st-key-runs_import button").click()
            if refused := await _refused(page, f"{case}.zip was refused.*{why}"):
                break
        if not refused:
            failed.append(f"bundle with a bad {case}")
    return failed


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
        for context, _ in await asyncio.gather(*(open_app(browser, url, f"visitor-{i}") for i in range(SESSIONS))):
            contexts.append(context)
        pages = [c.pages[0] for c in contexts]
        started = await asyncio.gather(*(start_training(p) for p in pages[:TRAINERS]))
        times: list[list] = [[] for _ in pages]
        attacks = [hostile(browser, url, pages[-1])] if HOSTILE else []
        tourists = pages[:-1] if HOSTILE else pages
        _, *failed = await asyncio.gather(
            asyncio.gather(
                *(tour(p, "Train" if i < TRAINERS else "Dataset", times[i]) for i, p in enumerate(tourists))
            ),
            *attacks,
        )
        ends = await asyncio.gather(*(stop_training(p, ok) for p, ok in zip(pages, started)))
        notes = [f"trainer {i + 1}: {end}" for i, end in enumerate(ends)]
        if HOSTILE:
            notes.append("hostile visitor: " + (f"NOT refused: {failed[0]}" if failed[0] else "every attempt refused"))
        return sum(times, []), notes
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
    return (
        na == len(a)
        and nb == len(b)
        and all(t.endswith(("stopped", "every attempt refused")) or "finished" in t for t in trainers)
    )


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
    # The hostile visitor's zip of zeros meets the deployed defaults' disk quota (600 MB a session).
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
