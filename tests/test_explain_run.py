"""Explain on a real run: `python -m lib explain` end to end, the embedding of a run's split, and the page."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from lib.__main__ import main
from lib.data.sample import sample_root
from lib.evaluation.attributions import attribute, model_input
from lib.evaluation.embeddings import embed_run
from lib.evaluation.predictions import predict
from lib.runs.store import RunStore
from lib.training.batches import decode_one
from lib.training.checkpoint import load_model, make_checkpoint, relative_to_root
from lib.training.config import TrainConfig
from lib.training.models import build_model

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")
TRAIN = ["--model", "cnn", "--epochs", "2", "--max-batches", "3", "--batch-size", "16", "--image-size", "16"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A short cnn run on a copy of the sample, and a `linear` run (no conv layer) saved by hand."""
    base = tmp_path_factory.mktemp("explain")
    data, store_dir = base / "data", base / "runs"
    shutil.copytree(sample_root(), data)
    done = subprocess.run(
        [sys.executable, "-m", "lib", "train", str(data), *TRAIN, "--runs-dir", str(store_dir), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    cnn_run = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    return cnn_run, linear_run(store_dir, data, load_model(cnn_run, runs_dir=store_dir)), data, store_dir


def linear_run(store_dir: Path, data: Path, like) -> str:
    """A checkpoint of an untrained `linear` model on the same split as `like` (what the page needs)."""
    config = TrainConfig(model="linear", image_size=16)
    model = build_model("linear", len(like.classes), 16)
    state = make_checkpoint(
        model,
        torch.optim.SGD(model.parameters(), 0.1),
        None,
        config=config,
        classes=like.classes,
        mean_std=like.mean_std,
        val_samples=like.val_samples(),
        epoch=1,
        step=1,
    )
    store = RunStore(store_dir)
    run_id = store.create_run(config.to_dict(), root=str(data), classes=like.classes, name="linear")
    store.files.save_checkpoint(run_id, relative_to_root(state, data))
    store.finish(run_id, "completed")
    return run_id


def explain_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lib", "explain", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_cli_writes_one_map_per_image_and_names_the_one_that_fails(runs, tmp_path):
    cnn_run, _, data, store_dir = runs
    loaded = load_model(cnn_run, runs_dir=store_dir)
    images = [str(data / p) for p in loaded.val_paths[:2]]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "maps"
    done = explain_cli(
        cnn_run, images[0], str(broken), images[1], "--runs-dir", str(store_dir), "--out", str(out), "--json"
    )
    assert done.returncode == 1, done.stderr  # one image failed, the others ran
    assert done.stderr.strip().splitlines() == [f"error: {broken}: not an image Pillow can read"]
    report = json.loads(done.stdout)
    assert (report["run_id"], report["method"]) == (cnn_run, "gradcam")
    assert [e["path"] for e in report["images"]] == images and report["errors"][0]["path"] == str(broken)
    for entry, path in zip(report["images"], images, strict=True):
        x = model_input(loaded, decode_one(path, 16))
        with torch.no_grad():
            p = torch.softmax(loaded.model(x), 1)[0].numpy()  # the reference: the model itself
        assert entry["predicted"] == loaded.classes[int(p.argmax())] == entry["target"]
        assert [e["class"] for e in entry["probabilities"]] == [loaded.classes[i] for i in np.argsort(-p)[:5]]
        assert entry["probabilities"][0]["p"] == pytest.approx(float(p.max()), rel=1e-5)
        heat = np.load(entry["heatmap"])
        assert heat.dtype == np.float32 and heat.shape == (16, 16)
        assert Path(entry["heatmap"]).name == Path(path).stem + ".npy"
        np.testing.assert_allclose(heat, attribute(loaded.model, x, int(p.argmax()), "gradcam"), rtol=1e-4, atol=1e-7)


def test_cli_target_and_method(runs, tmp_path):
    cnn_run, _, data, store_dir = runs
    image = str(data / load_model(cnn_run, runs_dir=store_dir).val_paths[0])
    done = explain_cli(
        cnn_run,
        image,
        "--method",
        "ig",
        "--target",
        "cross",
        "--runs-dir",
        str(store_dir),
        "--out",
        str(tmp_path),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)["images"][0]
    assert entry["target"] == "cross" and json.loads(done.stdout)["method"] == "ig"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "x.png"], "error: No run nope in"),
        (
            ["{cnn}", "x.png", "--method", "lime"],
            "error: Unknown method 'lime'; choose one of gradcam, ig, saliency, occlusion.",
        ),
        (
            ["{cnn}", "x.png", "--target", "dog"],
            "error: Unknown target class 'dog'; choose one of circle, cross, square, triangle or 0 to 3.",
        ),
        (
            ["{linear}", "x.png", "--method", "gradcam"],
            "error: Grad-CAM needs a layer with a spatial feature map before the classifier",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(runs, capsys, args, message):
    cnn_run, linear, _, store_dir = runs
    args = [a.format(cnn=cnn_run, linear=linear) for a in args]
    assert main(["explain", *args, "--runs-dir", str(store_dir)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(message)


def test_a_model_without_conv_layers_defaults_to_integrated_gradients(runs, tmp_path, capsys):
    _, linear, data, store_dir = runs
    image = str(data / load_model(linear, runs_dir=store_dir).val_paths[0])
    assert main(["explain", linear, image, "--runs-dir", str(store_dir), "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "ig"


def test_embedding_predictions_agree_with_the_stored_predictions(runs):
    cnn_run, _, _, store_dir = runs
    loaded = load_model(cnn_run, runs_dir=store_dir)
    emb = embed_run(loaded, limit=50)
    reference = predict(loaded)  # Evaluate's predictions: their own pass over the split
    index = {str(p): i for i, p in enumerate(reference.paths)}
    rows = [index[p] for p in emb.paths]
    assert len(emb.paths) == 50 and set(emb.paths) <= set(loaded.val_paths)
    np.testing.assert_array_equal(emb.predicted, reference.preds[rows])
    np.testing.assert_array_equal(emb.targets, reference.targets[rows])
    np.testing.assert_allclose(emb.probabilities.max(1), reference.confidence[rows], rtol=1e-4)
    assert emb.model_xy.shape == emb.pixel_xy.shape == (50, 2) and len(emb.thumbnails) == 50


# --- the page under AppTest ---------------------------------------------------------------------------


@pytest.fixture
def app_env(runs, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(runs[3]))
    monkeypatch.setenv("TORCHSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return runs


def open_explain(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update(params)
    at.run()
    at.switch_page("pages/explain.py")
    at.run()
    assert not at.exception, at.exception
    return at


def image_captions(at: AppTest) -> list[str]:
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


def test_page_opens_the_linked_image_and_switches_method(app_env):
    cnn_run, _, _, store_dir = app_env
    loaded = load_model(cnn_run, runs_dir=store_dir)
    path = loaded.val_paths[-1]  # the last of its class
    at = open_explain(run=cnn_run, image=path)
    cls = loaded.classes[loaded.val_targets[-1]]
    in_class = [p for p, t in zip(loaded.val_paths, loaded.val_targets) if loaded.classes[t] == cls]
    assert at.selectbox(key="explain_class").value == cls
    assert at.number_input(key="explain_index").value == in_class.index(path)
    assert not at.error
    assert len(at.get("vega_lite_chart")) == 4  # the overlay's colour scale, probabilities and the two maps
    at.radio(key="explain_method").set_value("occlusion").run()
    assert not at.exception and not at.error
    assert any("Occlusion for" in c for c in image_captions(at))


def test_page_for_a_model_without_conv_layers_says_why_no_gradcam(app_env):
    _, linear, _, _ = app_env
    at = open_explain(run=linear)
    assert at.radio(key="explain_method").options == ["Integrated Gradients", "Saliency", "Occlusion"]
    assert any("Grad-CAM needs a layer with a spatial feature map" in c.value for c in at.caption)
    assert any("no convolutional layer, so it has no feature maps" in c.value for c in at.caption)


def test_page_keeps_its_image_and_settings_across_a_page_switch(app_env):
    cnn_run, _, _, store_dir = app_env
    loaded = load_model(cnn_run, runs_dir=store_dir)
    cls = loaded.classes[-1]
    at = open_explain(run=cnn_run)
    at.selectbox(key="explain_class").set_value(cls).run()
    at.number_input(key="explain_index").set_value(1).run()
    at.radio(key="explain_method").set_value("saliency").run()
    at.slider(key="explain_opacity").set_value(0.8).run()
    at.selectbox(key="explain_layer").set_value(0).run()
    assert not at.exception and not at.error, (at.exception, at.error)
    at.switch_page("pages/runs.py").run()
    at.switch_page("pages/explain.py").run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert at.selectbox(key="explain_run").value == cnn_run
    assert at.selectbox(key="explain_class").value == cls and at.number_input(key="explain_index").value == 1
    assert at.radio(key="explain_method").value == "saliency" and at.slider(key="explain_opacity").value == 0.8
    assert at.selectbox(key="explain_layer").value == 0
