"""A user's own model, `--model FILE.py:build`: it trains, evaluates, explains, resumes and round-trips through
export/import, rebuilt from the file each time; an edited file is said; deployed mode refuses it."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from lib.__main__ import main
from lib.settings import Settings
from lib.training.checkpoint import load_model
from lib.training.config import TrainConfig, check_limits
from tests.helpers import write_imagefolder

MODEL_FILE = """from torch import nn


def build(num_classes):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
    )
"""


@pytest.fixture
def trained(tmp_path, capsys):
    data = write_imagefolder(tmp_path / "data", classes=("a", "b"), per_class=6)
    model_file = tmp_path / "mine.py"
    model_file.write_text(MODEL_FILE)
    runs = tmp_path / "runs"
    args = ["--model", f"{model_file}:build", "--epochs", "1", "--image-size", "16", "--runs-dir", str(runs)]
    assert main(["train", str(data), *args, "--json"]) == 0
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return run["run_id"], runs, model_file, data


def test_the_run_records_the_files_path_and_sha256_and_rebuilds_from_it(trained):
    run_id, runs, model_file, _ = trained
    loaded = load_model(run_id, runs_dir=runs)
    assert loaded.config.model == f"{model_file.resolve()}:build"
    assert loaded.config.model_sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert [type(m).__name__ for m in loaded.model] == ["Conv2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear"]
    assert loaded.note == ""


def test_it_evaluates_explains_and_resumes(trained, tmp_path, capsys):
    run_id, runs, _, data = trained
    assert main(["evaluate", run_id, "--runs-dir", str(runs), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert 0.0 <= evaluated["accuracy"] <= 1.0
    image = str(next((data / "a").glob("*.png")))
    out = tmp_path / "maps"
    assert main(["explain", run_id, image, "--runs-dir", str(runs), "--out", str(out), "--method", "gradcam"]) == 0
    assert np.load(next(out.glob("*.npy"))).shape == (16, 16)  # Grad-CAM found the file model's conv layer
    capsys.readouterr()
    assert main(["train", "--resume", run_id, "--epochs", "1", "--runs-dir", str(runs), "--json"]) == 0
    child = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert load_model(child["run_id"], runs_dir=runs).step == 2 * load_model(run_id, runs_dir=runs).step


def test_it_round_trips_through_export_and_import(trained, tmp_path):
    run_id, runs, _, _ = trained
    bundle, other = tmp_path / "b.zip", tmp_path / "other-runs"
    assert main(["export", run_id, "--out", str(bundle), "--runs-dir", str(runs)]) == 0
    assert main(["import", str(bundle), "--runs-dir", str(other)]) == 0
    a, b = load_model(run_id, runs_dir=runs).model.state_dict(), load_model(run_id, runs_dir=other).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_edited_file_is_said_and_a_missing_one_refused(trained):
    run_id, runs, model_file, _ = trained
    model_file.write_text(MODEL_FILE + "\n# tuned\n")
    assert "changed since this run trained" in load_model(run_id, runs_dir=runs).note
    model_file.unlink()
    with pytest.raises(ValueError, match="is gone; put it back"):
        load_model(run_id, runs_dir=runs)


def test_deployed_mode_refuses_a_model_file(tmp_path, monkeypatch, capsys):
    config = TrainConfig(model=f"{tmp_path}/mine.py:build")
    with pytest.raises(ValueError, match="accepts no model files"):
        check_limits(config, Settings(mode="deployed"))
    (tmp_path / "mine.py").write_text(MODEL_FILE)
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    data = write_imagefolder(tmp_path / "data", classes=("a", "b"), per_class=3)
    assert main(["train", str(data), "--model", f"{tmp_path}/mine.py:build", "--runs-dir", str(tmp_path / "r")]) == 2
    assert "not accepted in deployed mode" in capsys.readouterr().err
