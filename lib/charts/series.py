"""Shrinking long metric series for charts without hiding anything, and smoothing them.

`minmax_indices` keeps, in every bucket, the point with the smallest and the one with the largest
value, so a single spike always survives while a chart gets at most a few thousand points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MAX_POINTS = 2000


def minmax_indices(y: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Sorted indices into y: all of them when len(y) <= max_points, else each bucket's argmin and argmax
    (plus the first and last point), at most max_points + 2 in all. NaNs are never chosen over numbers."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}.")
    edges = np.linspace(0, n, max_points // 2 + 1).astype(int)
    low = np.where(np.isnan(y), np.inf, y)
    high = np.where(np.isnan(y), -np.inf, y)
    keep = [0, n - 1]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        keep += [a + int(np.argmin(low[a:b])), a + int(np.argmax(high[a:b]))]
    return np.unique(keep)


def downsample(df: pd.DataFrame, column: str, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Rows of df (in order) chosen by minmax_indices on df[column]."""
    return df.iloc[minmax_indices(df[column].to_numpy(), max_points)]


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average, as TensorBoard's smoothing slider: weight 0 is no smoothing.

    s_t = weight * s_(t-1) + (1 - weight) * v_t, divided by (1 - weight^(t+1)) so early points are not
    pulled towards zero.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"Smoothing must be at least 0 and below 1, got {weight}.")
    out = np.empty(len(values))
    s = 0.0
    for t, v in enumerate(np.asarray(values, dtype=float)):
        s = weight * s + (1 - weight) * v
        out[t] = s / (1 - weight ** (t + 1))
    return out
