"""The Train sidebar's model choices under AppTest: size and input of the model, pretrained weights and their
preprocessing, the download offer (local) or the operator's sentence (deployed), and no model file when deployed."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision
from streamlit.testing.v1 import AppTest
from train_helpers import SESSION_ID, wait_for

from lib.runs.importer import import_bundle
from lib.runs.store import RunStore
from tests.helpers import write_imagefolder
from tests.test_models import seed_weights

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "train.py")


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # empty: no weights at hand

    def open_page(root: Path | None = None) -> AppTest:
        at = AppTest.from_file(PAGE, default_timeout=60)
        at.session_state["session_id"] = SESSION_ID  # a real one: Start refuses anything else
        if root is not None:
            at.session_state["dataset_root"] = str(root)
        return at.run()

    return open_page


def test_picking_resnet18_with_weights_shows_its_size_and_uses_their_preprocessing(page):
    at = page()
    at.selectbox(key="train_model").set_value("resnet18").run()
    params = sum(p.numel() for p in torchvision.models.resnet18().parameters())
    assert any(f"{params:,} parameters · 224 px input · default weights not downloaded" in c.value for c in at.caption)
    at.checkbox(key="train_pretrained").check().run()
    assert at.number_input(key="train_image_size").value == 224
    assert at.selectbox(key="train_normalization").value == "weights"
    assert at.radio(key="train_finetune").value == "full"
    assert at.button(key="train_download_weights").label == "Download weights (44.661 MB)"
    assert not at.exception


def test_a_run_started_with_chosen_weights_records_their_name_and_starts_from_their_file(page, tmp_path):
    """mobilenet_v2's IMAGENET1K_V1, not its DEFAULT (V2): picked in the sidebar, recorded by name with their
    preprocessing, and after head training every backbone tensor is the file's."""
    state = seed_weights("mobilenet_v2", "IMAGENET1K_V1")
    root = write_imagefolder(tmp_path / "data", classes=("a", "b"), per_class=4, size=(48, 36))
    at = page(root)
    at.selectbox(key="train_model").set_value("mobilenet_v2").run()
    at.checkbox(key="train_pretrained").check().run()
    weights = at.selectbox(key="train_weights")
    assert weights.value == "DEFAULT" and weights.options == [
        "DEFAULT · not cached",
        "IMAGENET1K_V1 · cached",
        "IMAGENET1K_V2 · not cached",
    ]
    assert any(c.value.startswith("IMAGENET1K_V2, 72.154 % top-1 on ImageNet.") for c in at.caption)
    assert at.button(key="train_download_weights").label == "Download weights (13.598 MB)"
    weights.set_value("IMAGENET1K_V1").run()
    assert not [b for b in at.button if b.key == "train_download_weights"]  # this file is at hand
    assert at.selectbox(key="train_resize").value == "weights" and at.number_input(key="train_image_size").value == 224
    assert any("shorter side to 256 px, centre 224 px crop (bilinear)" in c.value for c in at.caption)
    at.radio(key="train_finetune").set_value("head")
    at.number_input(key="train_image_size").set_value(32)
    at.number_input(key="train_epochs").set_value(1)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    store = RunStore(tmp_path / "runs")
    (run,) = store.list_runs()
    recorded = {k: run.config[k] for k in ("weights", "resize", "resize_size", "crop_size", "interpolation")}
    assert recorded == dict(weights="IMAGENET1K_V1", resize="weights", resize_size=256, crop_size=224,
                            interpolation="bilinear")  # fmt: skip
    wait_for(lambda: store.get_run(run.id).status != "running")
    assert store.get_run(run.id).status == "completed", store.get_run(run.id).message
    trained = store.files.load_checkpoint(run.id)["model"]
    backbone = [k for k in state if not k.startswith("classifier.1.")]
    assert len(backbone) == len(state) - 2 and all(torch.equal(trained[k], state[k]) for k in backbone)


def test_deployed_mode_offers_no_model_file_and_never_a_download(page, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    at = page()
    assert not [t for t in at.text_input if t.key == "train_model_file"]
    at.selectbox(key="train_model").set_value("resnet18").run()
    at.checkbox(key="train_pretrained").check().run()
    assert not [b for b in at.button if b.key == "train_download_weights"]
    assert any("operator pre-seeds torch hub's cache" in i.value for i in at.info)
    assert not at.exception


def test_deployed_mode_refuses_a_bundle_whose_run_was_trained_from_a_model_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    bundle = tmp_path / "b.zip"
    run = dict(id="r1", name="r1", created=1.0, status="completed", config={"model": "/x/mine.py:build"}, classes=[])
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("torchscope-bundle.json", json.dumps({"format": 1, "runs": ["r1"]}))
        z.writestr("r1/run.json", json.dumps(run))
    with pytest.raises(ValueError, match="trained from a model file, which this server does not run"):
        import_bundle(bundle, RunStore(tmp_path / "runs"))
