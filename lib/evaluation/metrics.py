"""Metrics of a run's stored predictions, and the tables the Evaluate page and `python -m lib evaluate`
show: confusion, per class, confused pairs, images of a cell.

Every count-based metric (accuracy, top-5, per-class precision, recall and F1, balanced accuracy, macro
F1) is a float64 fraction of integer counts (lib.training.counts.fraction, as training's validation
accuracy is), so accuracy equals the run's recorded val_accuracy exactly; torchmetrics computes the
ranking ones (average precision, PR curves). Conventions: the confusion matrix has true classes as rows and predictions as columns. Calibration
uses confidence = the max softmax probability and 15 equal-width bins (0, 1/15], ..., (14/15, 1]
(Guo et al. 2017); ECE is the image-weighted mean of |accuracy - mean confidence| over the bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import binary_precision_recall_curve, multiclass_average_precision

from lib.evaluation.predictions import Predictions
from lib.training.counts import fraction

ECE_BINS = 15
TOP5_MIN_CLASSES = 6  # top-5 accuracy says something only with more than 5 classes
PER_CLASS_COLUMNS = ["class", "precision", "recall", "f1", "support", "errors", "average_precision"]
IMAGE_COLUMNS = ["index", "path", "true", "pred", "confidence", "loss"]


@dataclass(frozen=True)
class Metrics:
    num_images: int
    classes: list[str]
    accuracy: float
    top5_accuracy: float | None  # None under TOP5_MIN_CLASSES classes
    balanced_accuracy: float  # mean recall over the classes that have validation images
    macro_f1: float
    nll: float  # mean cross-entropy, nats
    ece: float
    confusion: np.ndarray  # (K, K) int64, rows true, columns predicted
    per_class: pd.DataFrame  # PER_CLASS_COLUMNS, class order
    reliability: pd.DataFrame  # one row per bin: lower, upper, count, confidence, accuracy

    def summary(self) -> dict:
        """The JSON of `python -m lib evaluate --json` (without run_id)."""
        per_class = self.per_class[["class", "precision", "recall", "f1", "support"]]
        return dict(
            num_images=self.num_images, classes=self.classes, accuracy=self.accuracy,
            balanced_accuracy=self.balanced_accuracy, macro_f1=self.macro_f1, nll=self.nll, ece=self.ece,
            top5_accuracy=self.top5_accuracy, confusion=self.confusion.tolist(),
            per_class=per_class.astype(object).to_dict(orient="records"),
        )  # fmt: skip


def compute_metrics(p: Predictions) -> Metrics:
    """Every metric of the module docstring, from stored predictions (one pass, no model)."""
    k = len(p.classes)
    confusion = confusion_matrix(p.targets, p.preds, k)
    hits, support, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    recall = fraction(hits, support)
    f1 = fraction(2 * hits, support + predicted)  # 2 tp / (2 tp + fp + fn); 0 for a class never seen nor guessed
    probs = torch.from_numpy(p.probabilities())
    per_class = pd.DataFrame({
        "class": p.classes, "precision": fraction(hits, predicted), "recall": recall, "f1": f1,
        "support": support, "errors": support - hits,
        "average_precision": average_precisions(probs, torch.from_numpy(p.targets), support),
    })  # fmt: skip
    reliability = reliability_bins(p.confidence, p.preds == p.targets)
    return Metrics(
        num_images=len(p), classes=list(p.classes), accuracy=fraction(hits.sum(), len(p)),
        top5_accuracy=top_k_accuracy(p, 5) if k >= TOP5_MIN_CLASSES else None,
        balanced_accuracy=float(recall[support > 0].mean()),
        macro_f1=float(f1[support + predicted > 0].mean()),  # over the classes that were seen or guessed
        nll=float(np.mean(p.loss, dtype=np.float64)),
        ece=expected_calibration_error(reliability),
        confusion=confusion, per_class=per_class, reliability=reliability,
    )  # fmt: skip


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts, rows the true class, columns the predicted one."""
    return np.bincount(targets * k + preds, minlength=k * k).reshape(k, k).astype(np.int64)


def top_k_accuracy(p: Predictions, top: int) -> float:
    """The share of images whose true class is among their `top` most probable (stored ranking)."""
    hits = (p.top_classes[:, :top] == p.targets[:, None]).any(axis=1).sum()
    return fraction(hits, len(p))


