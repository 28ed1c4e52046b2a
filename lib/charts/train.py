"""Training charts: pure functions from the store's DataFrames to alt.Chart, tooltips on, axes with units."""

from __future__ import annotations

import altair as alt
import pandas as pd

from lib.charts.series import MAX_POINTS, downsample, ema

STEP_X = alt.X("step:Q", title="Step (batches)", axis=alt.Axis(tickMinStep=1, format="d"))


def loss_chart(
    steps: pd.DataFrame,
    epochs: pd.DataFrame,
    *,
    smoothing: float = 0.0,
    steps_per_epoch: int | None = None,
    max_points: int = MAX_POINTS,
) -> alt.LayerChart:
    """Training loss per step (downsampled keeping min/max; a smoothed line on top when smoothing > 0)
    and validation loss per epoch as points placed at the epoch's last step."""
    steps = steps.assign(smoothed=ema(steps["train_loss"].to_numpy(), smoothing) if smoothing else steps["train_loss"])
    raw = downsample(steps, "train_loss", max_points).assign(series="train (per step)")
    tip = [
        alt.Tooltip("step:Q", title="step"),
        alt.Tooltip("epoch:Q", title="epoch"),
        alt.Tooltip("train_loss:Q", title="train loss", format=".4f"),
    ]
    y = alt.Y("train_loss:Q", title="Cross-entropy loss (nats)")
    names = ["train (per step)", f"train (smoothed {smoothing:g})", "validation (per epoch)"]
    colours = ["#9ecae9" if smoothing else "#1f77b4", "#1f77b4", "#d62728"]  # raw pale under the smoothed line
    colour = alt.Color(
        "series:N",
        title=None,
        legend=alt.Legend(orient="bottom"),
        scale=alt.Scale(domain=names if smoothing else names[::2], range=colours if smoothing else colours[::2]),
    )
    layers = [alt.Chart(raw).mark_line().encode(STEP_X, y, colour, tooltip=tip)]
    if smoothing:
        smooth = downsample(steps, "smoothed", max_points).assign(series=names[1])
        layers.append(
            alt.Chart(smooth)
            .mark_line()
            .encode(
                STEP_X,
                alt.Y("smoothed:Q", title="Cross-entropy loss (nats)"),
                colour,
                tooltip=[*tip, alt.Tooltip("smoothed:Q", title="smoothed", format=".4f")],
            )
        )
    if len(epochs):
        val = epochs.assign(step=_epoch_end_steps(epochs, steps, steps_per_epoch), series=names[2])
        layers.append(
            alt.Chart(val)
            .mark_point(filled=True, size=70)
            .encode(
                STEP_X,
                alt.Y("val_loss:Q", title="Cross-entropy loss (nats)"),
                colour,
                tooltip=[alt.Tooltip("epoch:Q"), alt.Tooltip("val_loss:Q", title="val loss", format=".4f")],
            )
        )
    return alt.layer(*layers).properties(title="Loss", height=280)


def accuracy_chart(epochs: pd.DataFrame) -> alt.Chart:
    """Validation accuracy per epoch, 0-100 %."""
    data = epochs.assign(accuracy_pct=epochs["val_accuracy"] * 100)
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            alt.X("epoch:Q", title="Epoch", axis=alt.Axis(tickMinStep=1)),
            alt.Y("accuracy_pct:Q", title="Validation accuracy (%)", scale=alt.Scale(domain=[0, 100])),
            tooltip=[alt.Tooltip("epoch:Q"), alt.Tooltip("accuracy_pct:Q", title="accuracy (%)", format=".1f")],
        )
        .properties(title="Accuracy", height=220)
    )


def lr_chart(steps: pd.DataFrame, max_points: int = MAX_POINTS) -> alt.Chart:
    """The learning rate each step used."""
    data = downsample(steps, "lr", max_points)
    return (
        alt.Chart(data)
        .mark_line()
        .encode(
            STEP_X,
            alt.Y("lr:Q", title="Learning rate (per step)", axis=alt.Axis(format=".1e")),
            tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("lr:Q", title="learning rate", format=".3e")],
        )
        .properties(title="Learning rate", height=180)
    )


def _epoch_end_steps(epochs: pd.DataFrame, steps: pd.DataFrame, steps_per_epoch: int | None) -> list[float]:
    """The step at which each epoch ended: the last logged step of that epoch, else epoch * steps_per_epoch."""
    last = steps.groupby("epoch")["step"].max() if len(steps) else pd.Series(dtype=float)
    return [float(last.get(e, e * (steps_per_epoch or 0))) for e in epochs["epoch"]]
