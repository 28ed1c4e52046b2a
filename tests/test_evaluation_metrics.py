"""Every metric of lib.evaluation.metrics against numpy written here, on predictions we choose."""

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_calibration_error

from lib.evaluation import metrics as M
from lib.evaluation.predictions import Predictions
from lib.training.loop import evaluate


def make_predictions(probs: np.ndarray, targets: np.ndarray, top: int | None = None) -> Predictions:
    """Predictions as a run stores them: every probability, or only the `top` largest (above 20 classes)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    n, k = probs.shape
    return Predictions(
        "run", "last", "key", [f"class{i}" for i in range(k)], np.array([f"class{t}/{i}.png" for i, t in enumerate(targets)]),
        targets.astype(np.int64), probs.argmax(1).astype(np.int64), -np.log(probs[np.arange(n), targets]).astype(np.float32),
        order, np.take_along_axis(probs, order, 1).astype(np.float32),
    )  # fmt: skip


def leaning(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(float64 softmax probabilities (n, k), targets) of a model that leans towards the truth, so every
    metric is far from trivial."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, k, n)
    logits = rng.normal(0, 1.5, (n, k))
    logits[np.arange(n), targets] += rng.uniform(0, 3, n)
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), targets


@pytest.fixture
def raw():
    """300 images, 7 classes: the model's probabilities before they are stored."""
    return leaning(300, 7, seed=3)


@pytest.fixture
def fixture(raw):
    probs, targets = raw
    return make_predictions(probs.astype(np.float32), targets)


def reference_confusion(t, p, k):
    c = np.zeros((k, k), dtype=np.int64)
    np.add.at(c, (t, p), 1)
    return c


def reference_ap(scores, positive):
    """Mean precision at each positive's rank (continuous scores: no ties)."""
    order = np.argsort(-scores)
    hits = positive[order]
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return precision_at[hits].mean()


def reference_ece(conf, correct, bins=15):
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            total += inside.sum() / len(conf) * abs(correct[inside].mean() - conf[inside].mean())
    return total


def test_every_metric_matches_numpy(fixture, raw):
    p, k = fixture, 7
    probs = p.probabilities()
    t, y = p.targets, probs.argmax(1)
    m = M.compute_metrics(p)
    c = reference_confusion(t, y, k)
    assert np.array_equal(m.confusion, c)
    tp, fp, fn = np.diag(c), c.sum(0) - np.diag(c), c.sum(1) - np.diag(c)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0)
    recall = tp / c.sum(1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    pc = m.per_class
    assert list(pc["class"]) == p.classes and list(pc["support"]) == list(np.bincount(t, minlength=k))
    assert np.allclose(pc["precision"], precision) and np.allclose(pc["recall"], recall) and np.allclose(pc["f1"], f1)
    assert list(pc["errors"]) == list(fn)
    assert m.accuracy == pytest.approx((y == t).mean())
    top5 = np.argsort(-probs, 1)[:, :5]
    assert m.top5_accuracy == pytest.approx((top5 == t[:, None]).any(1).mean())
    assert m.balanced_accuracy == pytest.approx(recall.mean()) and m.macro_f1 == pytest.approx(f1.mean())
    raw_probs, _ = raw  # float64, before storage: not the stored losses the metric reads
    assert m.nll == pytest.approx(-np.log(raw_probs[np.arange(len(t)), t]).mean(), rel=1e-6)
    aps = [reference_ap(probs[:, j], t == j) for j in range(k)]
    assert np.allclose(pc["average_precision"], aps, atol=1e-6)
    conf = probs.max(1)
    assert m.ece == pytest.approx(reference_ece(conf.astype(np.float64), y == t), abs=1e-9)
    # torchmetrics bins [lo, hi) and puts 1.0 in a bin of its own; no confidence here sits on an edge.
    assert m.ece == pytest.approx(
        float(multiclass_calibration_error(torch.from_numpy(probs), torch.from_numpy(t), k, n_bins=15)), abs=1e-6
    )


def test_count_metrics_are_exact_fractions_equal_to_the_engines_accuracy():
    # 66 of 359 right: float32 rounds 66/359 to 0.18384401500225067, float64 to 0.18384401114206128.
    rng = np.random.default_rng(5)
    n, k = 359, 7
    targets = rng.integers(0, k, n)
    preds = (targets + rng.integers(1, k, n)) % k  # all wrong ...
    right = rng.choice(n, 66, replace=False)
    preds[right] = targets[right]  # ... but 66
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), preds] = logits.max(1) + 1  # the argmax is preds, by a clear margin
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = M.compute_metrics(make_predictions(probs.astype(np.float32), targets))
    assert float(np.float32(66 / 359)) != float(Fraction(66, 359))  # a case where a float32 shows
    assert m.accuracy == float(Fraction(66, 359)) == 0.18384401114206128
    _, recorded = evaluate(nn.Identity(), torch.device("cpu"), [(torch.from_numpy(logits), torch.from_numpy(targets))],
                           lambda x, train: x)  # fmt: skip
    assert m.accuracy == recorded  # the engine's validation accuracy on the same outputs, with ==
    # Per class, from the confusion counts: exact fractions too (F1 = 2 tp / (2 tp + fp + fn)).
    c = reference_confusion(targets, preds, k)
    tp, fp, fn = np.diag(c), c.sum(0) - np.diag(c), c.sum(1) - np.diag(c)
    pc = m.per_class
    assert list(pc["precision"]) == [float(Fraction(int(a), int(a + b))) for a, b in zip(tp, fp)]
    assert list(pc["recall"]) == [float(Fraction(int(a), int(a + b))) for a, b in zip(tp, fn)]
    assert list(pc["f1"]) == [float(Fraction(2 * int(a), int(2 * a + b + d))) for a, b, d in zip(tp, fp, fn)]
    assert m.balanced_accuracy == pytest.approx(float(sum(Fraction(int(a), int(a + b)) for a, b in zip(tp, fn)) / k),
                                                rel=1e-15)  # fmt: skip
    top5 = np.argsort(-probs, 1)[:, :5]
    assert m.top5_accuracy == float(Fraction(int((top5 == targets[:, None]).any(1).sum()), n))


