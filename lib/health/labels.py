"""Likely wrong labels: out-of-sample probabilities from K-fold cross-validation, then confident learning.

The quick model (lib.health.findings picks it; `auto` is the first of the first two that can run):
`probe`, logistic regression on a frozen pretrained backbone's features (lib.health.quick), standardized;
`cnn`, the small cnn trained per fold (lib.health.quick); or on the pixels alone, each image at the
feature size, flattened, centred and reduced by PCA to at most FEATURE_DIMS dimensions, `linear` (a
multinomial logistic regression) or `knn` (a k-nearest-neighbour vote). Each is fitted K times, each time
on K-1 stratified folds, predicting the held-out fold, so no image is scored by a model that saw its label.
The outlier score reuses the same features.

Confident learning (cleanlab's `find_label_issues`, filter_by="confident_learning"): each class j gets a
threshold t_j, the mean out-of-sample probability of j over the images labeled j. An image labeled y is
a label issue when some other class j reaches its threshold (p_j >= t_j) and, of the classes that do, j
has the highest probability. Issues are ranked by self-confidence (the probability of the given label,
lowest first); the suggested class is the argmax of the out-of-sample probabilities.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lib.health import MODELS

FEATURE_DIMS = 64
Progress = Callable[[int, int], None]


def pixel_features(images: np.ndarray, dims: int = FEATURE_DIMS) -> np.ndarray:
    """uint8 (N, S, S, 3) -> float64 (N, <=dims): pixels in [0, 1], centred, PCA-reduced (SVD).

    Not standardized per pixel: that gave near-constant pixels (noise) the weight of the colours and
    shapes that tell classes apart, and the model grew less sure of exactly the images it should know.
    """
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    x -= x.mean(axis=0)
    if x.shape[1] <= dims or len(x) <= dims:
        return x
    _, _, vt = np.linalg.svd(x[:: max(1, len(x) // 4000)], full_matrices=False)  # a subsample bounds the cost
    return x @ vt[:dims].T


def _model(name: str):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    if name in ("linear", "probe"):
        return LogisticRegression(max_iter=300, C=0.1)  # strong prior: calibrated, not overconfident
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=10, weights="distance")
    raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")


def stratified_folds(labels: np.ndarray, num_classes: int, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, held-out indices) of each stratified fold (seeded), fewer folds when a class is small.

    Raises:
        ValueError: when a class has fewer images than folds allow (at least 2 each), or folds < 2.
    """
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels, minlength=num_classes)
    smallest = int(counts[counts > 0].min()) if len(labels) else 0
    if folds < 2 or smallest < 2:
        raise ValueError(
            "Label checks need at least 2 folds and 2 images in every class; add images or use fewer folds."
        )
    folds = min(folds, smallest)  # every fold must hold each class once
    return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=0).split(labels, labels))


def out_of_sample_probs(
    features: np.ndarray, labels: np.ndarray, num_classes: int, *, folds: int = 5, model: str = "linear",
    progress: Progress | None = None,
) -> np.ndarray:  # fmt: skip
    """(N, num_classes) probabilities of each image from the model fitted on the other folds.

    Raises:
        ValueError: when a class has too few images for the folds (stratified_folds).
    """
    split = stratified_folds(labels, num_classes, folds)
    probs = np.zeros((len(labels), num_classes))
    for k, (train, held) in enumerate(split):
        fitted = _model(model).fit(features[train], labels[train])
        probs[np.ix_(held, fitted.classes_)] = fitted.predict_proba(features[held])
        if progress:
            progress(k + 1, len(split))
    return probs


def standardized(features: np.ndarray) -> np.ndarray:
    """Each feature centred and scaled to unit variance (constant ones left at 0): a probe's input."""
    x = features.astype(np.float64)
    return (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 1e-8, x.std(axis=0), 1.0)


def label_issues(labels: np.ndarray, probs: np.ndarray) -> list[tuple[int, int, float]]:
    """(index, suggested class, score) of the likely wrong labels, most likely wrong first.

    score = 1 - the out-of-sample probability of the given label (self-confidence's complement).
    """
    from cleanlab.filter import find_label_issues

    present = np.flatnonzero(np.bincount(labels, minlength=probs.shape[1]))
    if len(present) < 2:
        return []  # one class: nothing to confuse it with
    # cleanlab wants every class present; columns of empty classes are dropped and labels renumbered.
    sub = probs[:, present] / np.clip(probs[:, present].sum(axis=1, keepdims=True), 1e-12, None)
    renumbered = np.searchsorted(present, labels)
    ranked = find_label_issues(
        renumbered, sub, filter_by="confident_learning", return_indices_ranked_by="self_confidence"
    )
    return [(int(i), int(probs[i].argmax()), float(1.0 - probs[i, labels[i]])) for i in ranked]
