"""The learning-rate finder's chart: loss against learning rate on a log axis, the suggestion marked."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from lib.charts.style import styled

X = alt.X("lr:Q", title="Learning rate (log scale)", scale=alt.Scale(type="log"), axis=alt.Axis(format=".0e"))


def lr_finder_frame(lrs: list[float], losses: list[float], smoothed: list[float]) -> pd.DataFrame:
    """One row per batch of the sweep (lr, loss, smoothed); non-finite losses are left out."""
    frame = pd.DataFrame({"lr": lrs, "loss": losses, "smoothed": smoothed})
    return frame[frame["loss"].map(math.isfinite) & frame["smoothed"].map(math.isfinite)]


def lr_finder_chart(frame: pd.DataFrame, suggested: float | None) -> alt.LayerChart:
    """Raw loss (pale) and smoothed loss against lr, a vertical rule at the suggestion. The y axis stops at
    4x the smoothed minimum (where the sweep stops), so the blow-up at the end does not flatten the rest."""
    low, high = float(frame["loss"].min()), 4 * float(frame["smoothed"].min())
    y_scale = alt.Scale(domain=[low * 0.95, max(high, float(frame["smoothed"].iloc[0]) * 1.05)], clamp=True)
    long = frame.melt("lr", ["loss", "smoothed"], var_name="series", value_name="value")
    long["series"] = long["series"].map({"loss": "loss per batch", "smoothed": "smoothed"})
    colour = alt.Color(
        "series:N",
        title=None,
        legend=alt.Legend(orient="bottom"),
        scale=alt.Scale(domain=["loss per batch", "smoothed"], range=["#9ecae9", "#1f77b4"]),
    )
    lines = (
        alt.Chart(long)
        .mark_line(clip=True)
        .encode(
            X,
            alt.Y("value:Q", title="Cross-entropy loss (nats)", scale=y_scale),
            colour,
            tooltip=[
                alt.Tooltip("lr:Q", title="learning rate", format=".2e"),
                alt.Tooltip("series:N"),
                alt.Tooltip("value:Q", title="loss", format=".4f"),
            ],
        )
    )
    layers = [lines]
    if suggested is not None:
        mark = pd.DataFrame({"lr": [suggested], "label": [f"suggested {suggested:.2g}"]})
        rule = alt.Chart(mark).mark_rule(color="#d62728", strokeDash=[4, 3]).encode(X, tooltip=["label:N"])
        text = (
            alt.Chart(mark)
            .mark_text(align="left", dx=4, color="#d62728")
            .encode(X, y=alt.value(10), text="label:N")  # at the top, in pixels
        )
        layers += [rule, text]
    return styled(alt.layer(*layers), "Loss against learning rate")
