"""A pretrained torchvision model in head mode through every path after `train`: the LR finder, a sweep,
torchrun with 2 processes (gloo), resume and export/import. resnet18 at 32 px on 18 images of 3 classes; its
weights are random tensors the tests write where torch hub keeps them (tests/test_models.py's seed_weights):
nothing touches the network. The reference for "the backbone stayed frozen" is that weights file itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lib.__main__ import main
from lib.data.index import build_index
from lib.runs.store import RunStore
from lib.training.checkpoint import load_model
from lib.training.config import TrainConfig
from tests.helpers import write_imagefolder
from tests.test_models import seed_weights

ROOT = Path(__file__).resolve().parent.parent
HEAD = ["--model", "resnet18", "--pretrained", "--finetune", "head", "--image-size", "32", "--batch-size", "4",
        "--optimizer", "sgd", "--lr", "0.01"]  # fmt: skip


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """(dataset folder, runs folder, the weights file's state_dict) with TORCH_HOME set for the module."""
    base = tmp_path_factory.mktemp("pretrained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(base / "torch-home"))
        state = seed_weights("resnet18")
        data = write_imagefolder(base / "data", classes=("a", "b", "c"), per_class=6, size=(40, 40))
        yield data, base / "runs", state


def backbone_is_the_file(model_state: dict, state: dict) -> bool:
    """Every tensor but the head's, BatchNorm statistics included, bit-identical to the weights file."""
    backbone = [k for k in state if not k.startswith("fc.")]
    return len(backbone) == 120 and all(torch.equal(model_state[k].cpu(), state[k]) for k in backbone)


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def head_run(seeded) -> str:
    """One head-mode run of 1 epoch, trained in this process through the command line."""
    data, runs, _ = seeded
    out = subprocess.run([sys.executable, "-m", "lib", "train", str(data), *HEAD, "--epochs", "1", "--runs-dir",
                          str(runs), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return last_json(out.stdout)["run_id"]


def test_the_lr_finder_trains_the_head_alone(seeded, monkeypatch):
    from lib.training import lr_finder

    data, _, state = seeded
    built = []
    build = lr_finder.build_model
    monkeypatch.setattr(lr_finder, "build_model", lambda *a, **k: built.append(build(*a, **k)) or built[-1])
    config = TrainConfig(model="resnet18", weights="IMAGENET1K_V1", finetune="head", image_size=32, batch_size=4)
    index = build_index(str(data))
    result = lr_finder.find_lr(config, index.samples, index.classes, lr_finder.LRFinderConfig(num_batches=10))
    assert len(result.losses) >= 5 and result.suggested_lr is not None
    trained = built[0].state_dict()
    assert backbone_is_the_file(trained, state)  # frozen, BatchNorm statistics included (eval mode)
    assert not torch.equal(trained["fc.weight"].cpu(), build("resnet18", 3, 32, weights="IMAGENET1K_V1").fc.weight)


def test_the_lr_finder_command_runs_on_a_pretrained_head(seeded, capsys):
    data, _, _ = seeded
    assert main(["lr-find", str(data), *HEAD, "--num-batches", "10", "--json"]) == 0
    found = last_json(capsys.readouterr().out)
    assert len(found["losses"]) >= 5 and found["suggested_lr"] > 0


def test_a_sweep_of_two_learning_rates_trains_two_head_runs(seeded, tmp_path, capsys):
    data, _, state = seeded
    runs = tmp_path / "sweep-runs"
    assert main(["sweep", str(data), "--vary", "lr=0.01,0.1", *HEAD, "--epochs", "1", "--runs-dir", str(runs),
                 "--json"]) == 0  # fmt: skip
    swept = RunStore(runs).list_runs()
    assert sorted(r.name for r in swept) == ["lr=0.01", "lr=0.1"]
    assert all(r.status == "completed" and r.config["finetune"] == "head" for r in swept)
    for record in swept:
        assert backbone_is_the_file(load_model(record.id, runs_dir=runs).model.state_dict(), state)


def test_resume_continues_the_head_and_leaves_the_backbone_as_the_file(seeded, head_run, capsys):
    data, runs, state = seeded
    assert main(["train", "--resume", head_run, "--epochs", "1", "--runs-dir", str(runs), "--json"]) == 0
    child = last_json(capsys.readouterr().out)["run_id"]
    loaded = load_model(child, runs_dir=runs)
    assert loaded.step == 2 * load_model(head_run, runs_dir=runs).step == 8  # 15 training images, batches of 4
    assert backbone_is_the_file(loaded.model.state_dict(), state)
    # The reference: one uninterrupted run of 2 epochs takes the same steps, loss for loss.
    assert main(["train", str(data), *HEAD, "--epochs", "2", "--runs-dir", str(runs), "--json"]) == 0
    whole = last_json(capsys.readouterr().out)["run_id"]
    store = RunStore(runs)
    joined = [*store.steps(head_run).train_loss, *store.steps(child).train_loss]
    assert joined == pytest.approx(list(store.steps(whole).train_loss), abs=1e-5)


def test_export_and_import_round_trip_a_head_run(seeded, head_run, tmp_path):
    from lib.training.engine import evaluate_checkpoint

    _, runs, state = seeded
    bundle, other = tmp_path / "bundle.zip", tmp_path / "other-runs"
    assert main(["export", head_run, "--out", str(bundle), "--runs-dir", str(runs)]) == 0
    assert main(["import", str(bundle), "--runs-dir", str(other)]) == 0
    original, imported = load_model(head_run, runs_dir=runs), load_model(head_run, runs_dir=other)
    a, b = original.model.state_dict(), imported.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert backbone_is_the_file(b, state)
    assert imported.config.weights_name == "IMAGENET1K_V1" and imported.mean_std == original.mean_std
    assert evaluate_checkpoint(original) == evaluate_checkpoint(load_model(head_run, runs_dir=runs))


def test_torchrun_with_two_processes_steps_as_one_process_does(seeded, tmp_path):
    """Several processes run the frozen backbone at every step (no feature cache across ranks); one process
    trains on cached features: the same losses, step by step (tests/test_distributed.py's tolerance)."""
    data, _, state = seeded
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2"]
    args = ["-m", "lib", "train", str(data), *HEAD, "--epochs", "1", "--json"]
    two = subprocess.run([*torchrun, *args, "--runs-dir", str(tmp_path / "two")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    one = subprocess.run([sys.executable, *args, "--runs-dir", str(tmp_path / "one")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert two.returncode == 0 and one.returncode == 0, two.stderr[-2000:] + one.stderr[-2000:]
    a, b = last_json(one.stdout), last_json(two.stdout)
    steps_one = list(RunStore(tmp_path / "one").steps(a["run_id"]).train_loss)
    steps_two = list(RunStore(tmp_path / "two").steps(b["run_id"]).train_loss)
    assert len(steps_one) == len(steps_two) == 4
    assert steps_two == pytest.approx(steps_one, abs=1e-5)
    loaded = load_model(b["run_id"], runs_dir=tmp_path / "two")
    assert loaded.config.world_size == 2 and backbone_is_the_file(loaded.model.state_dict(), state)


def test_the_lr_finder_and_a_sweep_take_the_weights_own_resize(seeded, tmp_path, monkeypatch):
    """`--resize weights` reaches the finder's batches: every image it trains on is torchvision's own
    Resize(round(256 x 32 / 224) = 37) + CenterCrop(32) of a file, none the squashed 32 x 32; each run of a
    sweep records the weights' sizes."""
    from torchvision.transforms import v2

    from lib.training import lr_finder

    data, _, _ = seeded
    seen, real = [], lr_finder.prepare_data

    def spied(*args, **kwargs):
        prepared = real(*args, **kwargs)
        seen.append(prepared.train.images)  # the decoded training images (head mode then swaps in features)
        return prepared

    monkeypatch.setattr(lr_finder, "prepare_data", spied)
    assert main(["lr-find", str(data), *HEAD, "--resize", "weights", "--num-batches", "10", "--json"]) == 0
    files = sorted(data.rglob("*.png"))
    cropped = {np.asarray(v2.CenterCrop(32)(v2.Resize(37)(Image.open(f).convert("RGB")))).tobytes() for f in files}
    squashed = {np.asarray(Image.open(f).convert("RGB").resize((32, 32), Image.BILINEAR)).tobytes() for f in files}
    fed = [x.permute(1, 2, 0).contiguous().numpy().tobytes() for x in seen[0]]
    assert fed and set(fed) <= cropped and not set(fed) & squashed
    runs = tmp_path / "sweep-runs"
    assert main(["sweep", str(data), "--vary", "lr=0.01,0.1", *HEAD, "--resize", "weights", "--epochs", "1",
                 "--runs-dir", str(runs), "--json"]) == 0  # fmt: skip
    swept = RunStore(runs).list_runs()
    assert len(swept) == 2 and all(r.status == "completed" for r in swept)
    assert {(r.config["resize"], r.config["resize_size"], r.config["crop_size"]) for r in swept} == {
        ("weights", 256, 224)
    }
