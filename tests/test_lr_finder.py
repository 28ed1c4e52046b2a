"""The learning-rate finder: its rule on hand-built curves, the early stop, the CLI contract, and a
suggestion that trains the sample to a good accuracy."""

import dataclasses
import json
import math

import numpy as np
import pytest

from lib.__main__ import main
from lib.data.index import build_index
from lib.data.sample import sample_root
from lib.training.config import TrainConfig
from lib.training.engine import fit
from lib.training.lr_finder import LRFinderConfig, find_lr, suggest_lr

CONFIG = TrainConfig(model="cnn", image_size=16, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def sample():
    return build_index(str(sample_root()))


def test_the_rule_picks_the_steepest_descent_before_the_minimum():
    lrs = np.logspace(-6, 0, 61)  # 10 points per decade
    x = np.log10(lrs)
    # Falls fastest at 1e-3 (the steepest point of -tanh), bottoms out near 1e-1, then rises.
    loss = 2 - np.tanh(2 * (x + 3)) + np.where(x > -1, 20 * (x + 1) ** 2, 0)
    assert suggest_lr(lrs, loss) == pytest.approx(1e-3, rel=0.13)  # within one grid step (10^0.1)
    assert suggest_lr(lrs[:4], loss[:4]) == pytest.approx(lrs[3] / 10)  # too short: the minimum's lr / 10
    assert suggest_lr([], []) is None


def test_a_stretch_under_three_points_falls_back_to_the_minimums_lr_over_ten():
    lrs = np.logspace(-6, -4, 9)
    # The stretch runs from the warm-up's end (index 5) to the minimum: 2 points here, 3 below.
    two = [5, 4, 3, 2, 1.5, 1.2, 1.0, 2, 3]
    assert suggest_lr(lrs, two) == pytest.approx(lrs[6] / 10)
    three = [5, 4, 3, 2, 1.5, 1.2, 1.0, 0.5, 2]
    assert suggest_lr(lrs, three) == pytest.approx(lrs[7])  # slopes -0.2, -0.35, -0.5 per step: the last


def test_the_sweep_grows_exponentially_and_stops_when_the_loss_blows_up(sample):
    finder = LRFinderConfig(start_lr=1e-5, end_lr=1e3, num_batches=60)
    result = find_lr(TrainConfig(model="mlp", image_size=8, optimizer="sgd", batch_size=32), sample.samples,
                     sample.classes, finder)  # fmt: skip
    assert result.stopped_early and len(result.lrs) < 60
    ratios = np.diff(np.log(result.lrs))
    assert np.allclose(ratios, math.log(1e8) / 59)  # a constant factor per batch: exponential
    assert result.lrs[0] == pytest.approx(1e-5)
    last = result.smoothed[-1]
    assert not math.isfinite(last) or last > 4 * np.nanmin(result.smoothed)
    assert all(s <= 4 * np.nanmin(result.smoothed[: i + 1]) for i, s in enumerate(result.smoothed[:-1]))


def test_the_suggestion_trains_the_sample_to_a_good_accuracy(sample):
    result = find_lr(CONFIG, sample.samples, sample.classes)
    assert result.suggested_lr is not None and 1e-7 <= result.suggested_lr <= 10

    def accuracy(lr: float) -> float:
        trained = fit(dataclasses.replace(CONFIG, lr=lr, epochs=3), sample.samples, sample.classes)
        assert trained.status == "completed", trained.message
        return trained.epochs[-1]["val_accuracy"]

    at_suggestion, much_lower = accuracy(result.suggested_lr), accuracy(result.suggested_lr / 100)
    assert at_suggestion >= 0.75, result.suggested_lr  # 4 balanced classes: chance is 0.25
    assert at_suggestion > much_lower + 0.1, (at_suggestion, much_lower)  # a rate that matters, not any rate


def test_cli_json_has_the_curve_and_writes_no_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    code = main(["lr-find", "sample", "--model", "mlp", "--image-size", "8", "--num-batches", "20", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(out["lrs"]) == len(out["losses"]) <= 20
    assert out["suggested_lr"] in out["lrs"]  # the rule picks one of the rates it tried
    assert not (tmp_path / "runs" / "runs.sqlite").exists()


def test_bad_finder_settings_are_one_sentence():
    with pytest.raises(ValueError, match="start lr < end lr"):
        LRFinderConfig(start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="at least 10 batches"):
        LRFinderConfig(num_batches=3)


def test_cli_refuses_a_thread_count_below_one(capsys):
    assert main(["lr-find", "sample", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
