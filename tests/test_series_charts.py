"""Downsampling keeps every bucket's extremes (checked with numpy), EMA matches pandas, charts are bounded."""

import numpy as np
import pandas as pd
import pytest

from lib.charts.series import downsample, ema, minmax_indices
from lib.charts.style import title_text
from lib.charts.train import accuracy_chart, loss_chart, lr_chart


def test_short_series_are_kept_whole():
    assert list(minmax_indices(np.arange(5.0), 10)) == [0, 1, 2, 3, 4]


def test_a_single_spike_survives_and_the_point_count_is_bounded():
    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 0.01, 100_000)
    y[61_234] = 50.0
    y[7_000] = -50.0
    kept = minmax_indices(y, 1000)
    assert 61_234 in kept and 7_000 in kept
    assert len(kept) <= 1002 and {0, len(y) - 1} <= set(kept)
    assert np.all(np.diff(kept) > 0)  # in order, no repeats


def test_every_bucket_keeps_its_min_and_max_like_numpy():
    rng = np.random.default_rng(1)
    y = rng.normal(size=10_000)
    kept = y[minmax_indices(y, 200)]  # 100 buckets of 100 points
    buckets = y.reshape(100, 100)
    assert set(buckets.min(axis=1)) <= set(kept) and set(buckets.max(axis=1)) <= set(kept)
    assert kept.min() == y.min() and kept.max() == y.max()


def test_nans_are_not_chosen_over_numbers():
    y = np.array([np.nan, 1.0, 5.0, np.nan] * 1000)
    kept = y[minmax_indices(y, 100)]
    assert np.isnan(kept).sum() == 2  # only the always-kept first and last points are NaN here
    assert 5.0 in kept


@pytest.mark.parametrize("weight", [0.0, 0.5, 0.9])
def test_ema_is_the_debiased_average_pandas_computes(weight):
    values = np.random.default_rng(2).normal(size=300)
    reference = pd.Series(values).ewm(alpha=1 - weight, adjust=True).mean().to_numpy()
    np.testing.assert_allclose(ema(values, weight), reference, rtol=1e-10)
    with pytest.raises(ValueError, match="below 1"):
        ema(values, 1.0)


def _frames(n_steps: int, per_epoch: int):
    steps = pd.DataFrame(
        {
            "step": np.arange(1, n_steps + 1, dtype=float),
            "epoch": np.arange(n_steps) // per_epoch + 1.0,
            "train_loss": np.linspace(2, 0.5, n_steps),
            "lr": np.full(n_steps, 1e-3),
            "samples_per_sec": np.full(n_steps, 100.0),
        }
    )
    n_epochs = n_steps // per_epoch
    epochs = pd.DataFrame(
        {
            "epoch": np.arange(1, n_epochs + 1.0),
            "train_loss": 1.0,
            "val_loss": 1.1,
            "val_accuracy": 0.5,
            "lr": 1e-3,
            "samples_per_sec": 100.0,
        }
    )
    return steps, epochs


def test_loss_chart_is_titled_bounded_and_has_tooltips():
    steps, epochs = _frames(50_000, 5_000)
    spec = loss_chart(steps, epochs, smoothing=0.6, max_points=500).to_dict()
    assert title_text(spec) == "Loss"
    datasets = spec["datasets"].values()
    assert all(len(rows) <= 502 for rows in datasets)
    assert all("tooltip" in layer["encoding"] for layer in spec["layer"])
    val = next(layer for layer in spec["layer"] if layer["mark"].get("point"))  # validation: a line with its points
    assert val["mark"]["type"] == "line"
    val_rows = spec["datasets"][val["data"]["name"]]
    assert [row["step"] for row in val_rows] == [5_000.0 * e for e in range(1, 11)]  # each epoch's last step


def test_accuracy_and_lr_charts_title_their_axes_with_units():
    steps, epochs = _frames(100, 10)
    acc = accuracy_chart(epochs).to_dict()
    assert acc["encoding"]["y"]["title"] == "Accuracy (%)"
    assert lr_chart(steps).to_dict()["encoding"]["x"]["title"] == "Step (batches)"
    assert len(downsample(steps, "lr", 10)) <= 12
