"""The Train sidebar's model choices under AppTest: size and input of the model, pretrained weights and their
preprocessing, the download offer (local) or the operator's sentence (deployed), and no model file when deployed."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torchvision
from streamlit.testing.v1 import AppTest

from lib.runs.importer import import_bundle
from lib.runs.store import RunStore

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "train.py")


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # empty: no weights at hand

    def open_page() -> AppTest:
        at = AppTest.from_file(PAGE, default_timeout=60)
        at.session_state["session_id"] = "s1"
        return at.run()

    return open_page


def test_picking_resnet18_with_weights_shows_its_size_and_uses_their_preprocessing(page):
    at = page()
    at.selectbox(key="train_model").set_value("resnet18").run()
    params = sum(p.numel() for p in torchvision.models.resnet18().parameters())
    assert any(f"{params:,} parameters · 224 px input · weights not downloaded" in c.value for c in at.caption)
    at.checkbox(key="train_pretrained").check().run()
    assert at.number_input(key="train_image_size").value == 224
    assert at.selectbox(key="train_normalization").value == "weights"
    assert at.radio(key="train_finetune").value == "full"
    assert at.button(key="train_download_weights").label == "Download weights (44.661 MB)"
    assert not at.exception


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
