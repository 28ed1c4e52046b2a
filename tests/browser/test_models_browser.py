"""A pretrained model in a real browser: search resnet18 in the sidebar, tick Pretrained weights (pre-seeded in
the server's torch hub cache), train head-only at a small size on the sample, see the curve, open Evaluate
and Explain on the run."""

import re

import pytest
import torch
import torchvision

from lib.runs.store import RunStore
from tests.browser.conftest import _require_browser, arrive, go, start_app, stop_app, wait_idle

pytestmark = pytest.mark.browser
ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An app whose TORCH_HOME holds random resnet18 weights under torchvision's file name (no download)."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("models-app")
    checkpoints = tmp / "torch-home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), checkpoints / "resnet18-f37072fd.pth")
    env = {"TORCHSCOPE_CACHE_DIR": str(tmp / "cache"), "TORCHSCOPE_RUNS_DIR": str(tmp / "runs"),
           "TORCH_HOME": str(tmp / "torch-home")}  # fmt: skip
    proc, url = start_app(tmp, env)
    yield url, tmp / "runs"
    stop_app(proc)


def test_pick_resnet18_pretrained_train_the_head_then_evaluate_and_explain(served, page):
    url, runs = served
    arrive(page, url)
    go(page, "Train")
    sidebar = page.locator("[data-testid='stSidebar']")
    wait_idle(page)
    sidebar.get_by_role("combobox", name="Model").click()
    page.keyboard.type("resnet18")  # the selectbox searches as you type
    page.get_by_role("option", name="resnet18", exact=True).click()
    sidebar.get_by_text(re.compile(r"11,689,512 parameters · 224 px input · default weights at hand")).wait_for()
    sidebar.get_by_text("Pretrained weights").click()
    sidebar.get_by_text("head", exact=True).wait_for()
    wait_idle(page)
    sidebar.get_by_text("head", exact=True).click()
    wait_idle(page)
    size = sidebar.get_by_role("spinbutton", name="Image size (px)")
    assert size.input_value() == "224"  # the weights' own crop size, until changed
    size.fill("32")
    size.press("Enter")
    wait_idle(page)
    sidebar.get_by_role("spinbutton", name="Epochs").fill("1")
    sidebar.get_by_role("spinbutton", name="Epochs").press("Enter")
    wait_idle(page)
    sidebar.get_by_role("button", name="Start", exact=True).click()
    page.get_by_text(re.compile("^Completed")).first.wait_for(timeout=240_000)
    wait_idle(page)
    assert page.locator("[data-testid='stVegaLiteChart']").count() >= 2  # the loss and accuracy curves
    (run,) = RunStore(runs).list_runs()
    assert run.status == "completed", run.message
    assert (run.config["model"], run.config["finetune"], run.config["normalization"]) == ("resnet18", "head", "weights")
    assert run.config["pretrained"] and run.config["image_size"] == 32
    # Recorded by their own name, with their preprocessing (resize 256 -> crop 224, scaled to 32 px at decode).
    assert (run.config["weights"], run.config["resize"], run.config["resize_size"]) == ("IMAGENET1K_V1", "weights", 256)
    go(page, "Evaluate")
    page.locator(".st-key-evaluate_gallery [data-testid='stImageCaption']").first.wait_for(timeout=180_000)
    wait_idle(page)
    assert page.locator(ERRORS).count() == 0
    page.goto(f"{url}/explain?run={run.id}")
    page.get_by_role("heading", name="Explain", exact=True).wait_for()
    page.get_by_text("Grad-CAM").first.wait_for(timeout=180_000)
    wait_idle(page)
    assert page.locator(ERRORS).count() == 0
