"""Predictions of a run: agree with the run's own validation, stored once, redone only for a new checkpoint."""

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lib.evaluation import predictions as P
from lib.runs.store import RunStore
from lib.training.checkpoint import load_model
from lib.training.models import build_model
from tests.evaluate_helpers import train_short_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_short_run(tmp_path_factory.mktemp("pred"))


# Predictions run where the run trained: on CUDA, cuDNN's TF32 convolutions move probabilities by about 1e-5.
ATOL = 1e-4 if torch.cuda.is_available() else 1e-5


def plain_torch_outputs(ckpt: dict, root: Path, paths: list[str]) -> torch.Tensor:
    """Logits by hand, as docs/cli.md's three lines of plain torch would: PIL resize, /255, (x - mean) / std."""
    model = build_model(ckpt["config"]["model"], len(ckpt["classes"]), ckpt["config"]["image_size"])
    model.load_state_dict(ckpt["model"])
    size = ckpt["config"]["image_size"]
    x = np.stack([np.asarray(Image.open(root / p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in paths])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(ckpt["mean"])[:, None, None]) / torch.tensor(ckpt["std"])[:, None, None]
    with torch.no_grad():
        return model.eval()(x)


def test_predictions_agree_with_the_recorded_validation_and_plain_torch(trained):
    run_id, data, runs = trained
    found = P.run_predictions(run_id, runs_dir=runs)
    row = RunStore(runs).epochs(run_id).iloc[-1]
    assert len(found) == 128 and found.bad == []
    assert float(np.mean(found.preds == found.targets)) == row["val_accuracy"]  # exactly: same batches, same model
    assert float(np.mean(found.loss, dtype=np.float64)) == pytest.approx(row["val_loss"], rel=1e-5)
    ckpt = RunStore(runs).files.load_checkpoint(run_id)
    assert list(found.paths) == ckpt["val_paths"] and list(found.targets) == ckpt["val_targets"]
    logits = plain_torch_outputs(ckpt, data, ckpt["val_paths"])
    probs = found.probabilities()
    assert probs.shape == (128, 4) and np.allclose(probs, logits.softmax(1).numpy(), atol=ATOL)
    assert np.array_equal(found.preds, logits.argmax(1).numpy())
    reference = F.cross_entropy(logits, torch.tensor(ckpt["val_targets"]), reduction="none").numpy()
    assert np.allclose(found.loss, reference, atol=1e-5)
    assert np.allclose(found.confidence, probs.max(1)) and np.all(np.diff(found.top_probs, axis=1) <= 0)


def test_stored_once_reused_then_redone_when_the_checkpoint_changes(trained, monkeypatch):
    run_id, _, runs = trained
    first = P.run_predictions(run_id, runs_dir=runs)
    store = RunStore(runs)
    assert store.files.predictions_path(run_id).is_file()

    def no_model(*a, **k):
        raise AssertionError("the stored predictions should have been reused")

    monkeypatch.setattr(P, "load_model", no_model)
    again = P.run_predictions(run_id, runs_dir=runs)  # as a restarted app would: read from the file
    assert again.key == first.key and np.array_equal(again.top_probs, first.top_probs)
    assert list(again.paths) == list(first.paths)
    monkeypatch.undo()
    path = store.files.checkpoint_path(run_id)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # the checkpoint was rewritten
    calls = []
    real = P.load_model
    monkeypatch.setattr(P, "load_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    redone = P.run_predictions(run_id, runs_dir=runs)
    assert calls == [1] and redone.key != first.key
    assert P.stored_predictions(store, run_id).key == redone.key


def test_an_image_that_no_longer_decodes_is_listed_and_left_out(trained, tmp_path):
    run_id, data, runs = trained
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    loaded = dataclasses.replace(load_model(run_id, runs_dir=runs), root=copy)
    broken = loaded.val_paths[5]
    (copy / broken).write_bytes(b"not a png")
    found = P.predict(loaded)
    assert len(found) == 127 and [p for p, _ in found.bad] == [broken] and broken not in set(found.paths)
    shutil.rmtree(copy / "circle")
    with pytest.raises(ValueError, match=r"validation images are missing .* e\.g\. circle/"):
        P.predict(loaded)


def test_predictions_go_with_the_run(trained, tmp_path):
    run_id, _, runs = trained
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    P.run_predictions(run_id, runs_dir=copy)
    store = RunStore(copy)
    assert store.files.load_predictions(run_id) is not None
    store.files.delete(run_id)
    assert store.files.load_predictions(run_id) is None and not store.files.predictions_path(run_id).exists()
    with pytest.raises(ValueError, match="no last checkpoint"):
        P.run_predictions(run_id, runs_dir=copy)


def test_many_classes_keep_the_top_k_and_the_true_class_exactly():
    torch.manual_seed(0)
    k_classes, n = 30, 50
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, k_classes))
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8)
    targets = torch.randint(0, k_classes, (n,))
    preds, loss, top_c, top_p = P.predict_tensors(model, images, targets, lambda x, _: x.float() / 255, 16, P.TOP_K)
    found = P.Predictions("r", "last", "", [f"c{i}" for i in range(k_classes)], np.array([f"{i}.png" for i in range(n)]),
                          targets.numpy(), preds, loss, top_c, top_p)  # fmt: skip
    with torch.no_grad():
        reference = model(images.float() / 255).softmax(1).numpy()
    probs = found.probabilities()
    assert not found.complete and top_c.shape == (n, P.TOP_K)
    rows = np.arange(n)[:, None]
    assert np.allclose(probs[rows, top_c], np.sort(reference, 1)[:, ::-1][:, : P.TOP_K], atol=1e-6)
    assert np.allclose(probs[np.arange(n), targets.numpy()], reference[np.arange(n), targets.numpy()], atol=1e-6)
    assert np.array_equal(preds, reference.argmax(1))
    back = P.Predictions.from_arrays(found.to_arrays())
    assert back.classes == found.classes and np.array_equal(back.top_probs, found.top_probs) and back.bad == []
