"""Checkpoints become models again: a fresh process rebuilds a run and gets its recorded metrics back exactly."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib.data.sample import sample_root
from lib.runs.store import RunStore
from lib.training.checkpoint import load_model
from lib.training.config import TrainConfig
from lib.training.engine import evaluate_checkpoint
from lib.training.optim import make_optimizer

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["--model", "cnn", "--epochs", "3", "--max-batches", "3", "--batch-size", "16", "--image-size", "16",
         "--device", "cpu"]  # fmt: skip
# On the CPU: the exact equality below is the CPU's; cuDNN's kernels agree with themselves only to about 1e-6.

# What docs/cli.md's Checkpoints section shows, run in a process of its own.
EVALUATE = """
import json, sys
from lib.training.checkpoint import load_model
from lib.training.engine import evaluate_checkpoint
loaded = load_model(sys.argv[1], runs_dir=sys.argv[2], which=sys.argv[3])
val_loss, val_accuracy = evaluate_checkpoint(loaded)
print(json.dumps({"val_loss": val_loss, "val_accuracy": val_accuracy, "epoch": loaded.epoch}))
"""


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short cnn run on a copy of the sample (so the test may add files to its folder later)."""
    base = tmp_path_factory.mktemp("ckpt")
    data, runs = base / "data", base / "runs"
    shutil.copytree(sample_root(), data)
    done = cli("-m", "lib", "train", str(data), *TRAIN, "--runs-dir", str(runs), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])["run_id"], data, runs


def test_a_fresh_process_reproduces_the_recorded_validation_exactly(trained):
    run_id, data, runs = trained
    (data / "circle" / "new.png").write_bytes(
        (data / "square" / sorted(p.name for p in (data / "square").iterdir())[0]).read_bytes()
    )
    epochs = RunStore(runs).epochs(run_id)
    for which, row in (("last", epochs.iloc[-1]), ("best", epochs.loc[epochs["val_loss"].idxmin()])):
        done = cli("-c", EVALUATE, run_id, str(runs), which)
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
        # Exact, not approximate: same weights, same split, same batches, same arithmetic.
        assert (got["val_loss"], got["val_accuracy"], got["epoch"]) == (
            row["val_loss"],
            row["val_accuracy"],
            row["epoch"],
        )


def test_the_checkpoint_holds_the_whole_recipe(trained):
    run_id, data, runs = trained
    ckpt = RunStore(runs).files.load_checkpoint(run_id)
    config = TrainConfig.from_dict(ckpt["config"])
    assert (config.model, config.epochs, config.image_size) == ("cnn", 3, 16)
    assert ckpt["classes"] == sorted(p.name for p in data.iterdir() if p.is_dir()) and (
        ckpt["epoch"],
        ckpt["step"],
    ) == (3, 9)
    assert ckpt["root"] == str(data.resolve()) and len(ckpt["mean"]) == len(ckpt["std"]) == 3
    # The split is relative and POSIX, each path in its class's folder, disjoint from nothing it should not be.
    assert all(
        not p.startswith("/") and p.split("/")[0] == ckpt["classes"][t]
        for p, t in zip(ckpt["val_paths"], ckpt["val_targets"])
    )
    assert len(set(ckpt["val_paths"])) == len(ckpt["val_paths"]) == 128  # 20% of 4 x 160
    # Optimizer and scheduler state load into fresh ones built from the config (what resuming needs).
    model = load_model(run_id, runs_dir=runs).model
    optimizer = make_optimizer(config, model.parameters())
    optimizer.load_state_dict(ckpt["optimizer"])
    assert int(optimizer.state_dict()["state"][0]["step"]) == 9


def test_load_model_answers_bad_input_with_one_sentence(tmp_path, trained):
    with pytest.raises(ValueError, match="No run nope"):
        load_model("nope", runs_dir=tmp_path)
    run_id, _, runs = trained
    ckpt = RunStore(runs).files.load_checkpoint(run_id)
    ckpt["config"]["model"] = "mlp"  # weights of a cnn under an mlp's name: strict load refuses
    store = RunStore(tmp_path)
    other = store.create_run(ckpt["config"])
    store.files.save_checkpoint(other, ckpt)
    with pytest.raises(ValueError, match="does not fit a mlp model"):
        load_model(other, runs_dir=tmp_path)


def test_a_stopped_run_keeps_a_checkpoint_where_it_stopped(tmp_path):
    from lib.training.engine import Hooks, fit

    class StopAt5(Hooks):
        def __init__(self):
            self.saved = []

        def on_step(self, step, epoch, train_loss, lr, samples_per_sec):
            return step == 5

        def on_checkpoint(self, state, best):
            self.saved.append((state["epoch"], state["step"], state["partial"], best))

    config = TrainConfig(model="linear", epochs=3, batch_size=16, image_size=8, max_batches=3, schedule="onecycle")
    from lib.data.index import build_index

    index = build_index(str(sample_root()))
    hooks = StopAt5()
    result = fit(config, index.samples, index.classes, hooks)
    assert result.status == "stopped"
    assert hooks.saved == [(1, 3, False, True), (1, 5, True, False)]  # epoch 1 whole, then stopped at step 5


def test_evaluating_a_run_whose_images_are_gone_names_them(tmp_path, trained):
    run_id, data, runs = trained
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    loaded = load_model(run_id, runs_dir=runs)
    loaded.root = moved
    gone = moved / loaded.val_paths[0]
    gone.unlink()
    with pytest.raises(ValueError, match=r"1 validation images are gone, e.g. .*restore the dataset folder"):
        evaluate_checkpoint(loaded)
