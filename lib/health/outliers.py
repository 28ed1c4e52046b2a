"""Outliers: images far from their class in feature space, and plain ones anyone would flag.

Feature outliers: in the label check's features (the probe's backbone features, the cnn's penultimate
features per fold, or the pixel models' PCA), each image's distance to its class centroid, as a robust
z-score within its class: (d - median) / (1.4826 * MAD). The cnn's folds are different models: there each
distance is taken within its fold and divided by that fold's median distance first. Flagged at FEATURE_Z or more. Plain ones, from the decoded pixels and native size:

    near-constant     grey standard deviation under CONSTANT_STD levels (of 255)
    too dark/bright   mean grey level under DARK or over BRIGHT (of 255)
    tiny              a side under TINY_SIDE pixels
    extreme aspect    longer side over MAX_ASPECT times the shorter
"""

from __future__ import annotations

import numpy as np

FEATURE_Z = 4.0
CONSTANT_STD = 2.0
DARK, BRIGHT = 10.0, 245.0
TINY_SIDE = 8
MAX_ASPECT = 4.0


def feature_outliers(
    features: np.ndarray, labels: np.ndarray, z: float = FEATURE_Z, *, groups: np.ndarray | None = None
) -> list[tuple[int, float]]:
    """(index, robust z-score) of images at least z from their class centroid's typical distance.

    groups: features from different spaces (the cnn's folds, each its own model). Within a group each image's
    distance to its class centroid there is divided by the group's median distance, so that the groups'
    distances compare; the z-score is then taken over the whole class, as for one space.
    """
    d = np.zeros(len(labels))
    for g in np.unique(groups) if groups is not None else [None]:
        part = np.flatnonzero(groups == g) if g is not None else np.arange(len(labels))
        for c in np.unique(labels[part]):
            idx = part[labels[part] == c]
            d[idx] = np.linalg.norm(features[idx] - features[idx].mean(axis=0), axis=1)
        if g is not None:
            d[part] /= max(float(np.median(d[part])), 1e-9)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 5:  # too few to say what is typical
            continue
        mad = np.median(np.abs(d[idx] - np.median(d[idx]))) * 1.4826
        scores = (d[idx] - np.median(d[idx])) / max(mad, 1e-9)
        out += [(int(i), float(s)) for i, s in zip(idx, scores) if s >= z]
    return sorted(out, key=lambda t: -t[1])


def plain_outliers(grey: np.ndarray, sizes: np.ndarray) -> list[tuple[int, str, float]]:
    """(index, reason, score) from grey thumbnails uint8 (N, 32, 32) and native (width, height) (N, 2).

    Scores: the grey std for near-constant, the mean level for dark/bright, the short side for tiny,
    the long/short ratio for the aspect.
    """
    g = grey.reshape(len(grey), -1).astype(np.float64)
    std, mean = g.std(axis=1), g.mean(axis=1)
    short, long = sizes.min(axis=1), sizes.max(axis=1)
    aspect = long / np.maximum(short, 1)
    out = []
    for i in range(len(g)):
        if std[i] < CONSTANT_STD:
            out.append((i, f"near-constant (grey std {std[i]:.1f} < {CONSTANT_STD:g})", float(std[i])))
        elif mean[i] < DARK or mean[i] > BRIGHT:
            side = "dark" if mean[i] < DARK else "bright"
            out.append((i, f"extremely {side} (mean grey {mean[i]:.0f} of 255)", float(mean[i])))
        if short[i] < TINY_SIDE:
            out.append((i, f"tiny ({sizes[i][0]}x{sizes[i][1]} px, a side under {TINY_SIDE})", float(short[i])))
        if aspect[i] > MAX_ASPECT:
            out.append((i, f"extreme aspect ratio ({aspect[i]:.1f}:1, over {MAX_ASPECT:g}:1)", float(aspect[i])))
    return out
