"""`python -m lib train --resume` and the app's "Train more": a new run linked to its parent whose steps
continue the parent's numbers and equal what an uninterrupted run computes."""

import json

import pytest
from train_helpers import wait_for

from lib.__main__ import main
from lib.runs.store import RunStore
from lib.settings import Settings
from lib.training.runner import continue_run

OPTIONS = ["--model", "mlp", "--image-size", "8", "--max-batches", "3", "--batch-size", "16", "--augment", "--json"]


def _train(capsys, *args: str) -> dict:
    assert main(["train", *args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_resume_continues_the_steps_of_an_uninterrupted_run(tmp_path, capsys):
    runs = str(tmp_path)
    full = _train(capsys, "sample", "--epochs", "2", *OPTIONS, "--runs-dir", runs)
    parent = _train(capsys, "sample", "--epochs", "1", *OPTIONS, "--runs-dir", runs)
    child = _train(capsys, "train", "--resume", parent["run_id"], "--epochs", "1", "--json", "--runs-dir", runs)
    store = RunStore(runs)
    record = store.get_run(child["run_id"])
    assert record.parent == parent["run_id"] and record.config["epochs"] == 2 and record.root
    steps, expected = store.steps(child["run_id"]), store.steps(full["run_id"])
    assert list(steps["step"]) == [4, 5, 6] and list(steps["epoch"]) == [2, 2, 2]
    assert list(steps["train_loss"]) == pytest.approx(list(expected["train_loss"][3:]), abs=1e-6)
    assert child["val_loss"] == pytest.approx(full["val_loss"], abs=1e-6)


def test_resume_refuses_an_unknown_run_in_one_line(tmp_path, capsys):
    assert main(["train", "--resume", "nope", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "No run nope" in err


def test_train_more_from_the_app_starts_a_linked_run_within_the_limits(tmp_path, capsys):
    store = RunStore(tmp_path)
    parent = _train(capsys, "sample", "--epochs", "1", *OPTIONS, "--runs-dir", str(tmp_path))
    with pytest.raises(ValueError, match="at most 1 epochs"):
        continue_run(parent["run_id"], 2, store, None, settings=Settings(max_epochs=1))
    run_id = continue_run(parent["run_id"], 1, store, None, settings=Settings(max_epochs=1))  # adds 1: allowed
    record = wait_for(lambda: (r := store.get_run(run_id)).status != "running" and r)
    assert record.status == "completed", record.message
    assert record.parent == parent["run_id"] and record.name.endswith("+1")
    assert list(store.steps(run_id)["step"]) == [4, 5, 6]
