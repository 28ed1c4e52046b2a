"""What the dataset page shows, as DataFrames computed from an index (headers only, no decoding)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.data.index import DatasetIndex


def class_counts_frame(index: DatasetIndex) -> pd.DataFrame:
    """One row per class: `class`, `images`, `share` (fraction of all images)."""
    counts = index.class_counts()
    df = pd.DataFrame({"class": list(counts), "images": list(counts.values())})
    df["share"] = df["images"] / max(1, index.num_images)
    return df


def header_frame(index: DatasetIndex) -> pd.DataFrame:
    """One row per image: `class`, `width`, `height`, `aspect` (width / height), `mode`, `format`."""
    h = index.headers
    df = pd.DataFrame(
        {
            "class": [index.classes[t] for _, t in index.samples],
            "width": np.fromiter((x.width for x in h), int, len(h)),
            "height": np.fromiter((x.height for x in h), int, len(h)),
            "mode": [x.mode for x in h],
            "format": [x.format for x in h],
        }
    )
    df["aspect"] = df["width"] / df["height"].clip(lower=1)
    return df


def size_counts(headers: pd.DataFrame, max_points: int = 2000) -> pd.DataFrame:
    """Images per (width, height): every distinct size, so the largest image is always on the chart.

    Above max_points distinct sizes, sizes are snapped to a grid of `bin_px` pixels (the smallest power
    of two that brings them under max_points) and each point stands for its cell's lower corner.
    Returns columns `width`, `height`, `images`, `bin_px` (1 when exact).
    """
    bin_px = 1
    while True:
        w, h = headers["width"] // bin_px * bin_px, headers["height"] // bin_px * bin_px
        g = pd.DataFrame({"width": w, "height": h}).groupby(["width", "height"]).size().reset_index(name="images")
        if len(g) <= max_points:
            return g.assign(bin_px=bin_px)
        bin_px *= 2


def aspect_bins(headers: pd.DataFrame, bins: int = 30) -> pd.DataFrame:
    """Histogram of aspect ratios: `start`, `end`, `images`."""
    if headers.empty:
        return pd.DataFrame({"start": [], "end": [], "images": []})
    lo, hi = float(headers["aspect"].min()), float(headers["aspect"].max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    counts, edges = np.histogram(headers["aspect"], bins=bins, range=(lo, hi))
    return pd.DataFrame({"start": edges[:-1], "end": edges[1:], "images": counts})


def mode_counts(headers: pd.DataFrame) -> pd.DataFrame:
    """Images per Pillow mode and file format."""
    return headers.groupby(["mode", "format"]).size().reset_index(name="images")


def grid_sample(
    index: DatasetIndex, class_name: str | None, *, seed: int, page: int, per_page: int
) -> list[tuple[str, int]]:
    """A seeded shuffle of one class's samples (or all), cut into pages; `page` counts from 0."""
    if class_name is None:
        pool = index.samples
    else:
        target = index.class_to_idx[class_name]
        pool = [s for s in index.samples if s[1] == target]
    order = np.random.default_rng(seed).permutation(len(pool))
    return [pool[i] for i in order[page * per_page : (page + 1) * per_page]]


def short_name(name: str, limit: int = 13) -> str:
    """name cut in the middle to at most `limit` characters, keeping its start and its last 8 (the
    number and extension that tell files apart): 'triangle_0109.png' -> 'tria…0109.png'."""
    if len(name) <= limit:
        return name
    tail = min(8, limit - 2)
    return name[: limit - tail - 1] + "…" + name[-tail:]


def bad_files_frame(index: DatasetIndex) -> pd.DataFrame:
    return pd.DataFrame([{"path": b.path, "reason": b.reason} for b in index.bad_files], columns=["path", "reason"])
