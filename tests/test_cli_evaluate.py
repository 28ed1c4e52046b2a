"""`python -m lib evaluate`: the JSON and CSV contract, end to end on a trained run, and one-line errors."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lib.__main__ import main
from lib.runs.store import RunStore
from tests.evaluate_helpers import ROOT, train_short_run


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # 155 circles: a split of 31 + 3 x 32 = 127 images, so accuracy is k/127, which float32 cannot hold.
    return train_short_run(tmp_path_factory.mktemp("cli-eval"), leave_out=5)


def test_json_and_csv_agree_with_the_recorded_run(trained, tmp_path):
    run_id, data, runs = trained
    csv = tmp_path / "preds.csv"
    done = cli("evaluate", run_id, "--runs-dir", str(runs), "--json", "--predictions-csv", str(csv))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    recorded = RunStore(runs).epochs(run_id).iloc[-1]
    assert out["run_id"] == run_id and out["num_images"] == 127
    assert out["classes"] == ["circle", "cross", "square", "triangle"] and out["top5_accuracy"] is None
    assert out["accuracy"] == recorded["val_accuracy"]  # the page's headline agrees with Train's last epoch
    assert 0 < out["accuracy"] < 1 and float(np.float32(out["accuracy"])) != out["accuracy"]  # float32 would differ
    assert out["nll"] == pytest.approx(recorded["val_loss"], rel=1e-5)
    confusion = np.array(out["confusion"])
    assert (
        confusion.sum() == 127 and list(confusion.sum(1)) == [r["support"] for r in out["per_class"]] == [31] + [32] * 3
    )
    assert np.trace(confusion) / 127 == out["accuracy"]
    assert 0 <= out["ece"] <= 1 and 0 <= out["balanced_accuracy"] <= 1 and 0 <= out["macro_f1"] <= 1
    rows = pd.read_csv(csv)
    assert list(rows.columns) == ["path", "true", "pred", "confidence", "loss"] and len(rows) == 127
    assert all((data / p).is_file() and p.split("/")[0] == t for p, t in zip(rows["path"], rows["true"]))
    assert (rows["true"] == rows["pred"]).mean() == out["accuracy"]
    assert rows["loss"].mean() == pytest.approx(out["nll"], rel=1e-5)
    text = cli("evaluate", run_id, "--runs-dir", str(runs))
    assert text.returncode == 0 and f"accuracy {out['accuracy']:.1%}" in text.stdout and "triangle" in text.stdout


def moved_dataset(trained, tmp_path, root: str):
    """A copy of the run store whose run (its row: the checkpoint's root is never read back) points at `root`."""
    run_id, _, runs = trained
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    store = RunStore(copy)
    store.files.save_checkpoint(run_id, {**store.files.load_checkpoint(run_id), "root": root})
    store.update_run(run_id, root=root)
    return run_id, copy


def test_an_image_that_no_longer_decodes_is_named_and_left_out(trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained[1], data)
    run_id, runs = moved_dataset(trained, tmp_path, str(data))
    broken = RunStore(runs).files.load_checkpoint(run_id)["val_paths"][0]
    (data / broken).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    done = cli("evaluate", run_id, "--runs-dir", str(runs), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_images"] == 126
    assert f"left out {broken}" in done.stderr and "Traceback" not in done.stderr


def test_a_dataset_folder_that_is_gone_is_one_line_naming_files(trained, tmp_path, capsys):
    run_id, runs = moved_dataset(trained, tmp_path, str(tmp_path / "gone"))
    assert main(["evaluate", run_id, "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 127 of 127 validation images are missing") and "circle/" in err and "\n" not in err


def test_unknown_run_and_run_without_checkpoint_exit_2(tmp_path, capsys):
    assert main(["evaluate", "nope", "--runs-dir", str(tmp_path)]) == 2
    assert "No run nope" in capsys.readouterr().err
    run_id = RunStore(tmp_path).create_run({"model": "cnn"})
    assert main(["evaluate", run_id, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has no last checkpoint" in err and err.count("\n") == 1
