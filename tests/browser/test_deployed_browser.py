"""Deployed mode in a real browser: two visitors side by side, uploads, refusals."""

import re

import pytest

from lib.runs.export import bundle_bytes
from lib.runs.store import RunStore
from tests.browser.conftest import go, start_app, stop_app, wait_for_uploads_in_memory, wait_idle
from tests.helpers import png_bytes, zip_bytes
from tests.test_page_runs import add_run

pytestmark = pytest.mark.browser
ERRORS = "[data-testid='stException']"


@pytest.fixture(scope="module")
def deployed_url(tmp_path_factory, browser):
    proc, url = start_app(tmp_path_factory.mktemp("deployed"), {"TORCHSCOPE_MODE": "deployed"})
    yield url
    stop_app(proc)


def _visitor(browser, url, heading: str = "Dataset"):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("heading", name=heading, exact=True).wait_for()
    wait_idle(page)
    return context, page


def _upload(page, name: str, data: bytes) -> None:
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("Upload a .zip").click()
    wait_idle(page)
    sidebar.locator("input[type='file']").set_input_files({"name": name, "mimeType": "application/zip", "buffer": data})


def test_two_visitors_uploads_stay_apart(browser, deployed_url):
    ctx_a, a = _visitor(browser, deployed_url)
    ctx_b, b = _visitor(browser, deployed_url)
    try:
        for page in (a, b):
            assert page.locator("[data-testid='stSidebar']").get_by_text("Folder on the server").count() == 0
            assert page.locator("[data-testid='stSidebar'] input[type='text']").count() == 0
        pets = zip_bytes({f"pets/{c}/{i}.png": png_bytes(i) for c in ("cat", "dog") for i in range(3)})
        _upload(a, "pets.zip", pets)
        a.locator("[data-testid='stMetric']", has_text="Images").get_by_text("6", exact=True).wait_for()
        # Extracted to disk, the archive's bytes have left server memory (Streamlit would hold them until
        # the tab closes); the page still shows the dataset after another rerun.
        wait_for_uploads_in_memory(deployed_url, below=len(pets))
        go(a, "Channels")
        go(a, "Dataset")
        a.locator("[data-testid='stMetric']", has_text="Images").get_by_text("6", exact=True).wait_for()
        assert a.locator(ERRORS).count() == 0
        b.reload()
        b.get_by_role("heading", name="Dataset").wait_for()
        wait_idle(b)
        b.locator("[data-testid='stMetric']", has_text="Images").get_by_text("640").wait_for()
        # A hostile archive is refused in one sentence; as a new upload it replaced A's previous one
        # (one upload per session), so A is back on the sample.
        _upload(a, "evil.zip", zip_bytes({"../../escape.png": png_bytes(0)}))
        a.locator("[data-testid='stSidebar'] [data-testid='stAlertContentError']").wait_for()
        assert ".." in a.locator("[data-testid='stSidebar'] [data-testid='stAlertContentError']").inner_text()
        a.locator("[data-testid='stMetric']", has_text="Images").get_by_text("640", exact=True).wait_for()
        assert a.locator(ERRORS).count() == 0 and b.locator(ERRORS).count() == 0
    finally:
        ctx_a.close()
        ctx_b.close()


def test_a_visitors_runs_are_invisible_to_another(browser, deployed_url):
    ctx_a, a = _visitor(browser, f"{deployed_url}/train", "Train")
    ctx_b, b = _visitor(browser, f"{deployed_url}/train", "Train")
    try:
        sidebar = a.locator("[data-testid='stSidebar']")
        sidebar.get_by_role("spinbutton", name="Epochs").fill("1")
        sidebar.get_by_role("spinbutton", name="Batches per epoch (0 = all)").fill("2")
        sidebar.get_by_role("button", name="Start", exact=True).click()
        a.get_by_text(re.compile(r"^Steps recorded: ")).first.wait_for(timeout=90_000)
        b.reload()
        b.get_by_role("heading", name="Train", exact=True).wait_for()
        wait_idle(b)
        b.get_by_text("No runs yet").wait_for()
        assert b.locator(ERRORS).count() == 0
    finally:
        ctx_a.close()
        ctx_b.close()


def test_uploads_whose_names_are_over_the_multipart_limit_open_under_a_shortened_name(browser, deployed_url, tmp_path):
    """Streamlit's server refused a file name of 2,087 bytes or more with a bare 400 that the uploader showed as
    "AxiosError: Request failed with status code 400"; repaired (lib/app/repairs.py), the archive opens and the
    bundle imports under the name's two ends."""
    ctx, page = _visitor(browser, deployed_url)
    try:
        pets = zip_bytes({f"pets/{c}/{i}.png": png_bytes(i) for c in ("cat", "dog") for i in range(3)})
        _upload(page, "pets-" + "é" * 2_200 + ".zip", pets)
        page.locator("[data-testid='stMetric']", has_text="Images").get_by_text("6", exact=True).wait_for()
        # The name's first 150 bytes (the 73rd é is cut in two, so it goes) and the stored name's end.
        caption = page.get_by_text(re.compile(r"^Upload pets-")).first.inner_text()
        assert caption.startswith("Upload pets-" + "é" * 72 + "…é") and caption.endswith("é.zip")
        go(page, "Runs")
        other = RunStore(tmp_path / "elsewhere")
        bundle = bundle_bytes(other, [add_run(other, "longname", lr=0.1, steps=5)])
        page.get_by_text("Import runs (.zip bundle)").click()
        page.locator(".st-key-runs_import_upload input[type='file']").set_input_files(
            {"name": "b" * 4_300 + ".zip", "mimeType": "application/zip", "buffer": bundle}
        )
        wait_idle(page)
        page.locator(".st-key-runs_import button").click()
        page.get_by_text("Imported 1 run(s): longname.").wait_for()
        assert "AxiosError" not in page.content() and page.locator(ERRORS).count() == 0
    finally:
        ctx.close()