def test_reliability_bins_count_each_image_once_in_its_right_closed_bin():
    conf = np.array([0.0, 1 / 15, 0.5, 0.99, 1.0, 1.0])
    correct = np.array([0, 1, 1, 0, 1, 1], dtype=bool)
    bins = M.reliability_bins(conf, correct)
    assert len(bins) == 15 and bins["count"].sum() == 6
    assert bins["count"][0] == 2 and bins["count"][7] == 1 and bins["count"][14] == 3  # 0.5 in (7/15, 8/15]
    assert bins["accuracy"][14] == pytest.approx(2 / 3) and np.isnan(bins["accuracy"][1])
    assert M.expected_calibration_error(bins) == pytest.approx(reference_ece(conf, correct))


def test_few_classes_have_no_top5_and_an_absent_class_is_left_out_of_the_means():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]], dtype=np.float32)
    targets = np.array([0, 1, 1, 0])  # class 2 has no image but is predicted once
    m = M.compute_metrics(make_predictions(probs, targets))
    assert m.top5_accuracy is None and m.accuracy == 0.5
    # recall: class 0 1/2, class 1 1/2 -> 0.5; class 2 has no images, so it is no part of the mean
    assert m.balanced_accuracy == pytest.approx(0.5)
    assert np.isnan(m.per_class["average_precision"][2]) and m.per_class["precision"][2] == 0
    # F1: class 0 P=1/2 R=1/2, class 1 P=1 R=1/2 -> 2/3, class 2 0 (predicted, never right): mean of three
    assert m.macro_f1 == pytest.approx((0.5 + 2 / 3 + 0) / 3)


def test_pr_curve_points_are_the_precision_and_recall_at_their_threshold(fixture):
    p = fixture
    scores, positive = p.probabilities()[:, 2], p.targets == 2
    curve = M.pr_curve(p, 2)
    assert len(curve) > 10 and curve["recall"].is_monotonic_decreasing
    for _, row in curve.sample(8, random_state=0).iterrows():
        chosen = scores >= row["threshold"]
        assert row["precision"] == pytest.approx(positive[chosen].mean(), abs=1e-6)
        assert row["recall"] == pytest.approx(positive[chosen].sum() / positive.sum(), abs=1e-6)
    assert len(M.pr_curve(p, 2, max_points=20)) <= 20


