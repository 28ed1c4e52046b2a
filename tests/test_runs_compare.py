"""Comparing runs: summary figures, differing settings, chart data on three x axes, parallel-coordinate scaling."""

import numpy as np
import pandas as pd
import pytest

from lib.charts.runs import overlay_loss_chart, parallel_chart, scatter_chart
from lib.runs import compare
from lib.runs.store import RunStore


def summary(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def test_differing_keys_and_config_diff_show_only_what_differs():
    s = summary(
        [
            {"id": "a", "name": "A", "hp.lr": 0.1, "hp.seed": 0, "hp.optimizer": "sgd"},
            {"id": "b", "name": "B", "hp.lr": 0.01, "hp.seed": 0, "hp.optimizer": None},
            {"id": "c", "name": "B", "hp.lr": 0.1, "hp.seed": 0, "hp.optimizer": "sgd"},
        ]
    )
    assert compare.differing_keys(s) == ["hp.lr", "hp.optimizer"]
    diff = compare.config_diff(s, ["a", "c"])
    assert diff.empty  # a and c share every setting
    diff = compare.config_diff(s, ["a", "b"])
    assert list(diff.index) == ["lr", "optimizer"] and list(diff.columns) == ["A", "B (b)"]
    assert diff.loc["optimizer"].tolist() == ["sgd", "—"]


def test_run_labels_add_the_id_only_where_names_clash():
    s = summary([{"id": "x-000001", "name": "same"}, {"id": "x-000002", "name": "same"}, {"id": "y", "name": "solo"}])
    assert compare.run_labels(s) == {"x-000001": "same (000001)", "x-000002": "same (000002)", "y": "solo"}


def test_curves_put_each_step_on_three_axes():
    steps = pd.DataFrame(
        {
            "step": [1.0, 2, 3, 4],
            "epoch": [1.0, 1, 2, 2],
            "train_loss": [4.0, 3, 2, 1],
            "lr": [0.1] * 4,
            "samples_per_sec": [10.0, 20, 40, 0],  # a zero rate adds no time rather than infinity
        }
    )
    epochs = pd.DataFrame({"epoch": [1.0, 2], "val_loss": [2.5, 1.5], "val_accuracy": [0.5, 0.7]})
    lines, ep = compare.curves(steps, epochs, batch_size=8, smoothing=0.0)
    raw = lines[lines["line"] == "raw"]
    assert raw["time"].tolist() == pytest.approx(np.cumsum([8 / 10, 8 / 20, 8 / 40, 0]))
    assert raw["epoch"].tolist() == [0.5, 1.0, 1.5, 2.0]
    assert ep["step"].tolist() == [2.0, 4.0] and ep["time"].tolist() == pytest.approx([1.2, 1.4])


def test_curves_downsample_but_keep_a_spike():
    n = 10_000
    loss = np.ones(n)
    loss[7777] = 50.0
    steps = pd.DataFrame(
        {"step": np.arange(1.0, n + 1), "epoch": 1.0, "train_loss": loss, "lr": 0.1, "samples_per_sec": 1.0}
    )
    lines, _ = compare.curves(steps, pd.DataFrame(columns=["epoch"]), batch_size=1, smoothing=0.9, max_points=500)
    raw = lines[lines["line"] == "raw"]
    assert len(raw) <= 502 and raw["train_loss"].max() == 50.0 and 7778.0 in raw["step"].tolist()


def test_parallel_scaling_log_for_wide_positive_ranges_and_sorted_for_text():
    s = summary(
        [
            {"id": "a", "hp.lr": 1e-4, "hp.optimizer": "sgd", "acc": 0.5},
            {"id": "b", "hp.lr": 1e-2, "hp.optimizer": "adam", "acc": 0.9},
            {"id": "c", "hp.lr": 1e-3, "hp.optimizer": "sgd", "acc": 0.7},
        ]
    )
    frame = compare.parallel_frame(s, ["hp.lr", "hp.optimizer", "acc"]).set_index(["axis", "id"])["scaled"]
    assert [frame["lr", i] for i in "abc"] == pytest.approx([0, 1, 0.5])  # log10: -4, -2, -3
    assert [frame["optimizer", i] for i in "abc"] == [1, 0, 1]  # adam < sgd
    assert [frame["acc", i] for i in "abc"] == pytest.approx([0, 1, 0.5])
    chart = parallel_chart(compare.parallel_frame(s, ["acc"]), {"a": "A", "b": "B", "c": "C"}, ["b"], ["acc"])
    assert chart.to_dict()["layer"][2]["encoding"]["color"]["scale"]["domain"] == ["B"]


def test_overlay_and_scatter_name_every_selected_run_and_use_plain_fields():
    lines = pd.DataFrame(
        {"run": ["r1", "r1", "r2", "r2"], "line": ["raw", "smoothed"] * 2, "step": [1, 1, 1, 1]}
    ).assign(epoch=1.0, time=0.0, train_loss=1.0, smoothed=1.0)
    spec = overlay_loss_chart(lines, ["r1", "r2"]).to_dict()
    assert spec["layer"][1]["encoding"]["color"]["scale"]["domain"] == ["r1", "r2"]
    s = summary([{"id": "a", "hp.lr": 0.1, "final_val_accuracy": 0.5}])
    enc = scatter_chart(s, "hp.lr", "final_val_accuracy", {"a": "A"}, ["a"]).to_dict()["layer"][1]["encoding"]
    assert enc["x"]["field"] == "x" and enc["x"]["title"] == "lr"  # "hp.lr" would read as a nested field


def test_summary_frame_of_an_empty_store_has_the_table_columns(tmp_path):
    frame = compare.summary_frame(RunStore(tmp_path))
    assert frame.empty and {"id", "name", "status", *compare.METRICS} <= set(frame.columns)


def test_the_winner_of_each_sweep_is_marked_and_runs_outside_sweeps_are_not(tmp_path):
    store = RunStore(tmp_path)
    # (sweep, final val accuracy, final val loss): the winner is picked by hand below.
    plan = {
        "a1": ("A", 0.50, 1.0),
        "a2": ("A", 0.75, 0.9),
        "a3": ("A", 0.75, 0.7),
        "b1": ("B", 0.20, 2.0),
        "x": (None, 0.99, 0.1),
    }
    ids = {}
    for name, (sweep, acc, loss) in plan.items():
        ids[name] = store.create_run({"model": "mlp"}, name=name, sweep=sweep)
        store.record_epoch(ids[name], 1, 1.0, loss, acc, 0.001, 10.0)
        store.finish(ids[name], "completed")
    frame = compare.summary_frame(store).set_index("name")
    # a3 ties a2 on accuracy and wins on the lower loss; b1 is alone in its sweep; x is in none.
    assert {n for n in plan if frame.loc[n, "sweep_winner"]} == {"a3", "b1"}


def test_config_diff_keeps_integers_as_written():
    # A run without batch_size leaves a gap: pandas holds the column as floats (64.0), the diff shows 64.
    s = summary([{"id": "a", "name": "A", "hp.batch_size": 64, "hp.lr": 3e-4}, {"id": "b", "name": "B", "hp.lr": 1.5}])
    diff = compare.config_diff(s, ["a", "b"])
    assert s["hp.batch_size"].dtype == float and diff.loc["batch_size"].tolist() == ["64", "—"]
    assert diff.loc["lr"].tolist() == ["0.0003", "1.5"]


def test_a_run_stopped_one_batch_into_an_epoch_ends_there_on_the_epoch_axis():
    # 4 steps an epoch, then stopped after the first batch of epoch 3: that step is epoch 2.25, not 3.0.
    steps = pd.DataFrame({"step": np.arange(1.0, 10), "epoch": [1.0] * 4 + [2.0] * 4 + [3.0], "train_loss": 1.0,
                          "lr": 0.1, "samples_per_sec": 10.0})  # fmt: skip
    lines, _ = compare.curves(steps, pd.DataFrame(columns=["epoch"]), batch_size=8, smoothing=0.0)
    raw = lines[lines["line"] == "raw"].sort_values("step")
    assert raw["epoch"].tolist() == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25]
