"""Training charts: pure functions from the store's DataFrames to alt.Chart, tooltips on, axes with units."""

from __future__ import annotations

import altair as alt
import pandas as pd

from lib.charts.series import MAX_POINTS, downsample, ema
from lib.charts.style import COLOURS, INT_AXIS, PERCENT, PLOT_HEIGHT, SMALL_PLOT_HEIGHT, log_or_linear, styled

STEP_X = alt.X("step:Q", title="Step (batches)", axis=alt.Axis(**INT_AXIS))
LOSS_TITLE = "Cross-entropy loss (nats)"
LR_FORMAT = "~e"  # 1e-3, 2.5e-4: compact, exact, and what people type as a learning rate


def loss_chart(
    steps: pd.DataFrame,
    epochs: pd.DataFrame,
    *,
    smoothing: float = 0.0,
    steps_per_epoch: int | None = None,
    max_points: int = MAX_POINTS,
) -> alt.LayerChart:
    """Training loss per step (downsampled keeping min/max; a smoothed line on top when smoothing > 0)
    and validation loss per epoch as a line through points placed at each epoch's last step."""
    steps = steps.assign(smoothed=ema(steps["train_loss"].to_numpy(), smoothing) if smoothing else steps["train_loss"])
    raw = downsample(steps, "train_loss", max_points).assign(series="train (per step)")
    tip = [
        alt.Tooltip("step:Q", title="step"),
        alt.Tooltip("epoch:Q", title="epoch"),
        alt.Tooltip("train_loss:Q", title="train loss", format=".4f"),
    ]
    names = ["train (per step)", f"train (smoothed {smoothing:g})", "validation (per epoch)"]
    colours = [COLOURS["train_raw"] if smoothing else COLOURS["train"], COLOURS["train"], COLOURS["validation"]]
    colour = alt.Color(
        "series:N",
        title=None,
        scale=alt.Scale(domain=names if smoothing else names[::2], range=colours if smoothing else colours[::2]),
    )
    layers = [alt.Chart(raw).mark_line().encode(STEP_X, alt.Y("train_loss:Q", title=LOSS_TITLE), colour, tooltip=tip)]
    if smoothing:
        smooth = downsample(steps, "smoothed", max_points).assign(series=names[1])
        smooth_tip = [*tip, alt.Tooltip("smoothed:Q", title="smoothed", format=".4f")]
        layers.append(
            alt.Chart(smooth)
            .mark_line()
            .encode(STEP_X, alt.Y("smoothed:Q", title=LOSS_TITLE), colour, tooltip=smooth_tip)
        )
    if len(epochs):
        val = epochs.assign(step=_epoch_end_steps(epochs, steps, steps_per_epoch), series=names[2])
        val_tip = [alt.Tooltip("epoch:Q"), alt.Tooltip("val_loss:Q", title="val loss", format=".4f")]
        layers.append(  # a line through the epochs' points: the trend reads at a glance
            alt.Chart(val)
            .mark_line(point=alt.OverlayMarkDef(filled=True, size=70))
            .encode(STEP_X, alt.Y("val_loss:Q", title=LOSS_TITLE), colour, tooltip=val_tip)
        )
    return styled(alt.layer(*layers), "Loss", height=PLOT_HEIGHT)


def accuracy_chart(epochs: pd.DataFrame, train: pd.DataFrame | None = None) -> alt.Chart:
    """Validation accuracy per epoch, 0-100 %, a tick at every epoch (up to 20 of them); with `train`
    (epoch, train_accuracy: the epoch's batches scored by their own logits) a training line beside it."""
    series = [epochs.assign(accuracy=epochs["val_accuracy"], series="validation")]
    if train is not None and len(train):
        series.append(train.assign(accuracy=train["train_accuracy"], series="train (batches)"))
    data = pd.concat(series, ignore_index=True)[["epoch", "accuracy", "series"]]
    data["accuracy_pct"] = data["accuracy"] * 100
    last = int(data["epoch"].max()) if len(data) else 1
    ticks = {"values": list(range(1, last + 1))} if last <= 20 else {}
    x = alt.X(
        "epoch:Q",
        title="Epoch",
        axis=alt.Axis(**INT_AXIS, **ticks),
        scale=alt.Scale(domain=[0.5, last + 0.5], nice=False),  # one epoch sits mid-plot, not on an edge
    )
    names = ["validation", "train (batches)"]
    colour = alt.Color(
        "series:N",
        title=None,
        scale=alt.Scale(domain=names, range=[COLOURS["accuracy"], COLOURS["train"]]),
        # Inside the plot's corner (empty while accuracies climb): below it, the legend took the small
        # chart's height from the plot (180 px of plot in a 347 px chart).
        legend=alt.Legend(orient="bottom-right", fillColor="white", padding=4),
    )
    chart = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x,
            alt.Y("accuracy_pct:Q", title="Accuracy (%)", scale=alt.Scale(domain=[0, 100])),
            colour,
            tooltip=[
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("series:N"),
                alt.Tooltip("accuracy:Q", title="accuracy", format=PERCENT),
            ],  # fmt: skip
        )
    )
    return styled(chart, "Accuracy", height=SMALL_PLOT_HEIGHT)


def step_accuracy_chart(per_step: pd.DataFrame, max_points: int = MAX_POINTS) -> alt.Chart:
    """Each batch's training accuracy (its own logits, before the update), 0-100 %, by step."""
    data = downsample(per_step.assign(accuracy_pct=per_step["value"] * 100), "accuracy_pct", max_points)
    data["accuracy"] = data["accuracy_pct"] / 100
    chart = (
        alt.Chart(data)
        .mark_line(color=COLOURS["train"])
        .encode(
            STEP_X,
            alt.Y("accuracy_pct:Q", title="Batch accuracy (%)", scale=alt.Scale(domain=[0, 100])),
            tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("accuracy:Q", title="accuracy", format=PERCENT)],
        )
    )
    return styled(chart, "Training accuracy per step", height=SMALL_PLOT_HEIGHT)


def lr_chart(steps: pd.DataFrame, max_points: int = MAX_POINTS) -> alt.Chart:
    """The learning rate each step used: a log axis when it spans more than a decade (one-cycle, step)."""
    data = downsample(steps, "lr", max_points)
    chart = (
        alt.Chart(data)
        .mark_line(color=COLOURS["lr"])
        .encode(
            STEP_X,
            alt.Y(
                "lr:Q",
                title="Learning rate",
                scale=log_or_linear(data["lr"]),
                axis=alt.Axis(format=LR_FORMAT, tickCount=5),
            ),
            tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("lr:Q", title="learning rate", format=".3e")],
        )
    )
    return styled(chart, "Learning rate", height=SMALL_PLOT_HEIGHT)


def _epoch_end_steps(epochs: pd.DataFrame, steps: pd.DataFrame, steps_per_epoch: int | None) -> list[float]:
    """The step at which each epoch ended: the last logged step of that epoch, else epoch * steps_per_epoch."""
    last = steps.groupby("epoch")["step"].max() if len(steps) else pd.Series(dtype=float)
    return [float(last.get(e, e * (steps_per_epoch or 0))) for e in epochs["epoch"]]