def test_cells_pairs_and_top_losses_match_a_direct_selection(fixture):
    p = fixture
    m = M.compute_metrics(p)
    cell = M.images_of(p, true=3, pred=5)
    expected = np.flatnonzero((p.targets == 3) & (p.preds == 5))
    assert sorted(cell["index"]) == sorted(expected) and len(cell) == m.confusion[3, 5]
    assert (
        cell["confidence"].is_monotonic_decreasing
        and set(cell["true"]) <= {"class3"}
        and set(cell["pred"]) <= {"class5"}
    )
    errors = M.images_of(p, true=3, errors=True)
    assert len(errors) == m.per_class["errors"][3] and (errors["pred"] != "class3").all()
    pairs = M.confused_pairs(m)
    off = m.confusion - np.diag(np.diag(m.confusion))
    assert list(pairs["count"]) == sorted(off.ravel(), reverse=True)[: len(pairs)] and len(pairs) == 10
    first = pairs.iloc[0]
    assert off[p.classes.index(first["true"]), p.classes.index(first["pred"])] == first["count"]
    worst = M.top_losses(p, 5)
    wrong = p.preds != p.targets
    assert list(worst["loss"]) == pytest.approx(sorted(p.loss[wrong], reverse=True)[:5])
    frame = M.predictions_frame(p)
    assert list(frame.columns) == ["path", "true", "pred", "confidence", "loss"] and len(frame) == 300


def test_summary_is_json_ready(fixture):
    import json

    s = M.compute_metrics(fixture).summary()
    back = json.loads(json.dumps(s))
    assert back["confusion"][0] == M.compute_metrics(fixture).confusion[0].tolist()
    assert set(back["per_class"][0]) == {"class", "precision", "recall", "f1", "support"}
    assert isinstance(back["per_class"][0]["support"], int)
    table, expected = pd.DataFrame(back["per_class"]), M.compute_metrics(fixture).per_class
    assert list(table["class"]) == list(expected["class"]) and list(table["support"]) == list(expected["support"])
    np.testing.assert_allclose(table[["precision", "recall", "f1"]], expected[["precision", "recall", "f1"]])


def test_above_twenty_classes_accuracy_top5_pr_and_ap_come_from_the_top_ten():
    """25 classes: a run stores each image's 10 largest probabilities and, through its loss, the true
    class's; every other probability is unknown and reads 0, below every known one."""
    probs, t = leaning(400, 25, seed=5)
    probs = probs.astype(np.float32)  # what the model outputs
    p = make_predictions(probs, t, top=10)
    assert not p.complete and p.top_probs.shape == (400, 10)
    m = M.compute_metrics(p)
    ranked = np.argsort(-probs, 1)
    assert m.accuracy == pytest.approx((ranked[:, 0] == t).mean())
    assert m.top5_accuracy == pytest.approx((ranked[:, :5] == t[:, None]).any(1).mean())
    known, rows = np.zeros_like(probs), np.arange(len(t))
    known[rows, t] = np.exp(np.log(probs[rows, t]))  # float32 through the stored loss: a last bit may move
    known[rows[:, None], ranked[:, :10]] = probs[rows[:, None], ranked[:, :10]]
    # A positive's own score is always known, so the zeros (negatives only) rank below every positive.
    aps = [reference_ap(known[:, j].astype(np.float64), t == j) for j in range(25)]
    np.testing.assert_allclose(m.per_class["average_precision"], aps, atol=1e-5)
    scores, positive = known[:, 3], t == 3
    curve = M.pr_curve(p, 3)
    assert len(curve) > 10
    for threshold, precision, recall in curve[["threshold", "precision", "recall"]].itertuples(index=False):
        chosen = scores >= np.float32(threshold)
        assert precision == pytest.approx(positive[chosen].mean(), abs=1e-6)
        assert recall == pytest.approx(positive[chosen].sum() / positive.sum(), abs=1e-6)
