"""Real-browser fixtures: `streamlit run` on a free port, driven by Playwright in Debian's Chromium.

Skipped with the reason where Chromium or Playwright is missing, except under CI=true where that fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("TORCHSCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def _require_browser():
    why = None
    if not (shutil.which(CHROMIUM) or os.path.exists(CHROMIUM)):
        why = f"Chromium not found at {CHROMIUM} (make test installs Debian's chromium when run as root)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "playwright is not installed (pip install -r requirements-dev.txt)"
    if why and _truthy(os.environ.get("CI", "")):
        pytest.fail(f"browser tests must run under CI: {why}")
    if why:
        pytest.skip(why)


def _truthy(value: str) -> bool:
    """CI=true, CI=1, CI=yes all count; CI= or CI=false or CI=0 do not."""
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tmp: Path, env_extra: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start `streamlit run` headless on a free port; return the process and its base URL once healthy."""
    port = _free_port()
    env = {
        **os.environ,
        "TORCHSCOPE_CACHE_DIR": str(tmp / "cache"),
        "TORCHSCOPE_RUNS_DIR": str(tmp / "runs"),
        **(env_extra or {}),
    }
    log = open(tmp / f"streamlit-{port}.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early; see {log.name}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)  # polling a server that is still starting, not waiting for app state
    proc.kill()
    raise RuntimeError(f"streamlit did not answer /_stcore/health within 90 s; see {log.name}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


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


def shot(page, name: str) -> None:
    """Save a screenshot when TORCHSCOPE_SCREENSHOTS names a folder (for looking at pages by eye)."""
    folder = os.environ.get("TORCHSCOPE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