def average_precisions(probs: torch.Tensor, target: torch.Tensor, support: np.ndarray) -> np.ndarray:
    """One-vs-rest average precision per class (NaN for a class with no validation image)."""
    ap = np.full(len(support), np.nan)
    present = support > 0
    if present.any():
        import warnings

        with warnings.catch_warnings():  # torchmetrics warns about the absent classes we then mask
            warnings.simplefilter("ignore")
            found = multiclass_average_precision(probs, target, len(support), average=None).numpy()
        ap[present] = found[present]
    return ap


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """Per equal-width confidence bin (lower, upper]: images, mean confidence and accuracy (NaN when empty)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # (lo, hi] -> its bin
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=confidence.astype(np.float64), minlength=bins) / count
        acc = np.bincount(idx, weights=correct.astype(np.float64), minlength=bins) / count
    return pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": count, "confidence": conf, "accuracy": acc})


def expected_calibration_error(bins: pd.DataFrame) -> float:
    """sum over bins of (images in bin / images) * |accuracy - mean confidence|."""
    used = bins[bins["count"] > 0]
    return float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum() / used["count"].sum())


def pr_curve(p: Predictions, class_index: int, max_points: int = 400) -> pd.DataFrame:
    """One-vs-rest precision-recall curve of a class (columns recall, precision, threshold), thinned to
    about max_points along recall so a chart stays small whatever the number of images."""
    scores = torch.from_numpy(p.probabilities()[:, class_index])
    precision, recall, thresholds = binary_precision_recall_curve(scores, torch.from_numpy(p.targets == class_index))
    df = pd.DataFrame({"recall": recall.numpy()[:-1], "precision": precision.numpy()[:-1],
                       "threshold": thresholds.numpy()})  # fmt: skip
    if len(df) > max_points:
        keep = np.unique(np.linspace(0, len(df) - 1, max_points).round().astype(int))
        df = df.iloc[keep]
    return df.reset_index(drop=True)


def confused_pairs(m: Metrics, top: int = 10) -> pd.DataFrame:
    """The largest off-diagonal cells: true, pred, count, and the share of the true class they take."""
    c = m.confusion.copy()
    np.fill_diagonal(c, 0)
    order = np.argsort(-c, axis=None, kind="stable")[:top]
    rows, cols = np.unravel_index(order, c.shape)
    support = np.maximum(m.confusion.sum(1), 1)
    df = pd.DataFrame({"true": [m.classes[i] for i in rows], "pred": [m.classes[j] for j in cols],
                       "count": c[rows, cols], "share": c[rows, cols] / support[rows]})  # fmt: skip
    return df[df["count"] > 0].reset_index(drop=True)


def images_of(
    p: Predictions, true: int | None = None, pred: int | None = None, *, errors: bool = False
) -> pd.DataFrame:
    """The images of a confusion cell (or of a row or column when one side is None; only mistakes with
    errors=True), most confident first: IMAGE_COLUMNS, `index` into the predictions."""
    mask = np.ones(len(p), dtype=bool)
    if true is not None:
        mask &= p.targets == true
    if pred is not None:
        mask &= p.preds == pred
    if errors:
        mask &= p.preds != p.targets
    idx = np.flatnonzero(mask)
    idx = idx[np.argsort(-p.confidence[idx], kind="stable")]
    return image_rows(p, idx)


def top_losses(p: Predictions, n: int = 12) -> pd.DataFrame:
    """The n mistakes with the largest loss (the most confidently wrong first): IMAGE_COLUMNS."""
    wrong = np.flatnonzero(p.preds != p.targets)
    return image_rows(p, wrong[np.argsort(-p.loss[wrong], kind="stable")[:n]])


def image_rows(p: Predictions, idx: np.ndarray) -> pd.DataFrame:
    """IMAGE_COLUMNS for the images at idx, class names spelled out."""
    names = np.array(p.classes, dtype=object)
    return pd.DataFrame({"index": idx, "path": p.paths[idx], "true": names[p.targets[idx]],
                         "pred": names[p.preds[idx]], "confidence": p.confidence[idx], "loss": p.loss[idx]})  # fmt: skip


def predictions_frame(p: Predictions) -> pd.DataFrame:
    """Every image: path (relative, POSIX), true, pred (class names), confidence, loss: the CSV export."""
    return image_rows(p, np.arange(len(p))).drop(columns="index")
