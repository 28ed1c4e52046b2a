"""What the Train page shows, computed from the store: progress, ETA and status in words."""

import os

import pytest

from lib.runs.store import RunStore
from lib.runs.view import (
    format_duration,
    run_label,
    run_labels,
    run_progress,
    run_view,
    runs_table,
    status_sentence,
)


def test_progress_and_eta_are_computed_from_the_steps(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({"epochs": 4, "batch_size": 32}, pid=os.getpid())
    store.update_run(run_id, total_steps=100)  # 25 steps per epoch
    for step in range(1, 31):
        store.record_step(run_id, step, (step - 1) // 25 + 1, 1.0, 0.1, 64.0)
    view = run_view(store, run_id)
    p = view.progress
    assert (p.epoch, p.epochs, p.batch, p.steps_per_epoch, p.step) == (2, 4, 5, 25, 30)
    assert p.samples_per_sec == 64.0 and p.eta_s == 70 * 32 / 64  # 70 batches of 32 at 64 images/s
    assert p.fraction == 0.3


def test_a_finished_run_has_no_eta_and_an_empty_one_has_no_rate(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({"epochs": 1}, pid=os.getpid())
    empty = run_progress(store.get_run(run_id), store.steps(run_id))
    assert (empty.step, empty.samples_per_sec, empty.eta_s) == (0, None, None)
    store.record_step(run_id, 1, 1, 1.0, 0.1, 10.0)
    store.finish(run_id, "completed")
    assert run_progress(store.get_run(run_id), store.steps(run_id)).eta_s is None


def test_diverged_and_failed_runs_say_why(tmp_path):
    store = RunStore(tmp_path)
    for status, why in [("diverged", "lower the learning rate"), ("failed", "OSError: disk full")]:
        run_id = store.create_run({"model": "cnn"}, name=f"r-{status}")
        store.finish(run_id, status, why)
        record = store.get_run(run_id)
        assert status_sentence(record) == f"{status.capitalize()}: {why}"
        assert run_label(record).startswith(f"r-{status} · cnn · ")
    table = runs_table(store.list_runs())
    assert sorted(table["status"]) == ["diverged", "failed"] and table["val accuracy"].isna().all()
    assert run_view(store, "missing") is None


def test_durations_read_naturally():
    assert [format_duration(s) for s in (None, 12.4, 185, 3725)] == ["-", "12 s", "3 min 05 s", "1 h 02 min"]


def test_runs_table_and_label_name_the_dataset_hyperparameters_and_duration(tmp_path):
    store = RunStore(tmp_path)
    config = {"model": "mlp", "epochs": 3, "batch_size": 16, "lr": 0.05, "optimizer": "sgd", "image_size": 24}
    run_id = store.create_run(config, root="/data/sessions/x/archives/0123456789ab-photos", name="first")
    store.record_epoch(run_id, 1, 1.0, 0.9, 0.7109375, 0.05, 10.0)
    store.finish(run_id, "completed")
    record = store.get_run(run_id)
    label = run_label(record)
    assert label.startswith("first · mlp · photos · ")  # the upload's hash prefix is not shown
    row = runs_table([record]).iloc[0]
    assert row["dataset"] == "photos" and row["val accuracy"] == pytest.approx(0.7109375)
    assert (row["epochs"], row["batch"], row["lr"], row["optimizer"], row["size"]) == (3, 16, 0.05, "sgd", 24)
    expected = format_duration(record.ended - record.created)
    assert row["duration"] == expected


def test_runs_sharing_a_name_read_apart_in_pickers_and_the_table(tmp_path):
    store = RunStore(tmp_path)
    twins = [store.create_run({"model": "cnn"}, root="/d/shapes", name="same") for _ in range(2)]
    solo = store.create_run({"model": "cnn"}, root="/d/shapes", name="solo")
    runs = store.list_runs()
    labels = run_labels(runs)
    # By hand: a shared name gets its run id's last six characters; a name of its own stays as it is.
    assert [labels[i].split(" · ")[0] for i in twins] == [f"same ({i[-6:]})" for i in twins]
    assert labels[solo].startswith("solo · cnn · shapes · ") and len(set(labels.values())) == 3
    assert sorted(runs_table(runs)["run"]) == sorted([f"same ({i[-6:]})" for i in twins] + ["solo"])
